"""The four packages resolve to this repository, the core stays free of Ray and DeepSpeed, and the
``benchmarks`` package stays below the service: no module of it imports ray, deepspeed, sweeps or
reports (module-level or inside a function), and its modules import each other without a cycle."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["unlearn", "benchmarks", "sweeps", "reports"])
def test_package_resolves_to_this_repository(package):
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == ROOT / package


def test_importing_unlearn_does_not_import_ray_or_deepspeed():
    code = (
        "import sys, unlearn, unlearn.losses, unlearn.methods, unlearn.step, unlearn.loop, "
        "unlearn.engine, unlearn.models, unlearn.data, unlearn.schedule\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'deepspeed'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == ""


def test_cli_entry_point_is_light():
    code = "import sys, sweeps.cli; print(','.join(m for m in ('ray', 'deepspeed', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# the benchmarks package: a layer below the service, without import cycles

BENCHMARKS = ROOT / "benchmarks"
FORBIDDEN = ("ray", "deepspeed", "sweeps", "reports")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def benchmark_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(BENCHMARKS.rglob("*.py"))}


def absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute module a ``from … import`` names (relative imports resolved)."""
    if not node.level:
        return node.module
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(tree: ast.AST, module: str, path: Path, nodes) -> list[tuple[str, list[str]]]:
    """(module, names) of every import among ``nodes``; ``import a.b`` gives ("a.b", [])."""
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((absolute(node, module, path), [alias.name for alias in node.names]))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
            out.append((node.args[0].value, []))
    return out


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level(body: list) -> list:
    """The statements that run when the module is imported: not function bodies, not
    ``if TYPE_CHECKING:`` blocks; class bodies, ``if`` / ``try`` / ``with`` blocks included."""
    out = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and is_type_checking(node):
            out += module_level(node.orelse)
            continue
        out.append(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            children = getattr(node, field, None)
            if isinstance(children, list) and not isinstance(node, (ast.Import, ast.ImportFrom)):
                out += module_level([c for c in children if isinstance(c, ast.AST)])
    return out


def import_graph() -> dict[str, set[str]]:
    """Module-level import edges between ``benchmarks.*`` modules. ``from pkg import name`` is an
    edge to ``pkg.name`` when that is a module, else to ``pkg`` itself (it needs pkg's namespace);
    the implicit import of a parent package is not an edge (Python binds a submodule whatever
    state its parent is in)."""
    modules = benchmark_modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        statements = module_level(tree.body)
        for target, names in imported_names(tree, name, path, statements):
            if names:
                subs = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
                if len(subs) < len(names) and target in modules:
                    subs.add(target)  # a name defined in the module itself
                graph[name] |= subs
            elif target in modules:
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, …, a], or None when it is acyclic."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_benchmarks_module_imports_the_service_layers():
    modules = benchmark_modules()
    assert {"benchmarks", "benchmarks.common", "benchmarks.prepare", "benchmarks.synthetic",
            "benchmarks.synthetic.evaluate", "benchmarks.synthetic.data"} <= set(modules)
    seen, bad = set(), []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, _ in imported_names(tree, name, path, ast.walk(tree)):  # every import, at any depth
            seen.add((name, target))
            if target.split(".")[0] in FORBIDDEN:
                bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, bad
    # the walk reaches function-local imports too (prepare imports unlearn only inside functions)
    assert ("benchmarks.prepare", "unlearn") in seen and ("benchmarks.prepare", "benchmarks.common") in seen


def test_the_checker_sees_what_it_must_refuse(tmp_path):
    code = ("import os\nfrom . import common\ndef f():\n    import ray.tune\n    from reports import html\n"
            "    importlib.import_module('deepspeed')\nif TYPE_CHECKING:\n    from benchmarks import spec\n")
    path = BENCHMARKS / "x.py"
    tree = ast.parse(code)
    everything = {(t, tuple(n)) for t, n in imported_names(tree, "benchmarks.x", path, ast.walk(tree))}
    assert everything == {("os", ()), ("benchmarks", ("common",)), ("ray.tune", ()), ("reports", ("html",)),
                          ("deepspeed", ()), ("benchmarks", ("spec",))}
    top = {(t, tuple(n)) for t, n in imported_names(tree, "benchmarks.x", path, module_level(tree.body))}
    assert top == {("os", ()), ("benchmarks", ("common",))}  # function bodies and TYPE_CHECKING blocks do not run
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_benchmarks_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    # the graph is the real one: the package registers its benchmarks, which share benchmarks.common
    assert {"benchmarks.synthetic", "benchmarks.muse", "benchmarks.rwku", "benchmarks.jsonl"} <= graph["benchmarks"]
    assert "benchmarks.common" in graph["benchmarks.synthetic.evaluate"]
    assert "benchmarks.synthetic.data" in graph["benchmarks.synthetic"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_importing_every_benchmarks_module_loads_no_service_layer():
    names = sorted(benchmark_modules())
    code = (f"import importlib, sys\nfor m in {names!r}: importlib.import_module(m)\n"
            f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_no_function_of_the_service_layer_is_longer_than_60_lines():
    """``sweeps`` reads top to bottom: a function that grows past 60 lines is split."""
    long = []
    for path in sorted((ROOT / "sweeps").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []
