"""One compilation across depths at full width: the stacked layout against the tuple of layers.

    python -m benchmarks.stacked_layout            # init_comparison's shapes: 36 members, 32 hidden, 658 inputs
    python -m benchmarks.stacked_layout --tiny     # seconds: a smoke run

The full-width step of :mod:`dlnjax.networks.linear` unrolls the layers (one program per depth,
its trace growing with the depth); :func:`dlnjax.networks.linear.make_stacked_runner` holds the
hidden layers as one capacity stack walked by loops with a traced count (one program for every
depth). Both run the same products in the same order (bit-identical in float64, tested). Timed side by
side in one process, per depth: the first call (trace, lowering, XLA compilation and the run:
the stacked program compiles at the first depth only, later depths reuse it) and the median per
step of later calls, float32, the batch vmapped, on XLA and on the native kernels (where they
build), each layout.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.data.statistics import Stats
from dlnjax.networks import linear

from .common import block, table, write


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)  # compile times as on a first run
    from dlnjax.measure.devices import ieee_matmuls

    ieee_matmuls()  # IEEE float32 products on a GPU too
    n_in, hidden, n_out, members = (20, 8, 4, 4) if args.tiny else (658, 32, 10, 36)
    depths = (3, 5) if args.tiny else (3, 12, 32)
    steps = 100 if args.tiny else 500
    rng = np.random.default_rng(0)
    dt = jnp.float32
    lam = jnp.asarray(np.sort(rng.random(n_in))[::-1] * 1e3, dt)  # Sigma11 diagonal (inputs rotated, as the apps run)
    stats = Stats(lam, jnp.asarray(rng.standard_normal((n_out, n_in)), dt), jnp.asarray(1e4, dt))
    lrs = jnp.full((members,), 1e-7, dt)  # too small to cross or diverge: every call takes all its steps
    cap = max(depths) - 3
    from dlnjax.networks import engines
    from dlnjax.networks.engines.native import NativeStacked
    kinds = ["xla"] + (["native"] if engines.get("native").unavailable() is None else [])
    stacked_fns = {k: jax.jit(jax.vmap(linear.make_stacked_runner(
        stats, record_every=10, n_records=steps // 10, kernels=NativeStacked if k == "native" else linear.StackedKernels),
        in_axes=(0, 0, None, None))) for k in kinds}
    rows, out = [], []
    for depth in depths:
        widths = (n_in,) + (hidden,) * (depth - 2) + (n_out,)
        ws = tuple(jnp.asarray(rng.standard_normal((members, b, a)) / np.sqrt(a), dt) for a, b in zip(widths[:-1], widths[1:]))
        s0 = jax.vmap(lambda w: linear.init_state(w, stats))(ws)
        stacked, n_hidden = linear.stack_layers(ws, cap)
        s1 = s0._replace(weights=stacked)
        calls = {}
        for k in kinds:
            # a new program per depth for the tuple of layers, as the apps build it; one for all depths stacked
            tup = jax.jit(jax.vmap(engines.make_runner(stats, record_every=10, n_records=steps // 10, engine=k),
                                   in_axes=(0, 0, None)))
            calls[f"tuple_{k}"] = (lambda f: lambda: f(s0, lrs, -jnp.inf))(tup)
            calls[f"stacked_{k}"] = (lambda f: lambda: f(s1, lrs, -jnp.inf, n_hidden))(stacked_fns[k])
        res = {}
        for name, call in calls.items():
            t0 = time.perf_counter()
            block(call())
            first = time.perf_counter() - t0
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                block(call())
                times.append(time.perf_counter() - t0)
            res[name] = {"first_call_s": first, "step_s": float(np.median(times)) / steps}
        out.append({"depth": depth, "layouts": res})
        rows.append((depth, *(f"{res[n]['first_call_s']:.2f} s / {res[n]['step_s'] * 1e3:.2f} ms" for n in calls)))
    print(table(rows, ("depth", *(f"{n}: first call / step" for n in calls))))
    payload = {"stacked_layout": out, "config": {"n_in": n_in, "hidden": hidden, "n_out": n_out, "members": members,
                                                 "capacity": cap, "steps_per_call": steps, "dtype": "float32"}}
    write("stacked_layout", payload)
    return payload


if __name__ == "__main__":
    main()
