"""Timing helpers shared by the benchmarks: medians of repeats, compile time apart."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import jax


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def timeit(fn: Callable[[], Any], repeats: int = 5) -> dict:
    """First call (compile + run) timed apart; then the median of ``repeats`` calls."""
    t0 = time.perf_counter()
    block(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def machine() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "n_devices": jax.device_count(),
    }


def write(name: str, payload: dict) -> Path:
    out = Path(os.environ.get("DLNJAX_BENCH_DIR", "bench_results"))
    out.mkdir(parents=True, exist_ok=True)
    p = out / f"{name}.json"
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    os.replace(tmp, p)
    return p


def table(rows: list[tuple], header: tuple) -> str:
    cols = list(zip(*([header] + [tuple(str(c) for c in r) for r in rows])))
    widths = [max(len(c) for c in col) for col in cols]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*(str(c) for c in r)) for r in rows]
    return "\n".join(lines)


def digits_compressed(n_train: int | None, dtype: Any) -> tuple[Any, Any, Any, Any, Any]:
    """The main job's compressed problem on the embedded digits, raw pixels (as
    experiments/_shared/problem.py and depth_loop.py build it): ``(stats64, rot, cs, u, vt)``,
    the float64 statistics, the rotation into Sigma11's eigenbasis, the compressed statistics in
    ``dtype`` and the SVD of Sigma31 (``u``, ``vt``)."""
    import numpy as np

    from dlnjax.data.digits import load_digits
    from dlnjax.data.preprocess import preprocess
    from dlnjax.data.statistics import Stats
    from dlnjax.networks import compressed

    ds = preprocess(load_digits("embedded", n_train=n_train), "raw")
    x, y = np.asarray(ds.x, np.float64), np.asarray(ds.y, np.float64)
    st64 = Stats(x.T @ x, y.T @ x, float(np.sum(y * y)))
    rot = compressed.rotate_inputs(st64.sigma11)
    cs = compressed.compress_stats(st64, rot, dtype)
    u, _, vt = np.linalg.svd(st64.sigma31, full_matrices=True)
    return st64, rot, cs, u, vt
