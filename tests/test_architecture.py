"""The import contract of the library, read from the source (an AST walk, nothing imported).

Data walks one way: the ground floor (primitives) -> data -> backbones -> adapters -> diffusion ->
methods -> config -> evaluation -> tracking/serving -> commands. A module imports only modules
of its own floor or below, the module graph has no cycle (imports inside functions included, so
no import hides in a function to dodge one), and ``padirec`` never imports kfp, the pipeline or
the components.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "padirec"

# (floor, module prefixes): a module belongs to the floor of its longest matching prefix
FLOORS: list[tuple[str, list[str]]] = [
    ("ground", ["padirec", "padirec.core", "padirec.errors", "padirec.runtime"]),
    ("data", ["padirec.data"]),
    ("backbones", ["padirec.backbones"]),
    ("adapters", ["padirec.adapters"]),
    ("diffusion", ["padirec.diffusion"]),
    ("methods", ["padirec.methods"]),
    ("config", ["padirec.config"]),  # composes every section; reads the registries below it
    ("evaluation", ["padirec.evaluation"]),
    ("tracking/serving", ["padirec.tracking", "padirec.serving"]),
    ("commands", ["padirec.commands", "padirec.__main__"]),  # commands.steps: what the components call
]
FORBIDDEN = ("kfp", "pipelines", "components")  # the library knows nothing of the pipeline around it


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """``[(imported module, inside a function?)]`` of one module, relative imports resolved."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                # ``from a import b``: b may be a module of a
                found.extend((f"{base}.{a.name}", inner) for a in child.names)
                found.append((base, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def floor_of(module: str) -> int:
    best, floor = -1, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    return floor


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, bool]]]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    raw = {m: imports(m, p) for m, p in mods.items()}
    for m, found in raw.items():
        for target, _ in found:
            while target and target not in mods:  # ``padirec.x.y.Name`` -> the module ``padirec.x.y``
                target = target.rpartition(".")[0]
            if target and target != m and target.startswith("padirec"):
                edges[m].add(target)
    return edges, raw


def test_every_module_has_a_floor():
    unplaced = [m for m in modules() if floor_of(m) < 0]
    assert not unplaced, f"place these modules on a floor in FLOORS: {unplaced}"


def test_no_module_imports_a_later_floor():
    edges, _ = graph()
    upward = [f"{m} ({FLOORS[floor_of(m)][0]}) imports {t} ({FLOORS[floor_of(t)][0]})"
              for m, targets in edges.items() for t in sorted(targets) if floor_of(t) > floor_of(m)]
    assert not upward, "imports against the flow:\n" + "\n".join(upward)


def test_the_module_graph_has_no_cycle():
    edges, _ = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := walk(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := walk(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_library_never_imports_the_pipeline():
    _, raw = graph()
    bad = sorted({f"{m} imports {target}" for m, found in raw.items() for target, _ in found
                  if target.split(".")[0] in FORBIDDEN})
    assert not bad, "\n".join(bad)


def test_the_contract_catches_a_violation(tmp_path, monkeypatch):
    """The checks above would fail on an upward import and on a cycle (the test tests itself)."""
    pkg = tmp_path / "padirec"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from padirec.evaluation import b\n")
    (pkg / "evaluation").mkdir()
    (pkg / "evaluation" / "__init__.py").write_text("")
    (pkg / "evaluation" / "b.py").write_text("from padirec.core import a\nimport kfp\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="padirec.core.a .ground. imports padirec.evaluation.b"):
        test_no_module_imports_a_later_floor()
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_the_module_graph_has_no_cycle()
    with pytest.raises(AssertionError, match="imports kfp"):
        test_the_library_never_imports_the_pipeline()
