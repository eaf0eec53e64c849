"""Every experiment runs end to end in its debug overlay and writes its files; bad input exits cleanly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "phase_portrait": ["phase_portrait.png", "phase_portrait.pdf"],
    "mode_dynamics": ["mode_dynamics.png", "mode_dynamics.pdf"],
    "depth_sweep": ["depth_sweep.png", "depth_sweep.pdf", "depth_sweep_grid.png", "depth_sweep_grid.pdf",
                    "depth_sweep_sharpening.png"],
    "lr_sweep": ["lr_sweep.png", "lr_sweep.pdf", "lr_sweep_sharpening.png"],
    "edge_of_chaos": ["edge_of_chaos.png", "edge_of_chaos.pdf"],
    "isometry": ["isometry.png", "isometry.pdf"],
    "deep_tanh": ["deep_tanh.png", "deep_tanh.pdf"],
    "random_products": ["random_products.png", "random_products.pdf"],
    "pretraining": ["pretraining.png", "pretraining.pdf"],
    "init_comparison": ["init_comparison.png", "init_comparison.pdf"],
}
KEYS = {
    "phase_portrait": ["max_conserved_drift", "max_analytic_time_error"],
    "mode_dynamics": ["singular_values", "modes_plotted", "decoupled_max_abs_error", "half_time_delay_linear_mean",
                      "half_time_delay_linear_std", "half_time_delay_tanh_mean", "half_time_delay_tanh_std", "n_init"],
    "depth_sweep": ["dataset", "n_train", "preprocessing", "depths", "learning_rates", "learning_time", "best_learning_rate",
                    "lr_exponent", "learning_time_growth", "t_ct", "lambda_star", "stability_edge_measured",
                    "stability_edge_predicted", "fastest_learning_time", "band_10pct", "runs", "threshold", "engine_used"],
    "lr_sweep": ["depth", "learning_rates", "learning_time", "best_learning_rate", "theory_optimal_learning_rate",
                 "stability_edge_measured", "t_ct", "runs", "sharpening"],
    "edge_of_chaos": ["gains", "q_inf_theory", "q_inf_simulated", "chi", "critical_gain"],
    "isometry": ["gains", "input_variances", "median_singular_value", "fraction_within_2x_of_median", "p90_over_p10"],
    "deep_tanh": ["gains", "final_train_error", "final_test_error", "epochs_to_train_error"],
    "random_products": ["depths", "sv_fraction_below_0_1", "sv_max", "sv_kurtosis", "eig_origin_bin_fraction"],
    "pretraining": ["offdiag_fraction", "offdiag_fraction_random_basis", "learning_time_random", "learning_time_pretrained",
                    "pretraining_steps", "decoupling_offdiag_pretrained", "learning_time_ratio"],
    "init_comparison": ["depths", "scaled_gaussian", "orthogonal", "pretrained", "decoupled", "pretraining_steps"],
}


def _run(app, out, *overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{app}", "experiment=debug", f"hydra.run.dir={out}", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize("app", list(FILES))
def test_experiment_runs_end_to_end(app, tmp_path):
    out = tmp_path / app
    r = _run(app, out)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in FILES[app] + ["summary.json", "results.npz", ".hydra/config.yaml"]:
        assert (out / f).exists(), f
    summary = json.loads((out / "summary.json").read_text())
    for k in KEYS[app]:
        assert k in summary, k
    with np.load(out / "results.npz") as z:
        assert len(z.files) > 0
    assert not list(out.glob(".*.tmp"))
    if app in ("depth_sweep", "lr_sweep"):
        _check_fig4_values(summary)


def _check_fig4_values(summary):
    """Values, not only keys: the compressed engine ran on the embedded digits with null input
    directions dropped, and every depth has the robust statistics, consistent with each other."""
    assert summary["compressed"] is True and summary["engine_used"].startswith("compressed-")
    rot = summary["input_rotation"]
    assert rot["kept"] + rot["dropped"] == 784 and rot["dropped"] > 0 and rot["eigenvalue_gap"] > 1e3
    for best, lam, edge_pred, tct, lt in zip(summary["best_learning_rate"], summary["lambda_star"],
                                            summary["stability_edge_predicted"], summary["t_ct"], summary["learning_time"]):
        assert lam > 0 and abs(best * lam - 1.0) < 1e-9 and abs(edge_pred * lam - 2.0) < 1e-9
        assert tct > 0 and abs(lt - tct * lam) < 1e-6 * lt
    for entry in summary["runs"]:
        statuses = {r["status"] for r in entry["runs"]}
        assert statuses <= {"learned", "diverged", "stopped", "unsettled", "skipped"}
        assert "learned" in statuses
        for r in entry["runs"]:
            assert (r["learning_time"] is not None) == (r["status"] == "learned")


def test_float64_switch(tmp_path):
    r = _run("lr_sweep", tmp_path / "f64", "precision=float64")
    assert r.returncode == 0, r.stderr[-3000:]


def test_full_width_is_recorded(tmp_path):
    """compress=false runs the full-width network on the named engine and says so."""
    r = _run("depth_sweep", tmp_path / "full", "compress=false", "engine=xla", "depths=[3,5]")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert s["compressed"] is False and s["engine_used"] == "full-xla" and s["input_rotation"] is None
    assert s["config"]["compress"] is False and s["config"]["engine"] == "xla"


def test_full_width_that_cannot_fit_is_refused(tmp_path):
    r = _run("depth_sweep", tmp_path / "big", "compress=false", "hidden=100000", "depths=[3,1000]")
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "compress=false" in err[0] and "GiB" in err[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "app,override,fragment",
    [
        ("mode_dynamics", "lr=-1", "lr=-1"),
        ("depth_sweep", "data=mnist", "data.download=true"),
    ],
)
def test_bad_input_exits_with_one_line(app, override, fragment, tmp_path, monkeypatch):
    monkeypatch.setenv("DLNJAX_DATA_ROOT", str(tmp_path / "empty"))
    r = subprocess.run(
        [sys.executable, "-m", f"experiments.{app}", "experiment=debug", f"hydra.run.dir={tmp_path}/o", override],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "DLNJAX_DATA_ROOT": str(tmp_path / "empty")},
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and fragment in err_lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "summary.json").exists()


def test_lr_sweep_on_whitened_data_matches_the_finite_rate_maps(tmp_path):
    """Whitened inputs (teacher data): the decoupled network is one exact scalar map per mode, so
    below the top mode's edge the predicted learning time equals the simulated one to the step."""
    r = _run("lr_sweep", tmp_path / "t", "data=teacher", "depth=4", "precision=float64", "learning_rates.min=1e-3",
             "learning_rates.max=0.3", "learning_rates.num=12", "threshold.eps=0.05", "max_steps=5000", "stats.stop_factor=50")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert s["whitened"] is True
    assert s["finite_rate_theory_max_abs_step_error_below_edge"] == 0.0
    assert s["finite_rate_theory_outcome_agreement_above_edge"] in (None, 1.0)
