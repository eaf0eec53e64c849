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
    from dlnjax.data.idx import atomic_write

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
            cols = {k: v for k, v in s.items() if isinstance(v, list) and len(v) == len(depths) and k != "depths" and not k.endswith("_fit_depths")}
            for i, d in enumerate(depths):
                row = {**base, "experiment": s.get("experiment"), "dataset": s.get("dataset"), "depth": d}
                for k, v in cols.items():
                    row[k] = v[i] if isinstance(v[i], SCALARS) else json.dumps(v[i])
                depth_rows.append(row)
    return job_rows, depth_rows


def redraw_depth_sweep(jobs: list[Path], out: Path) -> dict:
    """Fig. 4 over the union of the jobs' depths (jobs must agree on every other setting): every
    per-depth entry is taken from the job that ran that depth, the headline is recomputed from
    them (:func:`dlnjax.robust.headline`), and the figures are drawn as one job would draw them."""
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax import robust

    from ._shared.plots import fig4
    from .common import save_json, save_npz

    summaries = [json.loads((j / "summary.json").read_text()) for j in jobs]
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
        if isinstance(v, list) and len(v) == n0 and k not in ("depths", "lr_exponent_fit_depths", "learning_rates"):
            merged[k] = [per_depth[d][0][k][per_depth[d][1]] for d in depths]
    thr = first["threshold"]
    merged["threshold"] = {k: ([per_depth[d][0]["threshold"][k][per_depth[d][1]] for d in depths]
                               if isinstance(v, list) and len(v) == n0 else v) for k, v in thr.items()}
    merged["depths"] = depths

    head = robust.headline(depths, int(configs[0]["fit_min_depth"]), best_rate=merged["best_learning_rate"],
                           edge=merged["stability_edge_measured"], learning_time=merged["learning_time"],
                           t_ct=merged["t_ct"], t_min=merged["fastest_learning_time"], band_centre=merged["band_centre"])
    merged.update({k: head[k] for k in ("lr_exponent", "learning_time_growth", "t_ct_growth", "edge_exponent",
                                         "band_centre_exponent", "fastest_time_growth", "lr_exponent_fit_depths")})
    merged["aggregated_from"] = [str(j) for j in jobs]
    merged.pop("config", None)
    arrays: dict = dict(depths=np.asarray(depths), learning_rates=np.asarray(first["learning_rates"], float))
    rows: dict[str, list] = {"learning_time": [], "status": [], "spikes": []}
    for d in depths:
        _, i, job = per_depth[d]
        with np.load(job / "results.npz") as z:
            for k in rows:
                rows[k].append(z[k][i])
            for k in z.files:
                if k.endswith(f"_depth{d}"):
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][aggregate] %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
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
