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


# ---------------------------------------------------------------- the import graph (issue 30)

PACKAGE = ROOT / "python" / "fastrl"
MAX_MODULE_LINES = 650


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    return {id(inner) for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)}


def _imports(tree: ast.AST, modules: dict[str, Path]) -> list[tuple[str, ast.AST]]:
    """(imported fastrl module, node) for each runtime import in ``tree``, function-local
    ones included (they are arrows too); TYPE_CHECKING imports are not."""
    typing_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastrl"):
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("fastrl")]
        targets = {t for t in (_resolve(n, modules) for n in names) if t and t != "fastrl"}
        found += [(target, node) for target in sorted(targets)]
    return found


def _with_packages(target: str, modules: dict[str, Path]) -> set[str]:
    """``target`` and the packages above it: importing ``a.b.c`` runs ``a/b/__init__`` first."""
    parts = target.split(".")
    return {".".join(parts[:k]) for k in range(2, len(parts) + 1)} & set(modules)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for target, _ in _imports(ast.parse(path.read_text(encoding="utf-8")),
                                               modules)
                   for t in _with_packages(target, modules)
                   if t != name and not name.startswith(t + ".")}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_circle():
    assert _cycles(_graph()) == []


def test_config_imports_no_env_or_market_module():
    """config.py sits below everything that reads it: the envs and markets read config. It
    may import the plain env settings (fastrl.env_config), never a simulator."""
    graph = _graph()
    upward = sorted(t for t in graph["fastrl.config"]
                    if t.startswith(("fastrl.markets", "fastrl.ppo", "fastrl.live",
                                     "fastrl.walkforward", "fastrl.tune", "fastrl.cli"))
                    or t in ("fastrl._core", "fastrl.evaluate"))
    assert upward == []
    code = ("import sys, fastrl.config; "
            "loaded = [m for m in sys.modules if m.startswith(('fastrl.markets', 'fastrl.ppo', "
            "'fastrl._core')) or m in ('gymnasium', 'torch')]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_module_is_over_the_size_limit():
    sizes = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_only_the_markets_ask_which_kind_a_config_is():
    hits = []
    for path in PACKAGE.rglob("*.py"):
        if "markets" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "portfolio.enabled" in line:
                hits.append(f"{path.relative_to(ROOT)}:{number}")
    assert hits == []


def _first_of_import_runs(tree: ast.AST) -> dict[int, ast.stmt]:
    """id(import statement) -> the first statement of the run of consecutive imports it is in
    (one comment above a run covers the run)."""
    first: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            run_start = None
            statements = getattr(node, field, None)
            for stmt in statements if isinstance(statements, list) else []:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    run_start = run_start or stmt
                    first[id(stmt)] = run_start
                else:
                    run_start = None
    return first


def test_function_local_imports_of_fastrl_say_why():
    """A function-local import of a fastrl module hides an arrow of the graph: it is kept
    only for an optional dependency or a measured import-time cost, with a comment on the
    line, or above the run of imports it belongs to, saying so."""
    modules = _modules()
    silent = []
    for path in modules.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        local = {id(inner) for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for inner in ast.walk(node)}
        first = _first_of_import_runs(tree)
        for _, node in _imports(tree, modules):
            if id(node) not in local:
                continue
            head = first.get(id(node), node)
            here, above = lines[node.lineno - 1], lines[head.lineno - 2]
            if "#" not in here and not above.strip().startswith("#"):
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert sorted(set(silent)) == []
