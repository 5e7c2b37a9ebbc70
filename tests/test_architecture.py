"""The house rules, checked on the source: no import circles, no function-local imports of cl-bench
modules (the package face's lazy API is the one exception), only the CLI imports click, and no room
grows past ~400 lines. Run `python -m pytest tests/test_architecture.py -q` to see the graph's numbers."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "cl_bench": ROOT / "cl_bench",
    "cl_bench.strategies": ROOT / "strategies",
    "cl_bench.benchmarks": ROOT / "benchmarks",
}
MAX_LINES = 430  # "~400": a room that needs more is doing two jobs
LAZY_ALLOWED = {"cl_bench"}  # the package face loads cl_bench.api on first use (cl-bench --help stays fast)


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = modules()


def imported(node: ast.AST, module: str) -> list[str]:
    """The cl-bench modules an import statement names (``from X import y`` counts y when it is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    else:
        return []
    return [n for n in names if n in MODULES and n != module]


def type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def graph() -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the cl-bench modules it imports at import time; and every function-local import."""
    edges, local = {}, []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:
            if type_checking_block(node):
                continue
            for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
                top.update(imported(sub, module))
        edges[module] = top
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(fn):
                    if imported(sub, module) and module not in LAZY_ALLOWED:
                        local.append(f"{path.relative_to(ROOT)}:{sub.lineno}")
    return edges, local


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_graph_has_no_circle():
    edges, _ = graph()
    # A package's face importing its own submodules (to re-export them) is not a circle of rooms.
    rooms = {m: {n for n in targets if not n.startswith(m + ".")} for m, targets in edges.items()}
    assert cycles(rooms) == []
    print(f"{len(MODULES)} modules, {sum(map(len, rooms.values()))} imports, 0 circles")


def test_no_function_local_import_of_a_cl_bench_module():
    assert graph()[1] == []


def test_only_the_cli_imports_click():
    offenders = []
    for module, path in MODULES.items():
        if module.startswith("cl_bench.cli"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            )
            if any(n == "click" or n.startswith("click.") for n in names):
                offenders.append(module)
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_room_over_400_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES


def test_the_circle_finder_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
