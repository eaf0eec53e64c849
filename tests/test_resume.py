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


def test_killed_depth_sweep_resumes_from_its_finished_depths(tmp_path):
    args = ["-m", "experiments.depth_sweep", "experiment=debug", "depths=[3,4,5,6]", "max_steps=3000",
            "threshold.eps=0.02", "learning_rates.num=6"]
    ref = tmp_path / "ref"
    run_py(*args, f"hydra.run.dir={ref}")
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, *args, f"hydra.run.dir={run}"], cwd=ROOT, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = run / "partial" / "depth3.npz"
    t0 = time.time()
    while not first.exists() and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert first.exists(), "the run never finished its first depth"
    assert not (run / "summary.json").exists(), "the run finished before it could be killed; make it longer"
    assert not list(run.rglob(".*.tmp")), "a temporary file was left behind"
    finished = sorted(f.name for f in (run / "partial").glob("depth*.npz"))
    r = run_py(*args, f"hydra.run.dir={run}")
    log = r.stderr + r.stdout
    for name in finished:
        d = int(name[len("depth"):-len(".npz")])
        assert f"depth {d}: finished in an earlier run of this config" in log
    a = json.loads((ref / "summary.json").read_text())
    b = json.loads((run / "summary.json").read_text())
    assert a == b
    with np.load(ref / "results.npz") as za, np.load(run / "results.npz") as zb:
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=k)


def test_killed_depth_sweep_continues_mid_depth_from_its_saved_state(tmp_path):
    args = ["-m", "experiments.depth_sweep", "experiment=debug", "depths=[24]", "hidden=64", "learning_rates.num=8",
            "threshold.eps=0.001", "max_steps=2000", "chunk_steps=100", "checkpoint_every=200"]
    ref = tmp_path / "ref"
    run_py(*args, f"hydra.run.dir={ref}")
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, *args, f"hydra.run.dir={run}"], cwd=ROOT, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = run / "partial" / "depth24.state.npz"
    t0 = time.time()
    while not state.exists() and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert state.exists() and not (run / "summary.json").exists(), "the run was not caught mid-depth"
    with np.load(state) as z:
        saved_at = int(z["done_steps"])
    assert 0 < saved_at < 2000 and saved_at % 200 == 0
    r = run_py(*args, f"hydra.run.dir={run}")
    assert f"depth 24: continuing from step {saved_at}" in r.stderr + r.stdout
    assert not state.exists()  # removed once the depth is finished
    assert json.loads((ref / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
    assert (ref / "results.npz").read_bytes() == (run / "results.npz").read_bytes()


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
