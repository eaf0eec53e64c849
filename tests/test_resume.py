"""Resumption: a killed depth sweep (after whole depths, and mid-depth from its saved state)
and a killed init comparison continue where they stopped and end with the files of an
uninterrupted run; rerunning a sweep skips its complete jobs.

The killed run is a ``python -m`` process killed with SIGKILL, and a sweep's first run is the
command line in a new interpreter; the other runs (references, re-runs) are the same command
lines run in this process (``helpers.run_cli``), the uninterrupted debug runs shared with other
modules (``debug_run``).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import ENV, ROOT, run_cli, run_py


@pytest.mark.slow
def test_rerunning_a_sweep_skips_complete_jobs(tmp_path):
    """The skip is the apps' common wrapper (experiments.common.app), the same for every app: a
    cheap one (phase_portrait) sweeps here."""
    args = ["-m", "experiments.phase_portrait", "-m", "experiment=debug", "tau=1,2", f"hydra.sweep.dir={tmp_path}"]
    run_py(*args)
    done, lost = tmp_path / "experiment=debug,tau=1", tmp_path / "experiment=debug,tau=2"
    stamp = (done / "summary.json").stat().st_mtime_ns
    (lost / "summary.json").unlink()  # as if the job had been killed before finishing
    r = run_cli(*args[1:])
    assert f"results in {done} are complete for this config: skipped" in r.stderr + r.stdout
    assert f"results in {lost} are complete" not in r.stderr + r.stdout
    assert (done / "summary.json").stat().st_mtime_ns == stamp
    assert json.loads((lost / "summary.json").read_text())["tau"] == 2.0  # the lost job ran again
    # a changed config is not skipped
    r = run_cli("experiments.phase_portrait", "-m", "experiment=debug", "tau=1", "s=1.5",
                f"hydra.sweep.dir={tmp_path}")
    assert "skipped" not in r.stderr + r.stdout
    assert json.loads((tmp_path / "experiment=debug,s=1.5,tau=1" / "summary.json").read_text())["s"] == 1.5


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


@pytest.mark.slow
def test_killed_depth_sweep_resumes_from_its_finished_runs(tmp_path, debug_run):
    """Every finished run of a depth is checkpointed (tagged with the config); a killed sweep
    re-run in the same directory replays them and ends with the uninterrupted run's numbers
    (the session's debug run: depths 3, 5, 6)."""
    args = ["-m", "experiments.depth_sweep", "experiment=debug"]
    ref, run = debug_run("depth_sweep"), tmp_path / "run"
    first = run / "partial" / "depth3.runs.npz"
    _kill_when(first, args, run)
    assert first.exists(), "the run never checkpointed its first depth"
    assert not (run / "summary.json").exists(), "the run finished before it could be killed; make it longer"
    assert not list(run.rglob(".*.tmp")), "a temporary file was left behind"
    r = run_cli(*args[1:], f"hydra.run.dir={run}")
    assert "depth 3: " in r.stderr + r.stdout and "finished runs loaded from" in r.stderr + r.stdout
    _same_results(ref, run)


@pytest.mark.slow
def test_a_changed_config_does_not_resume(tmp_path):
    args = ["experiments.depth_sweep", "experiment=debug", "depths=[3]"]
    run_cli(*args, f"hydra.run.dir={tmp_path}")
    assert (tmp_path / "partial" / "depth3.runs.npz").exists()
    (tmp_path / "summary.json").unlink()
    r = run_cli(*args, "u0=0.002", f"hydra.run.dir={tmp_path}")
    assert "depth 3: " in r.stderr + r.stdout  # the depth ran (the log line the resume test looks for)
    assert "finished runs loaded" not in r.stderr + r.stdout


@pytest.mark.slow
def test_init_comparison_resumes_from_its_finished_depths(tmp_path, debug_run):
    """A copy of the session's uninterrupted debug run, cut back to what a run killed during its
    last depth leaves (no summary, no results, no checkpoint of depth 5), resumes to its files."""
    ref, run = debug_run("init_comparison"), tmp_path / "run"
    shutil.copytree(ref, run)
    (run / "summary.json").unlink()  # as if killed during the last depth
    (run / "results.npz").unlink()
    (run / "partial" / "depth5.npz").unlink()
    assert (run / "partial" / "depth3.npz").exists()
    r = run_cli("experiments.init_comparison", "experiment=debug", f"hydra.run.dir={run}")
    assert "depth 3: finished in an earlier run of this config" in r.stderr + r.stdout
    assert json.loads((ref / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
    assert (ref / "results.npz").read_bytes() == (run / "results.npz").read_bytes()


def test_unreadable_checkpoints_are_moved_aside_and_rerun(tmp_path, debug_run):
    """A checkpoint truncated (a broken copy between machines) and one of garbage: each is named in
    one warning line and moved aside (never deleted), its depth is re-run, the other depths resume
    from theirs, and the run ends with the files of an uninterrupted one."""
    ref = debug_run("depth_sweep")
    run = tmp_path / "run"
    shutil.copytree(ref, run)
    (run / "summary.json").unlink()  # as if killed before the end
    part = run / "partial"
    good = (part / "depth5.runs.npz").read_bytes()
    (part / "depth5.runs.npz").write_bytes(good[: len(good) // 2])
    (part / "depth6.runs.npz").write_bytes(b"not a checkpoint at all" * 10)
    r = run_cli("experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={run}")
    log = r.stderr + r.stdout + (run / "depth_sweep.log").read_text()  # the console and Hydra's log file
    for d in (5, 6):
        lines = [ln for ln in log.splitlines() if f"depth{d}.runs.npz cannot be read" in ln]
        assert len(lines) >= 1 and "moved aside" in lines[0], log[-2000:]
        assert (part / f"depth{d}.runs.npz.unreadable").exists()
    assert (part / f"depth{5}.runs.npz.unreadable").read_bytes() == good[: len(good) // 2]  # kept, not deleted
    assert "Traceback" not in log
    assert "depth 3: " in log and "finished runs loaded" in log  # depth 3 resumed from its checkpoint
    _same_results(ref, run)


def test_checkpoint_of_another_config_is_ignored_and_the_log_names_the_keys(tmp_path, caplog):
    import logging

    from omegaconf import OmegaConf

    from experiments._shared.checkpoint import load_tagged, save_tagged

    a = OmegaConf.create({"u0": 1e-3, "stats": {"band": 0.1, "snapshots": 16}, "depths": [3, 5]})
    b = OmegaConf.create({"u0": 1e-3, "stats": {"band": 0.2, "snapshots": 16}, "depths": [3, 5, 8]})
    p = tmp_path / "x.npz"
    save_tagged(p, a, v=np.arange(3))
    np.testing.assert_array_equal(load_tagged(p, a)["v"], np.arange(3))
    with caplog.at_level(logging.INFO, logger="dlnjax"):
        assert load_tagged(p, b) is None
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "another config" in msg and "depths, stats.band" in msg and "u0" not in msg.split("differ:")[1]
    assert p.exists()  # a checkpoint of another config is left in place
