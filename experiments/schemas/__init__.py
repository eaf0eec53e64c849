"""Each app's structured config (``Config``) beside its range checks (``check``), one module per
app (``experiments/schemas/<app>.py``), and the ``data`` config group generated from
:data:`dlnjax.data.DATASETS`.

:func:`register` puts every schema in Hydra's ConfigStore (as ``<app>_schema``, the first entry
of ``configs/<app>/config.yaml``'s defaults) and every data source as an option of the ``data``
group; :func:`validate` runs an app's range checks (every app calls it before any work).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from omegaconf import DictConfig

from .base import ConfigError, EngineName, Precision, ThresholdKind, ThresholdReference  # noqa: F401

_registered = False


def schema_module(app: str) -> ModuleType:
    """``experiments.schemas.<app>`` (its ``Config`` and ``check``)."""
    return importlib.import_module(f"{__name__}.{app}")


def register() -> None:
    """Store every app's schema and every data source in Hydra's ConfigStore (idempotent)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    from dlnjax.data import DATASETS
    from experiments import APPS

    cs = ConfigStore.instance()
    for name in APPS:
        cs.store(name=f"{name}_schema", node=schema_module(name).Config)
    for name, src in DATASETS.items():
        cs.store(group="data", name=name, node=src.config())
    _registered = True


def undeclared_keys(cfg: DictConfig, prefix: str = "") -> list[tuple[str, list[str]]]:
    """The keys of ``cfg`` that no schema declares, each with the keys declared beside it: a key
    added with ``+`` (Hydra force-adds it to a structured config) or otherwise. Walks every node
    whose type is a dataclass (the app's ``Config``, a data source's config, nested groups)."""
    import dataclasses

    from omegaconf import OmegaConf

    out: list[tuple[str, list[str]]] = []
    typ = OmegaConf.get_type(cfg)
    declared = [f.name for f in dataclasses.fields(typ)] if typ is not None and dataclasses.is_dataclass(typ) else None
    for k in cfg.keys():
        if declared is not None and k not in declared:
            out.append((f"{prefix}{k}", [f"{prefix}{d}" for d in declared]))
            continue
        v = cfg._get_node(k)
        if isinstance(v, DictConfig) and not v._is_missing() and not v._is_none():
            out += undeclared_keys(v, f"{prefix}{k}.")
    return out


def check_declared(cfg: DictConfig) -> None:
    """Refuse a key that no schema declares, naming the closest declared key (a misspelt
    ``+stats.gradient_flw=true`` would otherwise run without what was asked for)."""
    import difflib

    bad = undeclared_keys(cfg)
    if bad:
        key, near = bad[0]
        close = difflib.get_close_matches(key, near, n=1, cutoff=0.0)
        raise ConfigError(f"invalid config: {key} is not a key of this app's config (closest declared key: "
                          f"{close[0] if close else '-'}; allowed here: {', '.join(n.rsplit('.', 1)[-1] for n in near)})")


def validate(app: str, cfg: DictConfig) -> None:
    """The keys (:func:`check_declared`), then the range checks of ``app`` (raises
    :class:`ConfigError` with a one-line message)."""
    check_declared(cfg)
    schema_module(app).check(cfg)


register()


def compose(app: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config ``python -m experiments.<app> <overrides>`` would run (no Hydra run directory):
    for tests and notebooks, e.g. ``compose("depth_sweep", ["experiment=debug"])``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from experiments import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS / app), version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides))
