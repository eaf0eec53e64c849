"""Whole-process wall-clock times of the apps, as a user runs them: each app's default run, the
main job cold (a fresh native-kernel cache: the one-time build included) and warm, the sweep to
depth 1000, and the reproduction report's quick preset, with the machine's core count and the
issue's targets beside them.

    python -m benchmarks.apps                 # main job cold and warm, depth 1000, the quick report
    python -m benchmarks.apps --only init_comparison pretraining   # any app's default run on its own
    python -m benchmarks.apps --only main_warm main_cold
    python -m benchmarks.apps --tiny          # each app's debug preset (checks the harness)

Every run is a new interpreter in the clone's root (``python -m experiments.<app> ...``) writing
into a temporary folder; the JSON (``bench_results/apps.json``) holds the seconds, the exit
status and, for a depth sweep, the summary's own ``seconds_total``. Copy it to
``docs/bench/apps_cpu.json`` and run ``python -m benchmarks.report --write`` for the table of
docs/benchmarks.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import table, write

ROOT = Path(__file__).resolve().parents[1]

# name -> (module, overrides, target seconds on 2 CPU cores (issue 27; None: no target), what it is)
RUNS: dict[str, tuple[str, list[str], float | None, str]] = {
    "main_cold": ("experiments.depth_sweep", [], 35.0, "default main job, fresh native build"),
    "main_warm": ("experiments.depth_sweep", [], 15.0, "default main job, native build cached"),
    "depth_1000": ("experiments.depth_sweep", ["depths=[3,10,30,100,300,1000]", "learning_rates.min=1e-7"], 120.0,
                   "sweep to depth 1000"),
    "phase_portrait": ("experiments.phase_portrait", [], None, "Fig. 2"),
    "mode_dynamics": ("experiments.mode_dynamics", [], None, "Fig. 3"),
    "lr_sweep": ("experiments.lr_sweep", [], None, "Fig. 4 inner"),
    "pretraining": ("experiments.pretraining", [], None, "Fig. 5"),
    "init_comparison": ("experiments.init_comparison", [], None, "Fig. 6A"),
    "random_products": ("experiments.random_products", [], None, "Fig. 6B-C"),
    "isometry": ("experiments.isometry", [], None, "Fig. 7"),
    "edge_of_chaos": ("experiments.edge_of_chaos", [], None, "Fig. 8"),
    "balanced_dynamics": ("experiments.balanced_dynamics", [], None, "beyond the paper"),
    "deep_tanh": ("experiments.deep_tanh", [], None, "the talk's claim"),
    "reproduce_quick": ("experiments.reproduce", [], 600.0, "reproduction report, quick preset"),
}


def run_one(name: str, tiny: bool, workdir: Path) -> dict:
    module, overrides, target, what = RUNS[name]
    out = workdir / name
    args = [sys.executable, "-m", module, *overrides, f"hydra.run.dir={out}"]
    if tiny:
        if module == "experiments.reproduce":
            raise SystemExit("--tiny runs the apps' debug presets; the report has none")
        args.append("experiment=debug")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if name in ("main_cold", "main_warm"):  # their own cache (native kernels, XLA programs)
        env["DLNJAX_CACHE"] = str(workdir / "fresh-cache")
        if name == "main_cold":  # empty: everything is built and compiled again
            shutil.rmtree(workdir / "fresh-cache", ignore_errors=True)
        elif not (workdir / "fresh-cache").exists():  # warm it first (untimed)
            subprocess.run([a for a in args if not a.startswith("hydra.run.dir=")] + [f"hydra.run.dir={workdir / 'warmup'}"],
                           cwd=ROOT, env=env, capture_output=True)
    t0 = time.perf_counter()
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    row = dict(name=name, what=what, command=" ".join(["python", "-m", module, *overrides]), seconds=seconds,
               target_s=target, returncode=r.returncode)
    summary = out / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        row["seconds_in_app"] = s.get("seconds_total") or (json.loads((out / "timing.json").read_text()).get("seconds_total")
                                                           if (out / "timing.json").exists() else None)
        if isinstance(s.get("experiments"), dict):  # the report: each app's default run inside it
            row["apps"] = {k: v.get("seconds") for k, v in s["experiments"].items()}
    if r.returncode != 0:
        row["error"] = r.stderr[-2000:]
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.apps", description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="debug presets only (checks the harness)")
    ap.add_argument("--only", nargs="*", choices=sorted(RUNS), help="run only these")
    ap.add_argument("--keep", type=Path, default=None,
                    help="write the runs' directories here and keep them (default: a temporary folder); "
                         "e.g. the quick report's, to copy into docs/reproduce/")
    args = ap.parse_args(argv)
    # by default each app's own default run is timed inside the quick report (its preset runs every
    # app at its default), not a second time on its own; --only names any of RUNS
    names = args.only or (["main_warm"] if args.tiny else ["main_cold", "main_warm", "depth_1000", "reproduce_quick"])
    rows = []
    import contextlib

    keep = contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory(prefix="dlnjax-apps-")
    with keep as tmp:
        for name in names:
            rows.append(run_one(name, args.tiny, Path(tmp)))
            r = rows[-1]
            print(f"{name}: {r['seconds']:.1f} s (exit {r['returncode']})", flush=True)
            # written after every run (atomically): a long session stopped half way keeps what it measured
            p = write("apps_tiny" if args.tiny else "apps", dict(tiny=args.tiny, cpu_count=os.cpu_count(), runs=rows))
    print(table([(r["name"], f"{r['seconds']:.1f}", r["target_s"] or "", r["returncode"]) for r in rows],
                ("run", "seconds", "target", "exit")))
    print(f"wrote {p}")


if __name__ == "__main__":
    main()
