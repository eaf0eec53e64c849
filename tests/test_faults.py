"""Sweeps, faults and resumption: launchers for real, skipping complete jobs, a killed and resumed
depth sweep, bit-identical reruns, aggregation of a split sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}


def _py(*args, timeout=600, env=None):
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_cluster_launchers_run_jobs_for_real(launcher, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher" if launcher == "joblib" else "hydra_plugins.hydra_submitit_launcher",
                        reason="the [cluster] extra (in [test] too) is not installed")
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    _py("-m", "experiments.lr_sweep", "-m", f"hydra/launcher={launcher}", *extra, "experiment=debug", "depth=3,4",
        f"hydra.sweep.dir={tmp_path}")
    for d in (3, 4):
        s = json.loads((tmp_path / f"depth={d},experiment=debug" / "summary.json").read_text())
        assert s["depth"] == d


def test_rerunning_a_sweep_skips_complete_jobs(tmp_path):
    args = ["-m", "experiments.lr_sweep", "-m", "experiment=debug", "depth=3,4", f"hydra.sweep.dir={tmp_path}"]
    _py(*args)
    done, lost = tmp_path / "depth=3,experiment=debug", tmp_path / "depth=4,experiment=debug"
    stamp = (done / "summary.json").stat().st_mtime_ns
    (lost / "summary.json").unlink()  # as if the job had been killed before finishing
    r = _py(*args)
    assert f"results in {done} are complete for this config: skipped" in r.stderr + r.stdout
    assert f"results in {lost} are complete" not in r.stderr + r.stdout
    assert (done / "summary.json").stat().st_mtime_ns == stamp
    assert (lost / "summary.json").exists()
    # a changed config is not skipped
    r = _py("-m", "experiments.lr_sweep", "-m", "experiment=debug", "depth=3", "seed=1", f"hydra.sweep.dir={tmp_path}")
    assert "skipped" not in r.stderr + r.stdout


def test_same_command_twice_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        _py("-m", "experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={tmp_path / name}")
    for f in ("summary.json", "results.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "timing.json").exists()


def test_killed_depth_sweep_resumes_from_its_finished_depths(tmp_path):
    args = ["-m", "experiments.depth_sweep", "experiment=debug", "depths=[3,4,5,6]", "max_steps=3000",
            "threshold.eps=0.02", "learning_rates.num=6"]
    ref = tmp_path / "ref"
    _py(*args, f"hydra.run.dir={ref}")
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
    r = _py(*args, f"hydra.run.dir={run}")
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


def test_aggregate_of_a_depth_sweep_split_into_jobs_equals_one_job(tmp_path):
    _py("-m", "experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={tmp_path / 'one'}")
    _py("-m", "experiments.depth_sweep", "-m", "experiment=debug", "depths=[3],[5],[6]", f"hydra.sweep.dir={tmp_path / 'split'}")
    _py("-m", "experiments.aggregate", str(tmp_path / "split"))
    agg = tmp_path / "split" / "aggregate"
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    both = json.loads((agg / "summary.json").read_text())
    for k in ("depths", "learning_time", "best_learning_rate", "lr_exponent", "learning_time_growth", "diverged"):
        assert both[k] == one[k], k
    for f in ("jobs.csv", "per_depth.csv", "depth_sweep.png", "depth_sweep.pdf", "depth_sweep_grid.png"):
        assert (agg / f).exists(), f
    rows = (agg / "per_depth.csv").read_text().splitlines()
    assert len(rows) == 1 + 3


def test_aggregate_of_an_empty_directory_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.aggregate", str(tmp_path)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no complete job" in r.stderr and "Traceback" not in r.stderr


def test_reproduce_runs_experiments_and_writes_the_report(tmp_path):
    out = tmp_path / "rep"
    _py("-m", "experiments.reproduce", "only=[phase_portrait,edge_of_chaos]", f"hydra.run.dir={out}")
    md = (out / "report.md").read_text()
    assert "| Fig. 2 |" in md and "| Fig. 8 |" in md and "**reproduces**" in md
    assert (out / "report.html").exists() and (out / "figures" / "phase_portrait.png").exists()
    s = json.loads((out / "summary.json").read_text())
    assert {c["figure"] for c in s["claims"]} == {"Fig. 2", "Fig. 8"}
    # every claim row has five cells (no stray "|" inside a cell)
    rows = [ln for ln in md.splitlines() if ln.startswith("| Fig.")]
    assert all(ln.replace("\\|", "").count("|") == 6 for ln in rows), rows


def test_reproduce_verdict_rules():
    from experiments import reproduce as r

    sweep = dict(depths=[3, 64], lr_exponent_theory=-0.5)
    assert r._fig4a({**sweep, "learning_time_growth": 1.2})[1] == r.YES
    assert r._fig4a({**sweep, "learning_time_growth": 2.5})[1] == r.PARTLY
    assert r._fig4a({**sweep, "learning_time_growth": 10.0})[1] == r.NO
    assert r._fig4b({**sweep, "lr_exponent": -1.0})[1] == r.YES
    assert r._fig4b({**sweep, "lr_exponent": -0.4})[1] == r.PARTLY
    assert r._fig4b({**sweep, "lr_exponent": 0.3})[1] == r.NO
    five = dict(learning_time_ratio_same_rate=1.3, learning_time_ratio=0.3)
    assert r._fig5b(five)[1] == r.PARTLY
    assert r._fig5b({**five, "learning_time_ratio": 1.1})[1] == r.YES
    assert r._fig8({"critical_gain": 1.2})[1] == r.NO


def test_killed_depth_sweep_continues_mid_depth_from_its_saved_state(tmp_path):
    args = ["-m", "experiments.depth_sweep", "experiment=debug", "depths=[24]", "hidden=64", "learning_rates.num=8",
            "threshold.eps=0.001", "max_steps=2000", "chunk_steps=100", "checkpoint_every=200"]
    ref = tmp_path / "ref"
    _py(*args, f"hydra.run.dir={ref}")
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
    r = _py(*args, f"hydra.run.dir={run}")
    assert f"depth 24: continuing from step {saved_at}" in r.stderr + r.stdout
    assert not state.exists()  # removed once the depth is finished
    assert json.loads((ref / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
    assert (ref / "results.npz").read_bytes() == (run / "results.npz").read_bytes()


def test_init_comparison_resumes_from_its_finished_depths(tmp_path):
    args = ["-m", "experiments.init_comparison", "experiment=debug"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    _py(*args, f"hydra.run.dir={ref}")
    _py(*args, f"hydra.run.dir={run}")
    (run / "summary.json").unlink()  # as if killed during the last depth
    (run / "partial" / "depth5.npz").unlink()
    r = _py(*args, f"hydra.run.dir={run}")
    assert "depth 3: finished in an earlier run of this config" in r.stderr + r.stdout
    assert json.loads((ref / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
    assert (ref / "results.npz").read_bytes() == (run / "results.npz").read_bytes()
