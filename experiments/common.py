"""What every experiment app shares: precision switch, data loading, atomic outputs, errors."""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dlnjax.io import atomic_write

from . import CONFIGS
from .schemas import ConfigError, validate
from dlnjax.registry import enum_value

log = logging.getLogger("dlnjax")


def set_precision(precision: Any) -> None:
    """float32 (default) or float64 for everything the run creates afterwards."""
    import jax

    name = enum_value(precision)
    jax.config.update("jax_enable_x64", name == "float64")


def run_dir() -> Path:
    """Hydra's output directory of this run (the working directory outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - not under Hydra (tests calling run() directly)
        return Path.cwd()


# ----------------------------------------------------------------------------------------
# atomic outputs: write to a temporary name in the same folder, then rename
# ----------------------------------------------------------------------------------------
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None  # NaN/inf -> null: never poison a reader
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if hasattr(x, "value") and not isinstance(x, (str, int)):
        return x.value
    return x


def save_json(path: Path, obj: dict) -> None:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def save_npz(path: Path, **arrays: Any) -> None:
    """A compressed ``.npz`` (``np.load`` reads it) with fixed zip timestamps, so that equal
    arrays give byte-identical files (``np.savez_compressed`` stamps the current time)."""
    import io
    import zipfile

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for k, v in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(v), allow_pickle=False)
                info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, buf.getvalue())

    atomic_write(path, write)


def save_figure(fig: Any, stem: Path) -> list[Path]:
    """PNG (150 dpi) and PDF beside each other, each written atomically."""
    out = []
    for ext, kw in (("png", {"dpi": 150}), ("pdf", {})):
        p = stem.with_suffix(f".{ext}")
        atomic_write(p, lambda f, ext=ext, kw=kw: fig.savefig(f, format=ext, bbox_inches="tight", **kw))
        out.append(p)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def resolved_config(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------
# the app wrapper: clear one-line errors, non-zero exit
# ----------------------------------------------------------------------------------------
def check_engine() -> None:
    """``$DLNJAX_ENGINE`` (see :func:`dlnjax.networks.engines.make_runner`): a known name whose kernels can
    run here (:meth:`dlnjax.networks.engines.base.Engine.problem`), checked before any work (else one line
    and exit 2, not a traceback mid-run)."""
    from dlnjax.networks import engines

    try:
        name = engines.resolve(None)
    except ValueError as e:
        raise ConfigError(f"invalid environment: {e}") from None
    problem = engines.ENGINES[name].unavailable()
    if problem is not None:
        raise ConfigError(f"DLNJAX_ENGINE={name} {problem[1]}")


def enable_compilation_cache() -> Path | None:
    """JAX's persistent compilation cache (a well-kept JAX feature, not ours) in
    ``$DLNJAX_CACHE/xla`` (default ``~/.cache/dlnjax/xla``, beside the native kernels' cache): a
    second run of an app loads its compiled XLA programs instead of compiling them again (the
    main job compiles about 140 small programs, ~6 s on 2 cores). The cache is keyed by JAX on
    the program, the jaxlib version and the machine, so it never serves a wrong program; the
    numbers are those of a fresh compilation. ``DLNJAX_XLA_CACHE=0`` turns it off. Returns the
    directory used (None when off)."""
    import os

    import jax

    if os.environ.get("DLNJAX_XLA_CACHE", "1") == "0":
        return None
    path = Path(os.environ.get("DLNJAX_CACHE", Path.home() / ".cache" / "dlnjax")) / "xla"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only home: run without the cache
        log.warning("no XLA compilation cache (%s: %s); set DLNJAX_CACHE to a writable directory", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def app(name: str, fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Validate the config (``experiments/schemas/<name>.py``), set precision, and turn expected
    errors into one line + exit 2."""
    from dlnjax.data.digits import DataError
    from dlnjax.data.idx import IdxError

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            validate(name, cfg)
            check_engine()
            done = completed_summary(run_dir(), cfg)
            if done is not None:
                log.info("results in %s are complete for this config: skipped (DLNJAX_RERUN=1 runs it again)", run_dir())
                return done
            if "precision" in cfg:
                set_precision(cfg.precision)
            from dlnjax.measure.devices import ieee_matmuls

            ieee_matmuls()  # float32 products in float32 on a GPU too (not TF32); nothing changes on a CPU
            enable_compilation_cache()
            return fn(cfg)
        except (ConfigError, DataError, IdxError) as e:
            log.error(str(e))
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def completed_summary(out: Path, cfg: DictConfig) -> dict | None:
    """The saved summary when ``out`` already holds complete results of this very config.

    Complete means ``summary.json`` exists (it is written last, atomically, after the curves and
    figures) and its stored ``config`` equals this run's resolved config. A re-run of the same
    sweep then skips the jobs that finished and runs only the missing ones (sweep directories
    are named after each job's overrides). ``DLNJAX_RERUN=1`` forces a run.
    """
    import os

    if os.environ.get("DLNJAX_RERUN", "") not in ("", "0"):
        return None
    p = out / "summary.json"
    if not p.exists():
        return None
    try:
        summary = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if summary.get("config") != json.loads(json.dumps(_jsonable(resolved_config(cfg)))):
        return None
    return summary


def write_results(out: Path, summary: dict, **arrays: Any) -> None:
    """``results.npz`` (curves), ``timing.json`` (wall-clock seconds: the only numbers that differ
    between two runs of the same command) and, last, ``summary.json`` (headline numbers), each
    atomically: a run whose summary.json exists is complete, and on CPU the same command gives
    bit-identical summary.json and results.npz."""
    timing = {k: summary.pop(k) for k in [k for k in summary if k.startswith("seconds")]}
    save_npz(out / "results.npz", **arrays)
    save_json(out / "timing.json", timing)
    save_json(out / "summary.json", summary)


def entry(name: str, run: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """The Hydra entry point of an app: ``main = entry("<name>", run)``, composing
    ``configs/<name>/config.yaml`` (an absolute path: relative ones are resolved against the
    module defining the task function, which is this one, not the app run with ``python -m``)."""
    import hydra

    from . import APPS

    if name not in APPS:
        raise KeyError(f"{name!r} is not in experiments.APPS")

    @hydra.main(config_path=str(CONFIGS / name), config_name="config", version_base=None)
    @functools.partial(app, name)
    def main(cfg: DictConfig) -> Any:
        return run(cfg)

    def cli() -> Any:
        """Hydra's composition errors (unknown group option, bad type, unknown key, bad override
        syntax) as one line and exit status 2, like the range checks of :func:`app`."""
        import os

        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        # let composition errors reach us instead of Hydra's multi-line report (set it to 0 for that)
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
        try:
            return main()
        except (HydraException, OmegaConfBaseException) as e:
            print("error: " + one_line_error(e).replace("In 'config'", f"In configs/{name}/config.yaml"), file=sys.stderr)
            sys.exit(2)

    return cli


def one_line_error(e: BaseException) -> str:
    """A composition error in one line: the key, the value and what is allowed where known."""
    from omegaconf.errors import OmegaConfBaseException

    cause = e
    while not isinstance(cause, OmegaConfBaseException) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "msg", None):
        key = getattr(cause, "full_key", None)
        first = str(cause.msg).strip().splitlines()[0]
        return f"invalid config: {key}: {first}" if key else f"invalid config: {first}"
    if type(e).__name__ == "OverrideParseException":
        return f"invalid override: {' '.join(str(e).split())}"
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(("provider=", "Config search path", "Primary config"))]
    if len(lines) > 1 and lines[1].startswith("Available options"):
        return f"{lines[0]} ({lines[1].rstrip(':').lower()}: {', '.join(lines[2:])})"
    return " ".join(lines)


class Progress:
    """Progress of a long run: a tqdm bar when stderr is a terminal, else log lines through
    Hydra's logger (cluster jobs), at most one every ``every`` seconds unless the count moved."""

    def __init__(self, label: str, total: int, every: float = 5.0):
        import time

        self.label, self.total, self.n, self.every = label, max(int(total), 1), 0, every
        self._last = (time.time(), -1)
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=label, leave=True, dynamic_ncols=True)

    def update(self, n: int, extra: str = "") -> None:
        import time

        self.n = n
        if self._bar is not None:
            self._bar.n = min(n, self.total)
            self._bar.set_postfix_str(extra[:60], refresh=True)
            if n >= self.total:
                self._bar.close()
            return
        now = time.time()
        if n == self._last[1] and now - self._last[0] < self.every and n < self.total:
            return
        self._last = (now, n)
        frac = min(self.n / self.total, 1.0)
        bar = "#" * int(20 * frac) + "." * (20 - int(20 * frac))
        log.info("%s [%s] %3d%% %s", self.label, bar, int(100 * frac), extra)
