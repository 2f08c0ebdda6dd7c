"""The house stands on floors that follow the data: nothing imports upward, and no module
imports itself back through others. Checked from the source (every ``import``, also inside
functions: a lazy upward import is still an upward dependency)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "passrt"

# plan -> policies -> engine (executors) -> export -> runtime -> training -> cli; the ground
# floor holds what everything shares, the first the kernels and the models the plan is built from.
FLOORS = {
    "errors": 0, "contract": 0, "options": 0, "nn": 0, "assets": 0, "metrics": 0,
    "kernels": 1, "models": 1,
    "plan": 2,
    "policies": 3,
    "engine": 4,
    "export": 5,
    "runtime": 6,
    "training": 7,
    "cli": 8, "__main__": 8,
}
FACE = "passrt"  # the package's __init__: lazy names (and the version) for users and the CLI


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every passrt module ``path`` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("passrt"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("passrt"):
            for a in node.names:  # `from passrt.x import y` may name the submodule passrt.x.y
                sub = f"{node.module}.{a.name}"
                out.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                        or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else node.module)
    return out


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {i for i in _imports(p) if i != name} for name, p in MODULES.items()}


def _floor(module: str):
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else FLOORS["cli"]


def test_every_module_has_a_floor():
    missing = sorted(m for m in MODULES if m.count(".") and m.split(".")[1] not in FLOORS)
    assert not missing, f"give these a floor in tests/test_layers.py: {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != FACE))
def test_no_upward_import(module):
    upward = sorted(i for i in GRAPH[module] if _floor(i) > _floor(module))
    assert not upward, f"{module} (floor {_floor(module)}) imports upward: {upward}"


def test_no_import_cycle():
    done, path = set(), []

    def visit(m):
        if m in path:
            cycle = path[path.index(m):] + [m]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        path.append(m)
        for i in sorted(GRAPH.get(m, ())):
            visit(i)
        path.pop()
        done.add(m)

    for m in sorted(GRAPH):
        visit(m)


def test_the_frame_path_stays_in_the_engine_and_below():
    """What SparseModel runs per frame imports nothing above the engine (export, runtime, ...)."""
    seen, todo = set(), ["passrt.engine.sparse_model"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(GRAPH.get(m, ()))
    above = sorted(m for m in seen if _floor(m) > FLOORS["engine"])
    assert not above, f"the engine reaches up into {above}"
