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
    if "t_min_s" in d:
        c = d["config"]
        by_p = d.get("step_s_by_examples", {})
        ps = sorted(by_p, key=int)
        rows = [
            ("workload", f"depth {c['depth']}, {c['hidden']} hidden, {c['rates']} rates vmapped, {d['dtype']}"),
            ("weights", f"{d['weight_bytes'] / 1e6:.0f} MB"),
            ("copy bandwidth (in place, read+write)", f"{d['copy_bandwidth_Bps'] / 1e9:.2f} GB/s"),
            ("roofline T_min = 3 B / BW", f"{d['t_min_s'] * 1e3:.1f} ms"),
            ("dlnjax step", f"{d['step_s'] * 1e3:.1f} ms = {d['roofline_ratio']:.2f} x T_min"),
            ("plain jit(vmap(scan(value_and_grad)))", f"{d['step_plain_s'] * 1e3:.1f} ms = {d['plain_roofline_ratio']:.2f} x T_min"),
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


def main() -> None:
    print("\n".join(render(Path(p)) for p in sys.argv[1:]))


if __name__ == "__main__":
    main()
