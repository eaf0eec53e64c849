"""Render benchmark JSON files as the Markdown tables of the README (never typed by hand).

    python -m benchmarks.report bench_results/linear_step.json bench_results/fig3.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _machine(m: dict) -> str:
    return f"{m.get('device')} ({m.get('processor')}, {m.get('cpu_count')} cores), JAX {m.get('jax')}"


def render(path: Path) -> str:
    d = json.loads(Path(path).read_text())
    name = Path(path).stem
    lines = [f"**{name}** on {_machine(d['machine'])}", ""]
    if "workload1" in d:
        return _render_baselines(d, lines)
    if "linear_scaling" in d:
        return _render_scaling(d, lines)
    if "t_min_s" in d:
        c = d["config"]
        by_p = d.get("step_s_by_examples", {})
        ps = sorted(by_p, key=int)
        rows = [
            ("workload", f"depth {c['depth']}, {c['hidden']} hidden, {c['rates']} rates, {d['dtype']}"),
            ("weights", f"{d['weight_bytes'] / 1e6:.0f} MB"),
            ("copy bandwidth (in place, read+write)", f"{d['copy_bandwidth_Bps'] / 1e9:.2f} GB/s"),
        ]
        t_min, t_reads = d["t_min_s"], d.get("t_reads_s")

        def cell(t):
            out = f"{t * 1e3:.1f} ms = {t / t_min:.2f} x T_min"
            return out + (f" = {t / t_reads:.2f} x T_reads" if t_reads else "")

        if t_reads:
            rows += [("read-only bandwidth", f"{d['read_bandwidth_Bps'] / 1e9:.2f} GB/s")]
        rows += [("roofline T_min = 3 B / BW", f"{t_min * 1e3:.1f} ms")]
        if t_reads:
            rows += [("T_reads = B / read BW + 2 B / BW", f"{t_reads * 1e3:.1f} ms = {t_reads / t_min:.2f} x T_min")]
        if "sweeps_engine" in d:
            native = d.get("step_native_s")
            rows += [
                ("dlnjax, native kernels, rates vmapped", cell(native) if native else "n/a: " + d.get("native_note", "")),
            ]
            if d.get("step_pallas_s"):  # JSON from a GPU run with the Pallas kernels
                rows += [("dlnjax, Pallas kernels, rates vmapped", cell(d["step_pallas_s"]) + f" (tiles {d.get('pallas_blocks')})")]
            rows += [
                ("dlnjax, XLA, networks one after another (lax.map)", cell(d["step_map_s"])),
                ("dlnjax, XLA, rates vmapped", cell(d["step_vmap_xla_s"])),
                ("plain jit(vmap(scan(value_and_grad)))", cell(d["step_plain_s"])),
                ("what the sweeps use here", f"engine {d['sweeps_engine']}, {d['sweeps_batch_mode']}"),
            ]
            if d.get("native_vs_xla_rel_diff") is not None:
                rows += [("native vs XLA weights after the timed steps (max, relative)", f"{d['native_vs_xla_rel_diff']:.1e}")]
            if d.get("pallas_vs_xla_rel_diff") is not None:
                rows += [("Pallas vs XLA weights after the timed steps (max, relative)", f"{d['pallas_vs_xla_rel_diff']:.1e}")]
        else:  # JSON written before the native kernels (e.g. the H100 run)
            rows += [
                ("dlnjax step, rates vmapped", cell(d["step_s"])),
                ("plain jit(vmap(scan(value_and_grad)))", cell(d["step_plain_s"])),
            ]
            if "step_map_s" in d:
                rows += [
                    ("dlnjax step, networks one after another (lax.map)", cell(d["step_map_s"])),
                    ("batch mode the sweeps use here", d["sweeps_batch_mode"]),
                ]
        rows += [
            ("step with statistics of " + " vs ".join(f"{int(p):,}" for p in ps) + " examples",
             " vs ".join(f"{by_p[p] * 1e3:.1f} ms" for p in ps)),
            ("peak memory / weight bytes", "n/a" if d.get("peak_over_weights") is None else f"{d['peak_over_weights']:.2f}"),
        ]
    else:
        r = d["results"]
        c = d["config"]
        rows = [("workload", f"{c['n_init']} networks x {c['steps']} steps, float32")]
        for k, v in r.items():
            if isinstance(v, dict):
                rows.append((k.replace("_", " "), f"{v['network_steps_per_s']:,.0f} network-steps/s (median {v['median_s']:.2f} s, compile+first {v['first_call_s']:.2f} s)"))
        if r.get("mode_dynamics_end_to_end_s") is not None:
            rows.append(("`python -m experiments.mode_dynamics`, end to end", f"{r['mode_dynamics_end_to_end_s']:.1f} s (compilation included)"))
        rows.append(("reduced / full readout (linear)", f"{d['reduced_over_full_linear']:.1f} x"))
    lines += ["| quantity | value |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


def _render_baselines(d: dict, lines: list) -> str:
    w1, w2 = d["workload1"], d.get("workload2", {})
    r1 = w1["results"]
    ours = r1["dlnjax"]["per_network_step_s"]
    names = {
        "dlnjax": "dlnjax: all rates in one compiled batch on the statistics (as the sweeps run it)",
        "dlnjax_vmap": "dlnjax, the rates vmapped",
        "numpy_stats": "(c) NumPy on the statistics, same gradient, one rate at a time",
        "torch_stats": "(b) PyTorch on the statistics, autograd, one rate at a time",
        "torch_examples": f"(a) PyTorch, Eq. 1 on the {w1['examples']:,} examples, autograd, one rate at a time",
    }
    targets = w1.get("targets", {})
    lines += [
        f"Workload 1 (Fig. 4): depth {w1['depth']}, {w1['hidden']} hidden, {w1['rates']} rates, "
        f"P = {w1['examples']:,}, float32; torch {d.get('torch') or 'not installed'}.",
        "",
        "| variant | per network-step | dlnjax is faster by | target | max rel. difference of losses (and their change) vs dlnjax |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, v in r1.items():
        t = v["per_network_step_s"]
        tgt = f">= {targets[k]:,.4g} x" if k in targets else ""
        diff = "" if k.startswith("dlnjax") else f"{v.get('relative_loss_difference', 0):.1e}"
        lines.append(f"| {names.get(k, k)} | {t * 1e3:,.3f} ms | {t / ours:,.1f} x | {tgt} | {diff} |")
    if w2:
        lines += [
            "",
            f"Workload 2 (Fig. 3): {w2['n_init']} initialisations x {w2['steps']} steps, float32.",
            "",
            "| network | dlnjax (vmapped, exact reduced) | PyTorch loop, hand-written gradients | dlnjax is faster by | target |",
            "| --- | --- | --- | --- | --- |",
        ]
        for act, v in w2["results"].items():
            tl = v.get("torch_loop_per_init_s")
            lines.append(
                f"| {act} | {v['per_init_s'] * 1e3:.2f} ms / init | "
                + (f"{tl * 1e3:.1f} ms / init | {v['speedup']:.1f} x | >= 3 x |" if tl else "not run | | |")
            )
    return "\n".join(lines) + "\n"


def _render_scaling(d: dict, lines: list) -> str:
    lines += [f"Deep linear step (float32) varied one axis at a time around {d['base']}.", "",
              "| axis | values | ms / step | log-log slope |", "| --- | --- | --- | --- |"]
    for axis, v in d["linear_scaling"].items():
        vals = ", ".join(str(x) for x in v["values"])
        ts = ", ".join(f"{t * 1e3:.2f}" for t in v["step_s"])
        lines.append(f"| {axis} | {vals} | {ts} | {v['loglog_slope']:.2f} |")
    t = d["tanh"]
    c = d["config"]
    lines += ["", f"tanh step ({c['tanh_depth']} layers of {c['tanh_width']}, batch {c['batch']}, float32): "
              f"{t['step_s'] * 1e3:.1f} ms, {t['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = "
              f"**{t['fraction_of_matmul']:.0%}** of the {t['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s of one layer-shaped "
              f"matrix product measured in the same run (target 40%)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    print("\n".join(render(Path(p)) for p in sys.argv[1:]))


if __name__ == "__main__":
    main()
