"""Gather a multirun's jobs into one tidy CSV, and redraw Fig. 4 across the jobs of a depth sweep.

    python -m experiments.aggregate multirun/depth_sweep            # any sweep directory
    python -m experiments.aggregate multirun/depth_sweep --out agg   # default: <dir>/aggregate

Writes ``jobs.csv`` (one row per job: its overrides, then every scalar of its summary.json),
``per_depth.csv`` (one row per job and depth, for summaries that hold ``depths``: every list of
the same length as ``depths`` becomes a column), and, when the jobs are depth sweeps
(``experiment: depth_sweep``), ``depth_sweep.png/pdf``, ``depth_sweep_grid.png/pdf`` and
``summary.json`` for the union of their depths, drawn exactly as one job over all of them would
draw it. Jobs whose ``summary.json`` is missing (killed or still running) are listed as
incomplete and left out. Jobs of a depth sweep must agree on everything but ``depths``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("dlnjax")

SCALARS = (int, float, str, bool, type(None))


def find_jobs(root: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) job directories under ``root`` (a job: a folder with .hydra/)."""
    complete, incomplete = [], []
    for hydra_dir in sorted(root.rglob(".hydra")):
        job = hydra_dir.parent
        (complete if (job / "summary.json").exists() else incomplete).append(job)
    return complete, incomplete


def overrides(job: Path) -> dict[str, str]:
    p = job / ".hydra" / "overrides.yaml"
    out: dict[str, str] = {}
    if p.exists():
        from omegaconf import OmegaConf

        for item in OmegaConf.load(p) or []:
            k, _, v = str(item).partition("=")
            out[k.lstrip("+~")] = v
    return out


def _atomic_csv(path: Path, rows: list[dict]) -> None:
    from dlnjax.io import atomic_write

    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def write(f):
        import io

        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        f.write(text.getvalue().encode())

    atomic_write(path, write)


def tidy(jobs: list[Path]) -> tuple[list[dict], list[dict]]:
    job_rows, depth_rows = [], []
    for job in jobs:
        s = json.loads((job / "summary.json").read_text())
        ov = overrides(job)
        base = {"job": str(job), **{f"override.{k}": v for k, v in ov.items()}}
        job_rows.append({**base, **{k: v for k, v in s.items() if isinstance(v, SCALARS)}})
        depths = s.get("depths")
        if isinstance(depths, list):
            from ._shared.depth_loop import NOT_PER_DEPTH

            cols = {k: v for k, v in s.items() if isinstance(v, list) and len(v) == len(depths) and k not in NOT_PER_DEPTH}
            for i, d in enumerate(depths):
                row = {**base, "experiment": s.get("experiment"), "dataset": s.get("dataset"), "depth": d}
                for k, v in cols.items():
                    row[k] = v[i] if isinstance(v[i], SCALARS) else json.dumps(v[i])
                depth_rows.append(row)
    return job_rows, depth_rows


def redraw_depth_sweep(jobs: list[Path], out: Path) -> dict:
    """Fig. 4 over the union of the jobs' depths (jobs must agree on every other setting): every
    per-depth entry is taken from the job that ran that depth, the headline and its intervals
    are recomputed from these per-depth lists (:func:`experiments._shared.depth_loop.derived_fields`,
    the routine a single run uses), and the figures are drawn as one job would draw them. The
    depth x rate grid is laid on the union of the jobs' rates (grid and extension rates)."""
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax.measure import robust

    from ._shared import depth_loop
    from ._shared.plots import fig4
    from .common import save_json, save_npz

    summaries = [json.loads((j / "summary.json").read_text()) for j in jobs]
    if any(s.get("summary_version", 1) < 2 for s in summaries):
        raise SystemExit("aggregate: a job's summary.json predates summary_version 2 (best_learning_rate was 1/lambda*); "
                         "re-run it with this version")
    configs = [s["config"] for s in summaries]
    strip = lambda c: {k: v for k, v in c.items() if k != "depths"}  # noqa: E731
    if any(strip(c) != strip(configs[0]) for c in configs[1:]):
        raise SystemExit("aggregate: these depth-sweep jobs differ in more than their depths; aggregate them separately")
    per_depth: dict[int, tuple[dict, int, Path]] = {}
    for job, s in zip(jobs, summaries):
        for i, d in enumerate(s["depths"]):
            per_depth[int(d)] = (s, i, job)
    depths = sorted(per_depth)
    first = summaries[0]
    n0 = len(first["depths"])
    merged = dict(first)
    for k, v in first.items():  # every per-depth list, re-assembled in depth order
        if isinstance(v, list) and len(v) == n0 and k not in depth_loop.NOT_PER_DEPTH:
            merged[k] = [per_depth[d][0][k][per_depth[d][1]] for d in depths]
    thr = first["threshold"]
    merged["threshold"] = {k: ([per_depth[d][0]["threshold"][k][per_depth[d][1]] for d in depths]
                               if isinstance(v, list) and len(v) == n0 else v) for k, v in thr.items()}
    merged["depths"] = depths
    cfg = configs[0]
    merged.update(depth_loop.derived_fields(depths, merged, int(cfg["fit_min_depth"]), float(cfg["stats"]["band"]),
                                            robust.grid_ratio(first["learning_rates"])))
    allr = np.unique(np.concatenate([np.asarray(s["learning_rates_run"], float) for s in summaries]))
    merged["learning_rates_run"] = allr.tolist()
    merged["aggregated_from"] = [str(j) for j in jobs]
    merged.pop("config", None)
    grid = np.asarray(first["learning_rates"], float)
    arrays: dict = dict(depths=np.asarray(depths), learning_rates=allr,
                        in_grid=np.asarray([np.min(np.abs(np.log(grid / x))) < 1e-9 for x in allr], bool))
    rows: dict[str, list] = {"learning_time": [], "status": [], "spikes": []}
    fill = {"learning_time": np.nan, "status": "not run", "spikes": 0}
    for d in depths:
        _, i, job = per_depth[d]
        with np.load(job / "results.npz") as z:
            cols = [depth_loop.nearest_rate(allr, x) for x in z["learning_rates"]]
            for k in rows:
                row = np.full(len(allr), fill[k], dtype=z[k].dtype if k != "status" else "U10")
                row[cols] = z[k][i]
                rows[k].append(row)
            for k in z.files:
                if k.startswith("loss_depth") and k == f"loss_depth{d}":
                    loss = np.full((len(allr), z[k].shape[1]), np.nan)
                    loss[cols] = z[k]
                    arrays[k] = loss
                elif k.endswith(f"_depth{d}"):
                    arrays[k] = z[k]
    arrays.update({k: np.stack(v) for k, v in rows.items()})
    arrays["diverged"] = arrays["status"] == "diverged"
    out.mkdir(parents=True, exist_ok=True)
    fig4.fig4(out, merged)
    fig4.grid_figure(out, arrays)
    fig4.sharpening_figure(out, arrays, merged)
    save_npz(out / "results.npz", **arrays)
    save_json(out / "summary.json", merged)
    return merged


def _ci(x, nd: int = 2) -> str:
    return "–" if not x else f"[{x[0]:.{nd}f}, {x[1]:.{nd}f}]"


def claims_table(paths: list[Path]) -> str:
    """The table of docs/fig4.md, "Where the paper's claims hold": one row per depth-sweep summary
    (summary_version >= 2): data set, preprocessing, threshold, depths, the two headline slopes
    with their 90% intervals beside the paper's own prediction's, the depths whose optimum
    the extended grid could not bracket, and the starts per rate near the optimum (``ensemble``;
    1 in runs before summary_version 3)."""
    from ._shared import verdicts

    rows = ["| data | inputs | eps | depths | `lr_exponent` [90%] | paper 1/λ₁(a_opt) | 1/N_l | `learning_time_late_slope` [90%] | "
            "paper Eq. 15 | saturates | growth [90%] | not bracketed | starts | summary |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in paths:
        s = json.loads(p.read_text())
        if s.get("experiment") != "depth_sweep" or s.get("summary_version", 1) < 2:
            continue
        th = s["threshold"]
        eps = th.get("eps") if th.get("kind") == "relative" else f"abs {th.get('value_per_depth', [None])[0]:.3g}"
        f = lambda x, nd=3: "–" if x is None else f"{x:.{nd}g}"  # noqa: E731
        rows.append(
            f"| {s['dataset']} | {s['preprocessing']} | {eps} | {s['depths'][0]}–{s['depths'][-1]} (late ≥ {min(s['lr_exponent_fit_depths'])}) | "
            f"{f(s['lr_exponent'])} {_ci(s['lr_exponent_ci'])} | {f(s.get('theory_lr_exponent'))} | {verdicts.rate_verdict(s)} | "
            f"{f(s['learning_time_late_slope'])} {_ci(s['learning_time_late_slope_ci'])} | {f(s.get('theory_learning_time_late_slope'))} | "
            f"{verdicts.saturation_verdict(s)} | "
            f"×{f(s['learning_time_growth'])} {_ci(s['learning_time_growth_ci'], 1)} | {s['unbracketed_depths'] or 'none'} | "
            f"{s.get('ensemble', 1)} | `{p.name}` |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][aggregate] %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--claims-table", action="store_true",
                    help="print the markdown table of the Fig. 4 headline of every depth-sweep summary (*.json, "
                         "summary.json) under sweep_dir (docs/fig4.md, 'Where the paper's claims hold')")
    a = ap.parse_args(argv)
    if a.claims_table and a.sweep_dir.is_dir():
        files = sorted(set(a.sweep_dir.glob("*.json")) | set(a.sweep_dir.rglob("summary.json")))
        print(claims_table(files), end="")
        return 0
    if not a.sweep_dir.is_dir():
        print(f"error: {a.sweep_dir} is not a directory (give a multirun sweep directory)", file=sys.stderr)
        return 2
    out = a.out or a.sweep_dir / "aggregate"
    jobs, incomplete = find_jobs(a.sweep_dir)
    jobs = [j for j in jobs if out not in j.parents and j != out]
    for j in incomplete:
        log.info("incomplete (no summary.json), left out: %s", j)
    if not jobs:
        print(f"error: no complete job (a folder with .hydra/ and summary.json) under {a.sweep_dir}", file=sys.stderr)
        return 2
    job_rows, depth_rows = tidy(jobs)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_csv(out / "jobs.csv", job_rows)
    log.info("%d jobs -> %s", len(job_rows), out / "jobs.csv")
    if depth_rows:
        _atomic_csv(out / "per_depth.csv", depth_rows)
        log.info("%d job-depth rows -> %s", len(depth_rows), out / "per_depth.csv")
    kinds = {json.loads((j / "summary.json").read_text()).get("experiment") for j in jobs}
    if kinds == {"depth_sweep"}:
        s = redraw_depth_sweep(jobs, out)
        log.info("Fig. 4 over depths %s: lr_exponent %s, learning_time_growth %s -> %s", s["depths"], s["lr_exponent"], s["learning_time_growth"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
