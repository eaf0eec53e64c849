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
