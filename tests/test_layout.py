"""Where things live: no module imports another's private names, data loading needs no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_private_name_is_imported_across_modules():
    found = []
    for path in [*(ROOT / "python" / "fastrl").rglob("*.py"), *(ROOT / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastrl"):
                found += [f"{path.relative_to(ROOT)}: {node.module}.{alias.name}"
                          for alias in node.names
                          if alias.name.startswith("_") and alias.name != "_core"]
    assert not found, found


def test_market_loading_does_not_import_torch():
    code = ("import sys, fastrl.markets, fastrl.config; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
