"""The README's install and test commands are the ones CI runs: a newcomer's first commands work."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("pip install", "python -m pytest", "ruff check", "mkdocs build")


def _ci_commands() -> set[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return {re.sub(r"\s+#.*$", "", line).strip() for line in lines if not line.startswith("#")}


def _shell_commands(markdown: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            commands += [part.strip() for part in re.sub(r"\s+#.*$", "", line).split("&&")]
    return [command for command in commands if command.startswith(CHECKED)]


def test_readme_install_and_test_commands_are_what_ci_runs():
    ci = _ci_commands()
    readme = _shell_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    # `pip install .` is the project without extras; CI installs it with its test extra
    assert 'pip install ".[test]"' in ci
    checked = [command for command in readme if command != "pip install ."]
    assert any(command.startswith("pip install torch==") for command in checked), readme
    assert 'pip install ".[test]"' in checked and "python -m pytest -q" in checked, readme
    missing = [command for command in checked if command not in ci]
    assert not missing, f"README.md runs commands .ci/run does not: {missing}"


def test_development_page_lists_the_commands_ci_runs():
    page = _shell_commands((ROOT / "docs" / "development.md").read_text(encoding="utf-8"))
    missing = [command for command in page if command not in _ci_commands()]
    assert not missing, f"docs/development.md runs commands .ci/run does not: {missing}"
