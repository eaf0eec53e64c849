"""experiments.aggregate: a depth sweep split into jobs aggregates to the one-job results; an
empty directory is a clear error."""

import json
import subprocess
import sys

import pytest

from helpers import ENV, ROOT, run_cli


@pytest.mark.slow
def test_aggregate_of_a_depth_sweep_split_into_jobs_equals_one_job(tmp_path, debug_run):
    one = json.loads((debug_run("depth_sweep") / "summary.json").read_text())  # depths [3, 5, 6] in one job
    run_cli("experiments.depth_sweep", "-m", "experiment=debug", "depths=[3],[5],[6]", f"hydra.sweep.dir={tmp_path / 'split'}")
    run_cli("experiments.aggregate", str(tmp_path / "split"))
    agg = tmp_path / "split" / "aggregate"
    both = json.loads((agg / "summary.json").read_text())
    assert one["depths"] == [3, 5, 6]
    for k in ("depths", "learning_time", "best_learning_rate", "best_rate_band", "lr_exponent", "lr_exponent_ci",
              "learning_time_growth", "learning_time_growth_ci", "learning_time_late_slope", "learning_time_late_slope_ci",
              "t_ct", "stability_edge_measured", "fastest_rate", "bracketed", "predicted_learning_time", "runs"):
        assert both[k] == one[k], k
    for f in ("jobs.csv", "per_depth.csv", "depth_sweep.png", "depth_sweep.pdf", "depth_sweep_grid.png"):
        assert (agg / f).exists(), f
    rows = (agg / "per_depth.csv").read_text().splitlines()
    assert len(rows) == 1 + 3


def test_aggregate_of_an_empty_directory_is_a_clear_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "experiments.aggregate", str(tmp_path)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no complete job" in r.stderr and "Traceback" not in r.stderr
