"""One checkpoint implementation: arrays saved atomically, tagged with the run's resolved config,
loaded back only by a run of that very config (a changed config never resumes stale state)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ..common import resolved_config, save_npz


def config_json(cfg: DictConfig) -> str:
    return json.dumps(resolved_config(cfg), sort_keys=True)


def load_tagged(path: Path, cfg: DictConfig) -> dict | None:
    """The arrays saved at ``path`` by a run of this very config, else None (missing, other
    config, or unreadable)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            if str(z["config_json"]) != config_json(cfg):
                return None
            return {k: z[k] for k in z.files if k != "config_json"}
    except (OSError, ValueError, KeyError):
        return None


def save_tagged(path: Path, cfg: DictConfig, **arrays: Any) -> None:
    save_npz(path, config_json=np.asarray(config_json(cfg)), **arrays)
