"""The house rules that keep the code findable: no app imports another app (shared code lives in
the library or in experiments/_shared), and the library does no file or plot I/O."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem not in ("__init__", "common"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level and mod:
                names.add(mod.split(".")[0])
            elif node.level and not mod:
                names.update(a.name for a in node.names)
            elif mod.startswith("experiments."):
                names.add(mod.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("experiments."))
    return names


def test_no_app_imports_another_app():
    offenders = {}
    for app in APPS:
        for f in [ROOT / "experiments" / f"{app}.py", *sorted((ROOT / "experiments" / "_shared").glob("*.py"))]:
            bad = (_imports(f) & set(APPS)) - {f.stem}
            if bad:
                offenders[str(f.relative_to(ROOT))] = sorted(bad)
    assert not offenders, f"apps imported by other modules of experiments/: {offenders}"
    assert "depth_sweep" in APPS and "lr_sweep" in APPS  # the check sees the apps


def test_the_library_writes_no_plots():
    for f in (ROOT / "dlnjax").rglob("*.py"):
        text = f.read_text()
        assert "matplotlib" not in text and "savefig" not in text, f


def test_the_app_registry_lists_every_hydra_app_and_its_schema():
    """experiments.APPS is the one list of apps: every module with a Hydra entry point is in it,
    with a schema module (Config + check) and a config folder."""
    from experiments import APPS as REGISTRY
    from experiments import CONFIGS
    from experiments.schemas import schema_module

    with_entry = {a for a in APPS if 'entry("' in (ROOT / "experiments" / f"{a}.py").read_text()}
    assert with_entry == set(REGISTRY)
    for name in REGISTRY:
        mod = schema_module(name)
        assert callable(mod.check) and hasattr(mod, "Config"), name
        assert (CONFIGS / name / "config.yaml").is_file(), name


def test_shared_figures_take_results_not_configs():
    """The figures in experiments/_shared/plots draw a run's results (a summary dict, result
    arrays or a result dataclass), so any run directory can be redrawn without its config: no
    public function there takes a ``cfg`` argument or reads ``cfg.``."""
    offenders = []
    for path in sorted((ROOT / "experiments" / "_shared" / "plots").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                if any(a.arg in ("cfg", "config") for a in node.args.args + node.args.kwonlyargs):
                    offenders.append(f"{path.name}:{node.name}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cfg":
                offenders.append(f"{path.name}:{node.lineno}")
    assert len(list((ROOT / "experiments" / "_shared" / "plots").glob("*.py"))) >= 4
    assert not offenders, offenders


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_imports(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The dlnjax modules a file imports, at module level or inside functions (absolute and
    relative imports; ``from pkg import name`` counts the submodule ``pkg.name`` when it is one)."""
    me = _module_name(path, root)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "dlnjax"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "dlnjax":
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules}
    return {m for m in out if m in modules and m != me}


def _room(module: str) -> str:
    """A module's room: its subpackage of dlnjax, or the module itself at the top level."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_cycle_between_rooms():
    """The import graph of dlnjax (ast; imports inside functions count) has no cycle through
    modules of different rooms (subpackages, or top-level modules): a subpackage's __init__
    re-exporting its own modules is not such a cycle."""
    root = ROOT / "dlnjax"
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(p, root) for p in files}
    # the root package (dlnjax/__init__: the public API, re-exporting the rooms) is left out: a
    # module's ``from . import x`` names the submodule, not the facade
    modules.discard("dlnjax")
    graph = {_module_name(p, root): _library_imports(p, root, modules) for p in files if _module_name(p, root) != "dlnjax"}
    # Tarjan's strongly connected components
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    bad = [sorted(c) for c in sccs if len({_room(m) for m in c}) > 1]
    assert not bad, f"import cycles between rooms of dlnjax: {bad}"
    # the graph is not empty (the walk found the library's imports)
    assert graph["dlnjax.measure.sweep"] and "dlnjax.networks.engines" in graph["dlnjax.measure.robust"] | graph["dlnjax.measure.sweep"]


def test_rooms_depend_on_each_other_in_one_direction():
    """Contracted to rooms, the import graph is a DAG (stronger than no module cycle): every
    room's imports go down the order data < networks < theory, init < measure, nonlinear, with
    the top-level helpers (registry, io, _lazy) below them all. A room importing one above it
    fails here with the edge named."""
    root = ROOT / "dlnjax"
    files = sorted(root.rglob("*.py"))
    modules = {_module_name(p, root) for p in files} - {"dlnjax"}
    level = {"dlnjax.registry": 0, "dlnjax.io": 0, "dlnjax._lazy": 0, "dlnjax.cli": 0, "dlnjax.data": 1,
             "dlnjax.networks": 2, "dlnjax.theory": 3, "dlnjax.init": 3, "dlnjax.measure": 4, "dlnjax.nonlinear": 4}
    edges = set()
    for p in files:
        me = _module_name(p, root)
        if me == "dlnjax":
            continue
        for dep in _library_imports(p, root, modules):
            a, b = _room(me), _room(dep)
            if a != b:
                edges.add((a, b))
    assert {r for e in edges for r in e} <= set(level), f"a room with no place in the order: {edges}"
    upward = sorted((a, b) for a, b in edges if level[b] >= level[a])
    assert not upward, f"imports that go up or across the rooms' order: {upward}"
    assert ("dlnjax.measure", "dlnjax.networks") in edges and ("dlnjax.theory", "dlnjax.networks") in edges


def test_every_name_a_room_exports_resolves():
    """Each room's ``__all__`` (lazy, dlnjax/_lazy.py) names something that exists: a stale
    export fails here, not in a user's session. A name of a room is its own module's object."""
    import importlib

    rooms = ["dlnjax", "dlnjax.data", "dlnjax.theory", "dlnjax.networks", "dlnjax.networks.kernels", "dlnjax.init",
             "dlnjax.measure", "dlnjax.nonlinear"]
    for room in rooms:
        pkg = importlib.import_module(room)
        assert pkg.__all__, room
        for name in pkg.__all__:
            obj = getattr(pkg, name)
            assert obj is not None, (room, name)
    from dlnjax import init, theory
    from dlnjax.init import functions
    from dlnjax.theory import closed_form

    assert theory.learning_time is closed_form.learning_time and init.decoupled is functions.decoupled
