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
