"""Resumption: a killed depth sweep (after whole depths, and mid-depth from its saved state)
and a killed init comparison continue where they stopped and end with the files of an
uninterrupted run; rerunning a sweep skips its complete jobs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from helpers import ENV, ROOT, run_py


def test_rerunning_a_sweep_skips_complete_jobs(tmp_path):
    args = ["-m", "experiments.lr_sweep", "-m", "experiment=debug", "depth=3,4", f"hydra.sweep.dir={tmp_path}"]
    run_py(*args)
    done, lost = tmp_path / "depth=3,experiment=debug", tmp_path / "depth=4,experiment=debug"
    stamp = (done / "summary.json").stat().st_mtime_ns
    (lost / "summary.json").unlink()  # as if the job had been killed before finishing
    r = run_py(*args)
    assert f"results in {done} are complete for this config: skipped" in r.stderr + r.stdout
    assert f"results in {lost} are complete" not in r.stderr + r.stdout
    assert (done / "summary.json").stat().st_mtime_ns == stamp
    assert (lost / "summary.json").exists()
    # a changed config is not skipped
    r = run_py("-m", "experiments.lr_sweep", "-m", "experiment=debug", "depth=3", "seed=1", f"hydra.sweep.dir={tmp_path}")
    assert "skipped" not in r.stderr + r.stdout


def _kill_when(path, args, run, deadline=300):
    p = subprocess.Popen([sys.executable, *args, f"hydra.run.dir={run}"], cwd=ROOT, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not path.exists() and p.poll() is None and time.time() - t0 < deadline:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def _same_results(ref, run):
    assert json.loads((ref / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
    with np.load(ref / "results.npz") as za, np.load(run / "results.npz") as zb:
        assert sorted(za.files) == sorted(zb.files)
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def test_killed_depth_sweep_resumes_from_its_finished_runs(tmp_path):
    """Every finished run of a depth is checkpointed (tagged with the config); a killed sweep
    re-run in the same directory replays them and ends with the uninterrupted run's numbers."""
    args = ["-m", "experiments.depth_sweep", "experiment=debug", "depths=[3,4,5,6]", "max_steps=3000",
            "threshold.eps=0.02", "learning_rates.num=6"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_py(*args, f"hydra.run.dir={ref}")
    first = run / "partial" / "depth3.runs.npz"
    _kill_when(first, args, run)
    assert first.exists(), "the run never checkpointed its first depth"
    assert not (run / "summary.json").exists(), "the run finished before it could be killed; make it longer"
    assert not list(run.rglob(".*.tmp")), "a temporary file was left behind"
    r = run_py(*args, f"hydra.run.dir={run}")
    assert "depth 3: " in r.stderr + r.stdout and "finished runs loaded from" in r.stderr + r.stdout
    _same_results(ref, run)


def test_a_changed_config_does_not_resume(tmp_path):
    args = ["-m", "experiments.depth_sweep", "experiment=debug", "depths=[3]"]
    run_py(*args, f"hydra.run.dir={tmp_path}")
    (tmp_path / "summary.json").unlink()
    r = run_py(*args, "u0=0.002", f"hydra.run.dir={tmp_path}")
    assert "finished runs loaded" not in r.stderr + r.stdout


def test_init_comparison_resumes_from_its_finished_depths(tmp_path):
    args = ["-m", "experiments.init_comparison", "experiment=debug"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    run_py(*args, f"hydra.run.dir={ref}")
    run_py(*args, f"hydra.run.dir={run}")
    (run / "summary.json").unlink()  # as if killed during the last depth
    (run / "partial" / "depth5.npz").unlink()
    r = run_py(*args, f"hydra.run.dir={run}")
    assert "depth 3: finished in an earlier run of this config" in r.stderr + r.stdout
    assert json.loads((ref / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
    assert (ref / "results.npz").read_bytes() == (run / "results.npz").read_bytes()
