"""The package layout is the data flow: each folder imports only the folders below it.

A change that needs an arrow this table does not have belongs in another folder, or the
table (and the package's docstring, which says what it may import) changes with it.
"""
import ast
import importlib
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "tiercut"

# folder (or top-level module) -> what it may import, besides itself and EVERYWHERE: the
# exceptions' base classes, and the shims that keep 0.1.0's module paths working
EVERYWHERE = {"errors", "_moved"}
MAY_IMPORT = {
    "errors": set(),
    "_moved": set(),
    "zoo": set(),
    "graph": set(),
    "measure": {"graph"},
    "codecs": {"graph", "measure"},
    "planner": {"measure", "codecs"},
    "decompose": {"graph", "measure", "planner"},
    "link": {"planner"},
    "onnxgraph": {"graph", "measure"},
    "modelcheck": {"graph", "measure", "planner", "onnxgraph"},
    "runtime": {"graph", "codecs", "zoo", "decompose", "onnxgraph"},
    "adapt": {"planner", "runtime"},
    "sim": {"planner", "link", "adapt", "decompose"},
    "dashboard": {"planner", "runtime", "adapt"},
    "testbed": {"zoo", "graph", "measure", "planner", "link", "runtime", "decompose",
                "cluster"},
    "cluster": {"zoo", "graph", "measure", "planner", "decompose"},
    "discover": {"zoo", "graph", "measure", "runtime", "cluster"},
    "mobility": {"graph", "measure", "planner", "link", "adapt"},
    "redundancy": {"measure", "link"},
    "fleet": {"planner", "link", "mobility"},
    "cli": {"zoo", "graph", "measure", "codecs", "planner", "link", "runtime", "adapt", "sim",
            "testbed", "dashboard", "decompose", "cluster", "discover", "mobility",
            "redundancy", "fleet", "onnxgraph", "modelcheck"},
    "__init__": {"graph", "measure"},
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tiercut modules ``name`` imports, anywhere in the file (lazy imports count)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names} & modules.keys()
            out |= subs if len(subs) == len(node.names) else subs | ({base} & modules.keys())
    out.discard(name)
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_folder_imports_only_the_folders_below_it():
    modules = _modules()
    assert {_unit(m) for m in modules} <= MAY_IMPORT.keys(), "a new folder needs a row above"
    wrong = []
    for name, path in sorted(modules.items()):
        for target in sorted(_imports(name, path, modules)):
            allowed = MAY_IMPORT[_unit(name)] | EVERYWHERE | {_unit(name)}
            if _unit(target) not in allowed:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports against the layout:\n" + "\n".join(wrong)


def test_no_module_imports_itself_through_others():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # Tarjan's strongly connected components: any component of two or more is a loop
    index, low, stack, on_stack, loops = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                loops.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not loops, f"import loops: {loops}"


def test_no_module_is_too_big_to_read():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split along their seams): {big}"


def test_the_old_module_paths_still_import_and_say_where_they_went():
    import pytest

    import tiercut
    from tiercut import _moved

    with pytest.warns(DeprecationWarning, match="tiercut.profile moved to tiercut.measure.profile"):
        from tiercut.profile import Profile
    assert Profile is tiercut.Profile
    with pytest.warns(DeprecationWarning, match="tiercut.graph.trace"):
        from tiercut.trace import trace
    assert trace is tiercut.trace and callable(tiercut.trace)  # the function, not the module
    import tiercut.split  # noqa: F401  (an old path must not hide the function)

    assert callable(tiercut.split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for old, new in _moved.MOVED.items():
            module = importlib.import_module(old)
            target = importlib.import_module(new)
            public = [n for n in vars(target) if not n.startswith("_")]
            assert all(getattr(module, n) is getattr(target, n) for n in public), old
