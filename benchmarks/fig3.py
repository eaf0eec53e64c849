"""Fig. 3 workload: 100 three-layer networks (linear and tanh) on the hierarchical data.

Steps per second of the vmapped batch, for the exact reduced dynamics (dlnjax.nonlinear.reduced, what
``experiments.mode_dynamics`` uses) and for the same networks trained plainly on the full
1000-wide readout (the general engine / flax model), measured side by side.

    python -m benchmarks.fig3            # 100 networks x 2000 steps
    python -m benchmarks.fig3 --tiny
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines
from dlnjax.nonlinear import reduced
from dlnjax.data import hierarchy

from .common import table, timeit, write
from dlnjax.data.statistics import full_svd_basis, stats_from_examples


def workload(n_init: int, dtype=jnp.float32):
    """The Fig. 3 problem (hierarchical data, 32 -> 32 -> 1000) and ``n_init`` small random starts:
    (data set, statistics, U_r, reduced problem, stacked weights (W1, W2))."""
    ds = hierarchy()
    st = stats_from_examples(ds.x, ds.y).astype(dtype)
    u, _, v = full_svd_basis(st.sigma31)
    u_r = u[:, :32]
    prob = reduced.make_problem(jnp.asarray(ds.x, dtype), ds.y, u_r, v, 32)
    keys = jax.random.split(jax.random.PRNGKey(0), n_init)
    ws = jax.vmap(lambda k: init_fns.small_gaussian(k, (32, 32, 1000), 1.8e-4, dtype))(keys)
    return ds, st, u_r, prob, ws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-init", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        a.n_init, a.steps = 4, 50
    ds, st, u_r, prob, ws = workload(a.n_init)
    rows, out = [], {}
    for act in ("linear", "tanh"):
        f = jax.jit(jax.vmap(lambda w: reduced.train(reduced.reduce_weights(w[0], w[1], u_r), prob, 5e-4, activation=act, num_steps=a.steps, record_every=10)[1]))
        t = timeit(lambda: f(ws), 2)
        sps = a.n_init * a.steps / t["median_s"]
        out[f"{act}_reduced"] = dict(**t, network_steps_per_s=sps)
        rows.append((f"{act}, reduced (exact)", f"{t['median_s']:.2f}", f"{sps:,.0f}", f"{t['first_call_s']:.2f}"))
    # the full-width linear network on statistics (general engine), for contrast
    g = jax.jit(jax.vmap(lambda w: engines.train(w, st, 5e-4, num_steps=a.steps, record_every=10)[1].loss))
    t = timeit(lambda: g(ws), 1)
    sps_full = a.n_init * a.steps / t["median_s"]
    out["linear_full_engine"] = dict(**t, network_steps_per_s=sps_full)
    rows.append(("linear, full 1000-wide readout", f"{t['median_s']:.2f}", f"{sps_full:,.0f}", f"{t['first_call_s']:.2f}"))
    # end-to-end wall time of the experiment, compilation included (a fresh process)
    import os
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "experiments.mode_dynamics", f"hydra.run.dir={tmp}"] + (["experiment=debug"] if a.tiny else [])
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        wall = time.perf_counter() - t0
    out["mode_dynamics_end_to_end_s"] = wall if r.returncode == 0 else None
    rows.append(("python -m experiments.mode_dynamics" + (" (debug)" if a.tiny else ""), f"{wall:.1f} (end to end)", "", ""))
    print(f"Fig. 3 workload: {a.n_init} networks x {a.steps} steps (float32)")
    print(table(rows, ("variant", "median s", "network-steps/s", "compile+first s")))
    ratio = out["linear_reduced"]["network_steps_per_s"] / sps_full
    print(f"reduced / full (linear): {ratio:.1f} x")
    print(f"wrote {write('fig3' + ('_tiny' if a.tiny else ''), dict(config=vars(a), results=out, reduced_over_full_linear=ratio))}")


if __name__ == "__main__":
    main()
