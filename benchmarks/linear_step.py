"""Paper-scale deep linear step against the memory roofline, P-independence and peak memory.

    python -m benchmarks.linear_step                 # depth 20, 1000 hidden, 20 rates (as issue 3)
    python -m benchmarks.linear_step --tiny          # seconds: CI smoke run

Roofline: a step must read every weight twice (output-side pass forming the 10-row products
above each layer; input-side pass using each layer and updating it) and write it once, so
``T_min = 3 B / BW`` with B the bytes of all weights and BW the copy bandwidth measured here,
in bytes moved (read + written) per second by an in-place (donated) ``x <- x + 1`` over an\narray of B bytes.
Also timed: the same step written plainly as ``jit(vmap(scan(value_and_grad)))`` (autodiff),
the reference the hand-written gradient must beat.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax import init as inits
from dlnjax import linear, sweep

from .common import table, timeit, write


def build(n_in, n_out, depth, hidden, n_rates, p_examples, key, dtype):
    kx, ky, kw = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (p_examples, n_in), dtype)
    y = jax.nn.one_hot(jax.random.randint(ky, (p_examples,), 0, n_out), n_out, dtype=dtype)
    stats = linear.stats_from_examples(x, y, dtype=dtype)
    widths = (n_in,) + (hidden,) * (depth - 2) + (n_out,)
    w0 = inits.scaled_gaussian(kw, widths, gain=0.5, dtype=dtype)
    ws = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_rates,) + a.shape).copy(), w0)
    lrs = jnp.geomspace(1e-7, 1e-6, n_rates).astype(dtype)
    return stats, ws, lrs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--rates", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--float64", action="store_true")
    a = ap.parse_args()
    if a.tiny:
        a.depth, a.hidden, a.rates, a.steps, a.repeats = 4, 32, 3, 4, 1
    if a.float64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if a.float64 else jnp.float32
    key = jax.random.PRNGKey(0)
    n_in, n_out = 784, 10

    stats, ws, lrs = build(n_in, n_out, a.depth, a.hidden, a.rates, 8000, key, dtype)
    bytes_w = sum(int(w.size) * w.dtype.itemsize for w in ws)

    # copy bandwidth on an array of the same size
    # in place (donated), as the training step updates its weights: no allocation is timed
    cb = {"b": jnp.zeros((bytes_w // jnp.dtype(dtype).itemsize,), dtype)}
    copy = jax.jit(lambda z: z + 1.0, donate_argnums=(0,))

    def run_copy():
        cb["b"] = copy(cb["b"])
        return cb["b"]

    tc = timeit(run_copy, a.repeats + 2)
    bw = 2 * bytes_w / tc["median_s"]
    t_min = 3 * bytes_w / bw

    runner = linear.make_runner(stats, record_every=a.steps, n_records=1)
    fresh = lambda: jax.vmap(lambda w: linear.init_state(w, stats))(jax.tree_util.tree_map(jnp.copy, ws))  # noqa: E731
    step = jax.jit(jax.vmap(runner, in_axes=(0, 0, None)), donate_argnums=(0,))
    # peak memory of the vmapped batch (XLA's own accounting of the compiled step), before any donation
    mem = step.lower(fresh(), lrs, -jnp.inf).compile().memory_analysis()
    peak = None
    if mem is not None:
        peak = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes
    state = {"s": fresh()}

    def run_dlnjax():
        state["s"], rec = step(state["s"], lrs, -jnp.inf)
        return rec.loss

    t_ours = timeit(run_dlnjax, a.repeats)
    per_step = t_ours["median_s"] / a.steps

    # plain autodiff reference
    def plain_train(w, lr):
        def body(w, _):
            l, g = jax.value_and_grad(linear.loss_from_stats)(w, stats)
            return tuple(wi - lr * gi for wi, gi in zip(w, g)), l

        return jax.lax.scan(body, w, None, length=a.steps)

    plain = jax.jit(jax.vmap(plain_train), donate_argnums=(0,))
    holder = {"w": jax.tree_util.tree_map(jnp.copy, ws)}

    def run_plain():
        holder["w"], l = plain(holder["w"], lrs)
        return l

    t_plain = timeit(run_plain, a.repeats)
    per_step_plain = t_plain["median_s"] / a.steps

    # the networks one after another in one compiled loop (what the sweeps do on a CPU for
    # networks this large: sweep.batched)
    member_bytes = bytes_w // a.rates
    seq = jax.jit(lambda st, lr, thr: jax.lax.map(lambda m: runner(m[0], m[1], thr), (st, lr)), donate_argnums=(0,))
    state_m = {"s": fresh()}

    def run_map():
        state_m["s"], rec = seq(state_m["s"], lrs, -jnp.inf)
        return rec.loss

    t_map = timeit(run_map, a.repeats)
    per_step_map = t_map["median_s"] / a.steps
    sweeps_mode = "map" if (jax.default_backend() == "cpu" and member_bytes >= sweep.MAP_MIN_BYTES_CPU) else "vmap"

    # P-independence: same architecture, statistics from 8,000 vs 60,000 examples
    p_rows = []
    for p in (8000, 60000):
        st_p, ws_p, _ = build(n_in, n_out, a.depth, a.hidden, a.rates, p, key, dtype)
        run_p = linear.make_runner(st_p, record_every=a.steps, n_records=1)
        f = jax.jit(jax.vmap(run_p, in_axes=(0, 0, None)))
        s0 = jax.vmap(lambda w: linear.init_state(w, st_p))(ws_p)
        tp = timeit(lambda: f(s0, lrs, -jnp.inf)[1].loss, a.repeats)
        p_rows.append((p, tp["median_s"] / a.steps))

    rows = [
        ("weights (all rates)", f"{bytes_w / 1e6:.1f} MB"),
        ("copy bandwidth (read+write)", f"{bw / 1e9:.2f} GB/s"),
        ("roofline T_min = 3B/BW", f"{t_min * 1e3:.2f} ms"),
        ("dlnjax step (vmapped over rates)", f"{per_step * 1e3:.2f} ms  ({per_step / t_min:.2f} x T_min)"),
        ("plain jit(vmap(scan(value_and_grad)))", f"{per_step_plain * 1e3:.2f} ms  ({per_step_plain / t_min:.2f} x T_min)"),
        ("dlnjax, networks one after another (lax.map)", f"{per_step_map * 1e3:.2f} ms  ({per_step_map / t_min:.2f} x T_min)"),
        ("the sweeps use", sweeps_mode),
        ("speed-up over plain autodiff", f"{per_step_plain / per_step:.2f} x"),
        ("per network-step", f"{per_step / a.rates * 1e3:.3f} ms"),
        ("step, P = 8,000 vs 60,000", f"{p_rows[0][1] * 1e3:.2f} ms vs {p_rows[1][1] * 1e3:.2f} ms (ratio {p_rows[1][1] / p_rows[0][1]:.2f})"),
        ("peak memory / weight bytes", "n/a" if peak is None else f"{peak / bytes_w:.2f}"),
        ("compile + first call", f"{t_ours['first_call_s']:.2f} s"),
    ]
    print(f"deep linear step: depth {a.depth}, hidden {a.hidden}, {a.rates} rates, {np.dtype(dtype).name}")
    print(table(rows, ("quantity", "value")))
    path = write(
        "linear_step" + ("_tiny" if a.tiny else "") + ("_f64" if a.float64 else ""),
        dict(
            config=vars(a), dtype=np.dtype(dtype).name, weight_bytes=bytes_w, copy_bandwidth_Bps=bw, t_min_s=t_min,
            step_s=per_step, step_plain_s=per_step_plain, roofline_ratio=per_step / t_min,
            plain_roofline_ratio=per_step_plain / t_min, speedup_vs_plain=per_step_plain / per_step,
            step_map_s=per_step_map, map_roofline_ratio=per_step_map / t_min, sweeps_batch_mode=sweeps_mode,
            step_s_by_examples={str(p): t for p, t in p_rows}, peak_bytes=peak,
            peak_over_weights=None if peak is None else peak / bytes_w, compile_first_call_s=t_ours["first_call_s"],
        ),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
