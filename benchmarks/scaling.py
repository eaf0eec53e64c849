"""Scaling of the deep linear step, and the tanh step against the matrix-multiply roofline.

1. Time per deep-linear step (the vmapped runner on the statistics, float32) against depth,
   width, number of vmapped networks and number of examples P, each varied alone around a
   base point (depth 10, 256 hidden, 8 networks, P = 8,000). Expected: linear in depth and in
   the number of networks, ~quadratic in width once the weights dominate, flat in P.
2. A 1000-unit tanh network's training step (flax MLP 784-1000-...-1000-10, ``depth`` layers,
   a minibatch of ``batch`` examples, sum-of-squares loss, SGD via optax, jitted) in FLOP/s,
   against the FLOP/s of one (batch x 1000) @ (1000 x 1000) matrix product measured in the same
   run. FLOPs counted: 2 B N_in N_out per layer forward and twice that backward (input and
   weight gradients; the first layer's input gradient is not needed and not counted).

    python -m benchmarks.scaling
    python -m benchmarks.scaling --tiny
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines, linear
from dlnjax.nonlinear import networks as nonlinear

from .common import table, timeit, write
from dlnjax.data.statistics import stats_from_examples


def linear_step_time(depth, hidden, n_nets, examples, steps, repeats, n_in=784, n_out=10):
    key = jax.random.PRNGKey(0)
    kx, ky, kw = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (examples, n_in), jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(ky, (examples,), 0, n_out), n_out, dtype=jnp.float32)
    stats = stats_from_examples(x, y, dtype=jnp.float32)
    widths = (n_in,) + (hidden,) * (depth - 2) + (n_out,)
    w0 = init_fns.scaled_gaussian(kw, widths, gain=0.5, dtype=jnp.float32)
    states = jax.vmap(lambda w: linear.init_state(w, stats))(tuple(jnp.broadcast_to(w, (n_nets,) + w.shape) for w in w0))
    lrs = jnp.full((n_nets,), 1e-7, jnp.float32)
    runner = engines.make_runner(stats, record_every=steps, n_records=1)
    f = jax.jit(jax.vmap(runner, in_axes=(0, 0, None)))
    t = timeit(lambda: f(states, lrs, -jnp.inf)[1].loss, repeats)
    return t["median_s"] / steps


def tanh_flops(depth, width, batch, steps, repeats):
    key = jax.random.PRNGKey(0)
    kx, ky, kw, km = jax.random.split(key, 4)
    widths = (784,) + (width,) * (depth - 2) + (10,)
    x = jax.random.normal(kx, (batch, 784), jnp.float32)
    y = jax.random.normal(ky, (batch, 10), jnp.float32)
    model = nonlinear.MLP(widths[1:], activation="tanh")
    params = nonlinear.params_from_weights(nonlinear.deep_tanh_weights(kw, widths, "orthogonal", 1.0, jnp.float32))
    train = jax.jit(nonlinear.make_train_examples(model, optax.sgd(1e-5), x, y, num_steps=steps, record_every=steps))
    t = timeit(lambda: train(params)[1], repeats)
    per_step = t["median_s"] / steps
    pairs = list(zip(widths[:-1], widths[1:]))
    flops = sum(2 * batch * a * b * (3 if i > 0 else 2) for i, (a, b) in enumerate(pairs))
    # matrix-multiply FLOP/s on the layer shape, same run
    a = jax.random.normal(km, (batch, width), jnp.float32)
    b = jax.random.normal(km, (width, width), jnp.float32)
    mm = jax.jit(lambda a, b: (a @ b) * 1e-3)
    tm = timeit(lambda: mm(a, b), max(repeats, 5) * 4)
    mm_flops = 2 * batch * width * width / tm["median_s"]
    return dict(step_s=per_step, flops_per_step=flops, achieved_flops_per_s=flops / per_step,
                matmul_flops_per_s=mm_flops, fraction_of_matmul=flops / per_step / mm_flops,
                compile_first_call_s=t["first_call_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tanh-depth", type=int, default=10)
    ap.add_argument("--tanh-width", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args()
    base = dict(depth=10, hidden=256, n_nets=8, examples=8000)
    grid = dict(depth=[4, 10, 20, 40], hidden=[64, 256, 512, 1024], n_nets=[1, 4, 8, 16, 32], examples=[1000, 8000, 60000])
    if a.tiny:
        a.steps, a.repeats, a.tanh_depth, a.tanh_width, a.batch = 4, 1, 3, 32, 16
        base = dict(depth=3, hidden=16, n_nets=2, examples=200)
        grid = dict(depth=[3, 4], hidden=[8, 16], n_nets=[1, 2], examples=[100, 200])

    rows, scaling = [], {}
    for axis, values in grid.items():
        ts = []
        for v in values:
            t = linear_step_time(**{**base, axis: v}, steps=a.steps, repeats=a.repeats)
            ts.append(t)
            rows.append((axis, v, f"{t * 1e3:.3f}", f"{t / ts[0]:.2f}"))
        slope = float(np.polyfit(np.log(values), np.log(ts), 1)[0]) if len(values) > 1 else None
        scaling[axis] = dict(values=values, step_s=ts, loglog_slope=slope)
    print(f"deep linear step (float32), varied one axis at a time around {base}")
    print(table(rows, ("axis", "value", "ms / step", "x first")))
    print("log-log slopes: " + ", ".join(f"{k} {v['loglog_slope']:.2f}" for k, v in scaling.items()))

    tf = tanh_flops(a.tanh_depth, a.tanh_width, a.batch, a.steps, a.repeats)
    print(
        f"tanh step ({a.tanh_depth} layers of {a.tanh_width}, batch {a.batch}): {tf['step_s'] * 1e3:.2f} ms, "
        f"{tf['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = {tf['fraction_of_matmul']:.0%} of the "
        f"{tf['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s of a ({a.batch} x {a.tanh_width}) @ ({a.tanh_width} x {a.tanh_width}) product (target 40%)"
    )
    path = write("scaling" + ("_tiny" if a.tiny else ""), dict(config=vars(a), base=base, linear_scaling=scaling, tanh=tf))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
