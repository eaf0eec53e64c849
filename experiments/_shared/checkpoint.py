"""One checkpoint implementation: arrays saved atomically, tagged with the run's resolved config,
loaded back only by a run of that very config (a changed config never resumes stale state)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ..common import resolved_config, save_npz

log = logging.getLogger("dlnjax")


def config_json(cfg: DictConfig) -> str:
    return json.dumps(resolved_config(cfg), sort_keys=True)


def _flatten(d: Any, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out: dict = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_diff(a: dict, b: dict) -> list[str]:
    """The dotted keys whose values differ between two resolved configs (sorted)."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k, "<absent>") != fb.get(k, "<absent>"))


def move_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint to ``<name>.unreadable[-k]`` (never deleted) and return
    the new path."""
    dest = path.with_name(path.name + ".unreadable")
    k = 1
    while dest.exists():
        k += 1
        dest = path.with_name(f"{path.name}.unreadable-{k}")
    path.rename(dest)
    return dest


def load_tagged(path: Path, cfg: DictConfig) -> dict | None:
    """The arrays saved at ``path`` by a run of this very config, else None. A missing file is
    None silently. A file written under another config is ignored (it stays in place; the log
    names the keys that differ). A file that cannot be read (truncated, garbage: any error
    reading it) is named in one warning line and moved aside to ``<name>.unreadable``, so the
    work it held is re-run and the rest of the run resumes."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            tag = str(z["config_json"])
            if tag != config_json(cfg):
                try:
                    diff = config_diff(json.loads(tag), resolved_config(cfg))
                except ValueError:
                    diff = ["(unreadable config tag)"]
                log.info("checkpoint %s was written under another config (keys that differ: %s): ignored, its work "
                         "is re-run", path, ", ".join(diff) or "none")
                return None
            return {k: z[k] for k in z.files if k != "config_json"}
    except Exception as e:  # noqa: BLE001  (any failure to read it: BadZipFile, EOFError, ValueError, ...)
        dest = move_aside(path)
        log.warning("checkpoint %s cannot be read (%s: %s): moved aside to %s; its work is re-run",
                    path, type(e).__name__, str(e).splitlines()[0][:120] if str(e) else "", dest.name)
        return None


def save_tagged(path: Path, cfg: DictConfig, **arrays: Any) -> None:
    save_npz(path, config_json=np.asarray(config_json(cfg)), **arrays)
