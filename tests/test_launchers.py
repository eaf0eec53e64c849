"""Hydra's cluster launchers (joblib, submitit_local) run the jobs of a sweep for real.

The launchers run any app's jobs the same way; a cheap one (phase_portrait) sweeps here."""

import json

import pytest

from helpers import run_py


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_cluster_launchers_run_jobs_for_real(launcher, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher" if launcher == "joblib" else "hydra_plugins.hydra_submitit_launcher",
                        reason="the [cluster] extra (in [test] too) is not installed")
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    run_py("-m", "experiments.phase_portrait", "-m", f"hydra/launcher={launcher}", *extra, "experiment=debug", "tau=1,2",
           f"hydra.sweep.dir={tmp_path}")
    for tau in (1, 2):
        s = json.loads((tmp_path / f"experiment=debug,tau={tau}" / "summary.json").read_text())
        assert s["tau"] == tau and s["max_conserved_drift"] > 0
