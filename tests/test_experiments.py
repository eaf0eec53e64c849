"""Every experiment runs end to end in its debug overlay and writes its files, with values that
must hold whatever the numbers (signs, orderings, ranges, relations between keys); bad input exits
cleanly.

The apps run in this process through their command line (``helpers.run_cli``; the debug runs once
per session, shared with other modules by the ``debug_run`` fixture); the tests of the exit status
on bad input run ``python -m`` in a new interpreter, as a user does.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import TOL, TOL_ULPS, approx, assert_close, run_cli

ROOT = Path(__file__).resolve().parents[1]
# The relations checked between a summary's numbers are redone here in Python floats, as the apps
# derive them (ratios, differences, products, fits of saved values): float64 rounding, whatever the
# precision the app trained in. One check is of a number the app computed in its own precision
# (F32: init_comparison's float32 default).
F64, F32 = "float64", "float32"
# the band's 10% rule (1.1 x the fastest crossing, in steps) redone: an absolute slack for its rounding
BAND_SLACK = {"float64": 1e-9}
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
                    "best_rate_band", "fastest_rate", "bracketed", "lr_exponent", "lr_exponent_ci", "learning_time_growth",
                    "learning_time_growth_ci", "learning_time_late_slope", "learning_time_late_slope_ci", "t_ct",
                    "lambda_star", "inv_lambda_star", "steps_at_inv_lambda_star", "stability_edge_measured",
                    "stability_edge_predicted", "predicted_optimal_rate", "predicted_learning_time", "runs", "threshold",
                    "engine_used"],
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


def _run(app, out, *overrides, check=True):
    return run_cli(f"experiments.{app}", "experiment=debug", f"hydra.run.dir={out}", *overrides, check=check)


# the slowest apps' debug runs (8.9-65 s on 2 cores) run in the slow tier
SLOW_APPS = {"deep_tanh", "edge_of_chaos", "init_comparison", "mode_dynamics", "pretraining", "random_products"}


@pytest.mark.parametrize("app", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW_APPS else a for a in FILES])
def test_experiment_runs_end_to_end(app, debug_run):
    out = debug_run(app)
    for f in FILES[app] + ["summary.json", "results.npz", ".hydra/config.yaml"]:
        assert (out / f).exists(), f
    summary = json.loads((out / "summary.json").read_text())
    for k in KEYS[app]:
        assert k in summary, k
    with np.load(out / "results.npz") as z:
        assert len(z.files) > 0 and all(z[k].size > 0 for k in z.files)
    assert not list(out.glob(".*.tmp"))
    assert summary["experiment"] == app
    VALUES[app](summary)
    if app in ("depth_sweep", "lr_sweep"):
        _check_fig4_values(summary)


def _fin(x):
    return x is not None and np.isfinite(x)


def _phase_portrait(s):
    # Euler at step dt on the (a, b) flow: the conserved a^2 - b^2 drifts, and the simulated times
    # and trajectories differ from the analytic ones, by O(dt) over t_max = 4 (s = tau = 1)
    dt = s["dt"]
    assert 0 < s["max_conserved_drift"] < 2 * dt
    assert 0 < s["max_analytic_time_error"] < 2 * dt
    assert 0 < s["max_trajectory_difference"] < 2 * dt
    for st in s["starts"]:
        assert abs(st["c"] - (st["a0"] ** 2 - st["b0"] ** 2)) < TOL[F64]["atol"]  # c = a^2 - b^2 of the start
        assert st["max_traj_diff"] <= s["max_trajectory_difference"]


def _mode_dynamics(s):
    sv = np.array(s["singular_values"])
    assert np.all(sv > 0) and np.all(np.diff(sv) <= 0)
    assert all(1 <= m <= len(sv) for m in s["modes_plotted"])
    # the decoupled theory's error is the discretisation, first order in lr: 10x smaller rate, ~10x smaller error
    by = s["decoupled_max_abs_error_by_lr_factor"]
    assert 0 < by["0.1"] < by["1.0"] == s["decoupled_max_abs_error"]
    assert 5 < by["1.0"] / by["0.1"] < 20
    n = len(s["modes_plotted"])
    for kind in ("linear", "tanh"):
        mean, std = s[f"half_time_delay_{kind}_mean"], s[f"half_time_delay_{kind}_std"]
        missed = s[f"half_time_not_reached_{kind}"]
        assert len(mean) == len(std) == len(missed) == n
        for m, sd, k in zip(mean, std, missed):
            assert 0 <= k <= s["n_init"]
            assert (m is None) == (k == s["n_init"])  # a mean over the initialisations that reached half
            assert m is None or (np.isfinite(m) and sd >= 0)
    ht = np.array(s["half_time_analytic"])
    assert np.all(ht > 0) and np.all(np.diff(ht) > 0)  # weaker modes are learned later (Eq. 12)


def _sweep_values(s):
    """depth_sweep and lr_sweep: one entry per depth, rates on the grid or added to it at its
    spacing, the best rate inside its band, the learning time the fastest crossing of any run,
    the theory's edge twice its optimal rate."""
    rates = np.array(s["learning_rates"])
    run_rates = np.array(s["learning_rates_run"])
    assert np.all(np.diff(rates) > 0) and np.all(np.diff(run_rates) > 0)
    ratio = np.exp(np.mean(np.diff(np.log(rates))))
    # every rate run on the grid is a grid rate or the grid extended by whole steps of its spacing
    k = np.log(run_rates / rates[0]) / np.log(ratio)
    assert_close(k, np.round(k), F64)
    n = len(s["learning_time"])
    for key in ("best_learning_rate", "best_rate_band", "t_ct", "lambda_star", "stability_edge_measured", "fastest_rate",
                "bracketed", "theory_optimal_learning_rate", "theory_stability_edge", "inv_lambda_star"):
        assert len(s[key]) == n, key
    for i, entry in enumerate(s["runs"]):
        if s.get("ensemble", 1) > 1:
            # the learning time is the fastest of the grid rates' median crossings over the
            # ensemble's starts (a failing start counts as infinitely slow), recomputed here
            # from the runs; the ensemble ran only at the rates it lists, ensemble - 1 times each
            main = [r for r in entry["runs"] if r["role"] in ("grid", "extended")]
            ens = [r for r in entry["runs"] if r["role"] == "ensemble"]
            assert sorted({r["lr"] for r in ens}) == sorted(s["ensemble_rates"][i])
            for lr in s["ensemble_rates"][i]:
                assert sum(r["lr"] == lr for r in ens) == s["ensemble"] - 1
            t = lambda r: r["learning_time"] if r["status"] == "learned" else np.inf  # noqa: E731
            med = {r["lr"]: float(np.median([t(r)] + [t(e) for e in ens if e["lr"] == r["lr"]])) for r in main}
            learned = [dict(lr=lr, learning_time=m) for lr, m in med.items() if np.isfinite(m)]
        else:
            learned = [r for r in entry["runs"] if r["status"] == "learned" and r["role"] != "small"]
        # the learning time is the fastest measured crossing, and its rate is the fastest rate
        fastest = min(learned, key=lambda r: (r["learning_time"], r["lr"]))
        assert s["learning_time"][i] == fastest["learning_time"] and s["fastest_rate"][i] == fastest["lr"]
        b_lo, b_hi = s["best_rate_band"][i]
        assert b_lo <= s["fastest_rate"][i] <= b_hi  # the 10% band holds the fastest rate
        assert b_lo <= s["best_learning_rate"][i] <= b_hi
        # every learned rate strictly inside the band is within 10% of the fastest
        for r in learned:
            if b_lo < r["lr"] < b_hi:
                assert r["learning_time"] <= 1.1 * s["learning_time"][i] + BAND_SLACK[F64], (r, s["learning_time"][i])
        single = [r for r in entry["runs"] if r["role"] in ("grid", "extended") and r["status"] == "learned"]
        fastest = min(single, key=lambda r: (r["learning_time"], r["lr"]))  # the bracket is of the single runs
        assert s["t_ct"][i] > 0 and s["lambda_star"][i] > 0
        if s["bracketed"][i]:  # a slower or failing rate on each side of the fastest
            main = [r for r in entry["runs"] if r["role"] in ("grid", "extended")]
            worse = lambda r: r["status"] != "learned" or r["learning_time"] >= fastest["learning_time"]  # noqa: E731
            assert any(worse(r) for r in main if r["lr"] < fastest["lr"])
            assert any(worse(r) for r in main if r["lr"] > fastest["lr"])
    assert 0 < s["threshold"]["eps"] < 1


def _depth_sweep(s):
    _sweep_values(s)
    assert len(s["depths"]) == len(s["learning_time"]) and np.all(np.diff(s["depths"]) > 0)
    # the late slopes are fitted over the depths >= fit_min_depth (5 and 6 in the debug run): a
    # least-squares line in log-log (numpy's polyfit as the oracle), None with fewer than two
    d = np.asarray(s["depths"], float)
    late = d >= s["config"]["fit_min_depth"]
    assert s["lr_exponent_fit_depths"] == [int(x) for x in d[late]]
    lt = s["learning_time"]
    for k, v in (("lr_exponent", s["best_learning_rate"]), ("learning_time_late_slope", lt)):
        if late.sum() >= 2:
            assert s[k] == approx(np.polyfit(np.log(d[late]), np.log(np.asarray(v, float)[late]), 1)[0], F64), k
            lo, hi = s[k + "_ci"]
            assert lo <= s[k] <= hi and lo < hi, k
        else:
            assert s[k] is None and s[k + "_ci"] is None, k
    # the growth: the deepest over the shallowest learning time (each recomputed from the runs
    # themselves by _sweep_values above)
    assert abs(s["learning_time_growth"] - lt[-1] / lt[0]) < TOL[F64]["rtol"] * s["learning_time_growth"]
    lo, hi = s["learning_time_growth_ci"]
    assert lo <= s["learning_time_growth"] <= hi and lo < hi


def _lr_sweep(s):
    _sweep_values(s)
    assert len(s["learning_time"]) == 1 and s["depth"] >= 2


def _edge_of_chaos(s):
    g = np.array(s["gains"])
    q, chi = np.array(s["q_inf_theory"]), np.array(s["chi"])
    assert np.all(q[g <= 1.0] == 0.0) and np.all(q[g > 1.0] > 0)  # ordered below the edge, chaotic above
    assert np.all(chi[g < 1.0] < 1.0) and np.all(chi[g > 1.0] > 1.0)
    # chi = 1 at g = 1: the app bisects to 1e-6 in g (float32 q_inf), far inside 1e-3
    assert abs(s["critical_gain"] - 1.0) < 1e-3
    for w, sim in s["q_inf_simulated"].items():
        sim = np.array(sim)
        assert np.all(sim >= 0) and np.all(sim[g > 1.0] > 0)
        assert_close(s["q_inf_simulated_abs_error"][w], np.abs(sim - q), F64)  # the app's NumPy difference, redone


def _isometry(s):
    g = np.array(s["gains"])
    for kind in ("orthogonal", "gaussian"):
        f = np.array(s["fraction_within_2x_of_median"][kind])
        assert f.shape == (len(g), len(s["input_variances"])) and np.all((0 <= f) & (f <= 1))
        assert np.all(np.array(s["median_singular_value"][kind]) > 0)
        assert np.all(np.array(s["p90_over_p10"][kind]) >= 1)
    # dynamical isometry: at g <= 1 and the smallest input variance, orthogonal weights keep the
    # end-to-end singular values far better conditioned than Gaussian ones
    v = int(np.argmin(s["input_variances"]))
    for i in np.nonzero(g <= 1.0)[0]:
        assert 10 * s["p90_over_p10"]["orthogonal"][i][v] < s["p90_over_p10"]["gaussian"][i][v]


def _deep_tanh(s):
    n = len(s["initialisations"])
    for k in ("final_train_error", "final_test_error", "best_test_error", "epochs_to_train_error", "diverged_members"):
        assert len(s[k]) == n, k
    for tr, te, best, ep, div in zip(s["final_train_error"], s["final_test_error"], s["best_test_error"],
                                     s["epochs_to_train_error"], s["diverged_members"]):
        assert 0 <= tr <= 1 and 0 <= best <= te <= 1  # error rates; the best over epochs is at most the last
        assert ep is None or ep >= 0
        assert 0 <= div <= s["seeds"]


def _random_products(s):
    d = s["depths"]
    small, kurt, origin = (np.array(s[k]) for k in ("sv_fraction_below_0_1", "sv_kurtosis", "eig_origin_bin_fraction"))
    for a in (small, origin):
        assert np.all((0 <= a) & (a <= 1))
    assert np.all(np.diff(d) > 0)
    # with depth most singular values of Gaussian products vanish while a long tail grows (Fig. 6B-C)
    assert np.all(np.diff(small) > 0) and np.all(np.diff(kurt) > 0) and np.all(np.diff(origin) > 0)
    # products of orthogonal matrices keep every singular value at 1 (float64)
    assert max(s["orthogonal_sv_max_abs_deviation_from_1"]) < TOL[F64]["atol"]


def _pretraining(s):
    for k in ("offdiag_fraction", "offdiag_fraction_random_basis", "decoupling_offdiag_pretrained", "decoupling_offdiag_random"):
        assert 0 <= s[k] <= 1, k
    # the consistency condition (Eq. 18): the task's input directions are far closer to decoupled
    # in the data's principal basis / after pretraining than in a random one
    assert s["offdiag_fraction"] + 3 * s["offdiag_fraction_random_basis_std"] < s["offdiag_fraction_random_basis"]
    assert s["decoupling_offdiag_pretrained"] < s["decoupling_offdiag_random"]
    assert s["pretraining_steps"] > 0 and not any(s["pretraining_diverged"])
    assert all(r > 0 for r in s["pretraining_learning_rates"])
    for k in ("learning_time_random", "learning_time_pretrained"):
        assert s[k] is None or s[k] > 0, k
    if s["learning_time_random"] and s["learning_time_pretrained"]:
        assert s["learning_time_ratio"] == approx(s["learning_time_pretrained"] / s["learning_time_random"], F64)
    for kind in ("random", "pretrained"):  # the best rate is the 10% band's centre, around the raw arg-min
        lt = np.array([np.nan if t is None else t for t in s[f"learning_time_per_rate_{kind}"]], float)
        if np.isfinite(lt).any():
            fast = s[f"fastest_rate_{kind}"]
            assert fast == s["learning_rates"][int(np.nanargmin(lt))]
            lo, hi = s[f"best_rate_band_{kind}"]
            assert lo <= fast <= hi and abs(s[f"best_learning_rate_{kind}"] / np.sqrt(lo * hi) - 1) < TOL_ULPS[F64]["rtol"]


def _init_comparison(s):
    rates = s["learning_rates"]
    n = len(s["depths"])
    for init in s["inits"]:
        r = s[init]
        assert len(r["learning_time"]) == len(r["best_learning_rate"]) == len(r["fastest_rate"]) == n
        for lt, best, band, fast, div, nl in zip(r["learning_time"], r["best_learning_rate"], r["best_rate_band"],
                                                 r["fastest_rate"], r["diverged"], r["not_learned"]):
            assert (lt is None) == (best is None) == (fast is None)
            rtol = TOL_ULPS[F64]["rtol"]
            assert lt is None or (lt > 0 and any(abs(fast - x) <= rtol * x for x in rates))  # the arg-min: a grid rate
            # one meaning across apps: the best rate is the centre of the 10% band around the fastest
            assert best is None or (band[0] <= fast <= band[1] and abs(best / np.sqrt(band[0] * band[1]) - 1) < rtol)
            assert 0 <= div and 0 <= nl and div + nl <= len(rates) * s["seeds"]
    # greedy pretraining trains every hidden layer of a depth for the same number of steps
    per = s["pretraining_steps_per_layer"]
    assert [st % per for st in s["pretraining_steps"]] == [0] * n and np.all(np.diff(s["pretraining_steps"]) > 0)
    assert s["orthogonal_example_max_abs_eigenvalue_deviation"] < TOL[F32]["atol"]  # |eigenvalues| of an orthogonal matrix are 1 (float32)
    assert all(t > 0 for t in s["theory_learning_time_decoupled"])


VALUES = {"phase_portrait": _phase_portrait, "mode_dynamics": _mode_dynamics, "depth_sweep": _depth_sweep,
          "lr_sweep": _lr_sweep, "edge_of_chaos": _edge_of_chaos, "isometry": _isometry, "deep_tanh": _deep_tanh,
          "random_products": _random_products, "pretraining": _pretraining, "init_comparison": _init_comparison}


def _check_fig4_values(summary):
    """Values, not only keys: the compressed engine ran on the embedded digits with null input
    directions dropped, and every depth has the robust statistics, consistent with each other."""
    assert summary["compressed"] is True and summary["engine_used"].startswith("compressed-")
    rot = summary["input_rotation"]
    assert rot["kept"] + rot["dropped"] == 784 and rot["dropped"] > 0 and rot["eigenvalue_gap"] > 1e3
    for lam, edge_pred, inv, tct, steps in zip(summary["lambda_star"], summary["stability_edge_predicted"],
                                               summary["inv_lambda_star"], summary["t_ct"], summary["steps_at_inv_lambda_star"]):
        # the flow path's prediction: the largest sharpness met, the small-rate run's flow time
        assert lam > 0 and edge_pred * lam == approx(2.0, F64) and inv * lam == approx(1.0, F64)
        assert tct > 0 and steps == approx(tct * lam, F64)
    for entry in summary["runs"]:
        statuses = {r["status"] for r in entry["runs"]}
        assert statuses <= {"learned", "diverged", "stopped", "unsettled", "skipped"}
        assert {r["role"] for r in entry["runs"]} <= {"grid", "extended", "edge", "small", "ensemble"}
        assert "learned" in statuses
        for r in entry["runs"]:
            assert (r["learning_time"] is not None) == (r["status"] == "learned")


def test_float64_switch(tmp_path):
    _run("lr_sweep", tmp_path / "f64", "precision=float64")
    s = json.loads((tmp_path / "f64" / "summary.json").read_text())
    assert s["config"]["precision"] == "float64"
    with np.load(tmp_path / "f64" / "results.npz") as z:
        assert any(z[k].dtype == np.float64 for k in z.files)
    _lr_sweep(s)
    _check_fig4_values(s)


@pytest.mark.slow
def test_full_width_is_recorded(tmp_path):
    """compress=false runs the full-width network on the named engine and says so."""
    _run("depth_sweep", tmp_path / "full", "compress=false", "engine=xla", "depths=[3,5]")
    s = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert s["compressed"] is False and s["engine_used"] == "full-xla" and s["input_rotation"] is None
    assert s["config"]["compress"] is False and s["config"]["engine"] == "xla"
    _depth_sweep(s)


def test_full_width_that_cannot_fit_is_refused(tmp_path):
    r = _run("depth_sweep", tmp_path / "big", "compress=false", "hidden=100000", "depths=[3,1000]", check=False)
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
    s = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert s["whitened"] is True
    assert s["finite_rate_theory_max_abs_step_error_below_edge"] == 0.0
    assert s["finite_rate_theory_outcome_agreement_above_edge"] in (None, 1.0)
