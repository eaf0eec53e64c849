"""Paper-scale deep linear step against the memory roofline, P-independence and peak memory.

    python -m benchmarks.linear_step                 # depth 20, 1000 hidden, 20 rates (as issue 3)
    python -m benchmarks.linear_step --tiny          # seconds: CI smoke run
    python -m benchmarks.linear_step --pallas-blocks bottom_up_rows=64,top_down_cols=128   # tile sizes (GPU)

Roofline: a step must read every weight twice (output-side pass forming the 10-row products
above each layer; input-side pass using each layer and updating it) and write it once, so
``T_min = 3 B / BW`` with B the bytes of all weights and BW the copy bandwidth measured here,
in bytes moved (read + written) per second by an in-place (donated) ``x <- x + 1`` over an
array of B bytes. Both bandwidths are measured before and after the step timings and the
faster of the two is used (a neighbour on a shared machine can slow memory for a while; taking
the faster keeps the ratios conservative).
Also timed: the same step written plainly as ``jit(vmap(scan(value_and_grad)))`` (autodiff),
the reference the hand-written gradient must beat, and on a CUDA GPU the Pallas kernels of
``dlnjax.networks.kernels.pallas`` (``--pallas`` forces that row elsewhere: interpreted, so only with
``DLNJAX_PALLAS_INTERPRET=1`` and at ``--tiny`` size, to check the code path, not to time it).
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines, linear
from dlnjax.networks.kernels import native, pallas as pallas_step
from dlnjax.measure import sweep

from .common import table, timeit, write
from dlnjax.data.statistics import stats_from_examples


def build(n_in, n_out, depth, hidden, n_rates, p_examples, key, dtype):
    kx, ky, kw = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (p_examples, n_in), dtype)
    y = jax.nn.one_hot(jax.random.randint(ky, (p_examples,), 0, n_out), n_out, dtype=dtype)
    stats = stats_from_examples(x, y, dtype=dtype)
    widths = (n_in,) + (hidden,) * (depth - 2) + (n_out,)
    w0 = init_fns.scaled_gaussian(kw, widths, gain=0.5, dtype=dtype)
    ws = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_rates,) + a.shape).copy(), w0)
    lrs = jnp.geomspace(1e-7, 1e-6, n_rates).astype(dtype)
    return stats, ws, lrs


def compressed_step_times(depth: int, n_train: int | None, steps: int, repeats: int, dtype) -> dict:
    """Per network-step time of the compressed engine (dlnjax.networks.compressed) on the embedded digits at
    this depth: the XLA member runner and the fused native one, one member per call (as the
    sweeps run them on a CPU), at a rate too small to cross, so every call takes ``steps`` steps."""
    from dlnjax.networks import compressed

    from .common import digits_compressed

    st64, rot, cs, u, vt = digits_compressed(n_train, dtype)
    widths = (st64.n_in,) + (1000,) * (depth - 2) + (st64.n_out,)
    cores = compressed.decoupled_cores(widths, 1e-3, u, vt.T, rot, dtype=dtype)
    flops = 2 * 3 * cs.n_out * cores.rank * cs.n_in + 2 * 3 * cs.n_out * cores.rank * cores.rank * max(depth - 3, 0)
    out = dict(kept_inputs=rot.n_kept, rank=cores.rank, flop_per_network_step=flops)
    runners = {"xla": jax.jit(compressed.make_member_runner(cs, record_every=steps))}
    try:
        from dlnjax.networks.kernels.native import compressed as ncomp

        if jax.default_backend() != "cpu":
            out["native_note"] = f"the native kernels run on a CPU backend only (here: {jax.default_backend()})"
        elif ncomp.available():
            runners["native"] = jax.jit(ncomp.make_member_runner(cs, record_every=steps))
        else:
            out["native_note"] = ncomp.reason()
    except ImportError as e:  # pragma: no cover
        out["native_note"] = str(e)
    for name, run in runners.items():
        st0 = compressed.init_member(cores, cs, 2, 0)
        t = timeit(lambda: run(st0, jnp.asarray(1e-9, dtype), -jnp.inf, steps).rec_loss, repeats)
        out[f"{name}_s"] = t["median_s"] / steps
        out[f"{name}_first_call_s"] = t["first_call_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--rates", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--pallas", action="store_true", help="time the Pallas kernels even off a GPU (interpreted)")
    ap.add_argument("--pallas-blocks", default="", help="tile sizes of the Pallas kernels, e.g. bottom_up_rows=64,top_down_cols=128")
    a = ap.parse_args()
    from dlnjax.measure.devices import ieee_matmuls

    ieee_matmuls()  # XLA's float32 products on a GPU in IEEE float32, as the Pallas kernels' (not TF32)
    for item in filter(None, a.pallas_blocks.split(",")):
        k, _, v = item.partition("=")
        if k not in pallas_step.BLOCKS or not v.isdigit():
            ap.error(f"--pallas-blocks: {item!r}: expected KEY=INT with KEY one of {', '.join(pallas_step.BLOCKS)}")
        pallas_step.BLOCKS[k] = int(v)
    if a.tiny:
        a.depth, a.hidden, a.rates, a.steps, a.repeats = 4, 32, 3, 4, 1
    if a.float64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if a.float64 else jnp.float32
    key = jax.random.PRNGKey(0)
    n_in, n_out = 784, 10

    stats, ws, lrs = build(n_in, n_out, a.depth, a.hidden, a.rates, 8000, key, dtype)
    bytes_w = sum(int(w.size) * w.dtype.itemsize for w in ws)

    def bandwidths() -> tuple[float, float]:
        """Copy (in place, read+write) and read-only bandwidth on an array of the weights' size."""
        # in place (donated), as the training step updates its weights: no allocation is timed
        cb = {"b": jnp.zeros((bytes_w // jnp.dtype(dtype).itemsize,), dtype)}
        copy = jax.jit(lambda z: z + 1.0, donate_argnums=(0,))

        def run_copy():
            cb["b"] = copy(cb["b"])
            return cb["b"]

        tc = timeit(run_copy, a.repeats + 2)
        # read-only streaming (a reduction over the same bytes): the output-side pass only reads,
        # and on many CPUs one core cannot read as fast as it can copy
        total = jax.jit(jnp.sum)
        tr = timeit(lambda: total(cb["b"]), a.repeats + 2)
        del cb["b"]
        return 2 * bytes_w / tc["median_s"], bytes_w / tr["median_s"]

    # measured before and after the step timings; the roofline takes the faster of the two (on a
    # shared machine a neighbour can halve the bandwidth for a while: the ratios stay conservative)
    bw_before = bandwidths()

    fresh = lambda: jax.vmap(lambda w: linear.init_state(w, stats))(jax.tree_util.tree_map(jnp.copy, ws))  # noqa: E731
    member_bytes = bytes_w // a.rates
    member = sweep.member_shapes(ws)
    has_native = jax.default_backend() == "cpu" and native.supports(member) and native.available()
    native_note = "ok" if has_native else (native.reason() if jax.default_backend() == "cpu" else "CPU only")
    has_pallas = pallas_step.supports(member) and pallas_step.available() and (pallas_step.on_gpu() or a.pallas)
    pallas_note = "ok" if has_pallas else ("CUDA GPU only" if pallas_step.available() else pallas_step.reason())

    def timed(engine: str, mode: str) -> tuple[float, dict, Any]:
        """Per-step time of the rates' batch with one engine and batch mode (weights donated)."""
        runner = engines.make_runner(stats, record_every=a.steps, n_records=1, engine=engine)
        if mode == "vmap":
            fn = jax.jit(jax.vmap(runner, in_axes=(0, 0, None)), donate_argnums=(0,))
        else:
            fn = jax.jit(lambda st, lr, thr: jax.lax.map(lambda m: runner(m[0], m[1], thr), (st, lr)), donate_argnums=(0,))
        holder = {"s": fresh()}

        def call():
            holder["s"], rec = fn(holder["s"], lrs, -jnp.inf)
            return rec.loss

        t = timeit(call, a.repeats)
        return t["median_s"] / a.steps, t, holder["s"]

    # the sweeps' choice (sweep.run_batch): the native kernels vmapped where they run, else
    # lax.map on a CPU for networks this large, else vmap
    kernels = engines.get(engines.resolve(None)).kernels(member)
    fused = kernels is not None
    sweeps_mode = "vmap" if fused else ("map" if (jax.default_backend() == "cpu" and member_bytes >= sweep.MAP_MIN_BYTES_CPU) else "vmap")
    engine_used = "xla" if kernels is None else ("pallas" if kernels is pallas_step else "native")
    if engine_used == "pallas" and not has_pallas:
        ap.error("DLNJAX_ENGINE=pallas off a GPU: add --pallas (interpreted, with DLNJAX_PALLAS_INTERPRET=1) to time it")

    per_step_vmap_xla, t_vx, s_vx = timed("xla", "vmap")
    per_step_map, t_mx, s_mx = timed("xla", "map")
    per_step_native, t_nv, native_rel = None, None, None
    if has_native:
        per_step_native, t_nv, s_nv = timed("native", "vmap")
        # the two engines took the same steps from the same weights: compare where they ended
        got, want = np.asarray(s_nv.weights[-1]), np.asarray(s_vx.weights[-1])
        native_rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        native_note = f"after {(a.repeats + 1) * a.steps} steps its output layers differ from XLA's by {native_rel:.1e} (max, relative)"
    per_step_pallas, t_pl, pallas_rel = None, None, None
    if has_pallas:
        per_step_pallas, t_pl, s_pl = timed("pallas", "vmap")
        got, want = np.asarray(s_pl.weights[-1]), np.asarray(s_vx.weights[-1])
        pallas_rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        pallas_note = ("" if pallas_step.on_gpu() else "INTERPRETED (no GPU): not a timing; ") + (
            f"tiles {pallas_step.BLOCKS}; after {(a.repeats + 1) * a.steps} steps its output layers differ "
            f"from XLA's by {pallas_rel:.1e} (max, relative)"
        )
    by_choice = {("pallas", "vmap"): (per_step_pallas, t_pl), ("native", "vmap"): (per_step_native, t_nv), ("xla", "map"): (per_step_map, t_mx), ("xla", "vmap"): (per_step_vmap_xla, t_vx)}
    per_step, t_ours = by_choice[(engine_used, sweeps_mode)]

    # peak memory of the sweeps' compiled batch (XLA's own accounting), before any donation
    runner = engines.make_runner(stats, record_every=a.steps, n_records=1)
    step = sweep.batched(runner, sweeps_mode, donate=True)
    mem = step.lower(fresh(), lrs, -jnp.inf).compile().memory_analysis()
    peak = None
    if mem is not None:
        peak = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes

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

    # P-independence: same architecture, statistics from 8,000 vs 60,000 examples (the sweeps' choice)
    p_rows = []
    for p in (8000, 60000):
        st_p, ws_p, _ = build(n_in, n_out, a.depth, a.hidden, a.rates, p, key, dtype)
        f = sweep.batched(engines.make_runner(st_p, record_every=a.steps, n_records=1), sweeps_mode)
        s0 = jax.vmap(lambda w: linear.init_state(w, st_p))(ws_p)
        tp = timeit(lambda: f(s0, lrs, -jnp.inf)[1].loss, a.repeats)
        p_rows.append((p, tp["median_s"] / a.steps))

    comp = compressed_step_times(a.depth, 500 if a.tiny else None, 200 if a.tiny else 2000, a.repeats, dtype)
    net_native = None if per_step_native is None else per_step_native / a.rates

    def comp_cell(t):
        if t is None:
            return "n/a"
        c = f"{t * 1e6:.2f} us ({comp['flop_per_network_step'] / t / 1e9:.1f} GFLOP/s)"
        if net_native is not None:
            c += f"; {net_native / t:.0f} x faster than the native full-width engine (target 1000 x)"
        return c

    bw_after = bandwidths()
    bw, read_bw = max(bw_before[0], bw_after[0]), max(bw_before[1], bw_after[1])
    t_min = 3 * bytes_w / bw
    t_reads = bytes_w / read_bw + 2 * bytes_w / bw

    def cell(t):
        return "n/a" if t is None else f"{t * 1e3:.2f} ms  ({t / t_min:.2f} x T_min, {t / t_reads:.2f} x T_reads)"

    rows = [
        ("weights (all rates)", f"{bytes_w / 1e6:.1f} MB"),
        ("copy bandwidth (in place, read+write)", f"{bw / 1e9:.2f} GB/s  (before / after: {bw_before[0] / 1e9:.2f} / {bw_after[0] / 1e9:.2f})"),
        ("read-only bandwidth (a sum over the same bytes)", f"{read_bw / 1e9:.2f} GB/s  (before / after: {bw_before[1] / 1e9:.2f} / {bw_after[1] / 1e9:.2f})"),
        ("roofline T_min = 3B/BW", f"{t_min * 1e3:.2f} ms"),
        ("T_reads = B/read BW + 2B/BW", f"{t_reads * 1e3:.2f} ms  ({t_reads / t_min:.2f} x T_min)"),
        ("dlnjax, native kernels, rates vmapped", cell(per_step_native) if has_native else "n/a: " + native_note),
        ("dlnjax, Pallas kernels, rates vmapped", cell(per_step_pallas) if has_pallas else "n/a: " + pallas_note),
        ("dlnjax, XLA, networks one after another (lax.map)", cell(per_step_map)),
        ("dlnjax, XLA, rates vmapped", cell(per_step_vmap_xla)),
        ("plain jit(vmap(scan(value_and_grad)))", cell(per_step_plain)),
        ("the sweeps use", f"engine {engine_used}, {sweeps_mode}: {cell(per_step)}"),
        ("speed-up over plain autodiff", f"{per_step_plain / per_step:.2f} x"),
        ("per network-step", f"{per_step / a.rates * 1e3:.3f} ms"),
        ("step, P = 8,000 vs 60,000", f"{p_rows[0][1] * 1e3:.2f} ms vs {p_rows[1][1] * 1e3:.2f} ms (ratio {p_rows[1][1] / p_rows[0][1]:.2f})"),
        ("peak memory / weight bytes", "n/a" if peak is None else f"{peak / bytes_w:.2f}"),
        ("compile + first call", f"{t_ours['first_call_s']:.2f} s"),
        ("compressed engine, XLA, per network-step", comp_cell(comp.get("xla_s"))),
        ("compressed engine, native, per network-step", comp_cell(comp.get("native_s")) if "native_s" in comp else "n/a: " + comp.get("native_note", "")),
        ("compressed engine", f"embedded digits: {comp['kept_inputs']} inputs kept, rank {comp['rank']}, "
                              f"{comp['flop_per_network_step'] / 1e6:.2f} MFLOP per network-step"),
        ("native kernels", native_note),
        ("Pallas kernels", pallas_note),
    ]
    print(f"deep linear step: depth {a.depth}, hidden {a.hidden}, {a.rates} rates, {np.dtype(dtype).name}")
    print(table(rows, ("quantity", "value")))
    path = write(
        "linear_step" + ("_tiny" if a.tiny else "") + ("_f64" if a.float64 else ""),
        dict(
            config=vars(a), dtype=np.dtype(dtype).name, weight_bytes=bytes_w, copy_bandwidth_Bps=bw, t_min_s=t_min,
            read_bandwidth_Bps=read_bw, t_reads_s=t_reads,
            copy_bandwidth_before_after_Bps=[bw_before[0], bw_after[0]], read_bandwidth_before_after_Bps=[bw_before[1], bw_after[1]],
            step_s=per_step, roofline_ratio=per_step / t_min, reads_ratio=per_step / t_reads,
            sweeps_batch_mode=sweeps_mode, sweeps_engine=engine_used,
            step_native_s=per_step_native, native_roofline_ratio=None if per_step_native is None else per_step_native / t_min,
            native_note=native_note, native_vs_xla_rel_diff=native_rel,
            step_pallas_s=per_step_pallas, pallas_roofline_ratio=None if per_step_pallas is None else per_step_pallas / t_min,
            pallas_note=pallas_note, pallas_vs_xla_rel_diff=pallas_rel, pallas_blocks=dict(pallas_step.BLOCKS),
            step_map_s=per_step_map, map_roofline_ratio=per_step_map / t_min,
            step_vmap_xla_s=per_step_vmap_xla, vmap_xla_roofline_ratio=per_step_vmap_xla / t_min,
            step_plain_s=per_step_plain, plain_roofline_ratio=per_step_plain / t_min, speedup_vs_plain=per_step_plain / per_step,
            step_s_by_examples={str(p): t for p, t in p_rows}, peak_bytes=peak,
            peak_over_weights=None if peak is None else peak / bytes_w, compile_first_call_s=t_ours["first_call_s"],
            compressed=comp, native_network_step_s=net_native,
            compressed_speedup_vs_native=None if (net_native is None or "native_s" not in comp) else net_native / comp["native_s"],
        ),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
