"""The Fig. 4 flow path on the end-to-end map (``stats.flow_method=end_to_end``,
:meth:`experiments._shared.depth_loop.CompressedDepths.flow_path`) through the app: its T_ct is
diffrax's on every core, the small-rate run (``descent``) follows it to O(rate), its check run
crosses where it does, a rerun in the same directory reads it back unchanged, and the config
refuses what it cannot do."""

import json

import numpy as np
import pytest

from helpers import run_cli

# the end-to-end flow (rosenbrock_w, rtol 1e-5) against diffrax on every core (FLOW_RTOL 1e-7), both
# float64: ~1e-8 apart on the debug problem; we ask 1e-6
RTOL_DIFFRAX = {"float64": 1e-6}
# the small-rate run and the check run cross at whole steps of rate 1.25e-4 (~1/700 of T_ct in the
# debug run) and follow the flow to O(rate): 1e-3..2e-3 apart here; we ask 5e-3
RTOL_DESCENT = {"float64": 5e-3}


def _summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def e2e_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    run_cli("experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={out}", "precision=float64",
            "stats.flow_method=end_to_end", "stats.gradient_flow=true")
    return out


def test_end_to_end_t_ct_is_the_cores_flow(e2e_run):
    s = _summary(e2e_run)
    assert s["flow_method"] == ["end_to_end"] * len(s["depths"])
    for t, d in zip(s["t_ct"], s["t_ct_diffrax"]):
        assert t == pytest.approx(d, rel=RTOL_DIFFRAX["float64"])
    # the check: gradient descent from the last snapshot before the crossing crosses there too
    for rel, frm, t in zip(s["flow_check_rel"], s["flow_check_from"], s["t_ct"]):
        assert rel is not None and abs(rel) < RTOL_DESCENT["float64"]
        assert 0 <= frm < t
    assert all(n > 0 for n in s["flow_solver_steps"])


def test_small_rate_run_follows_the_end_to_end_flow(e2e_run, tmp_path):
    out = tmp_path / "descent"
    run_cli("experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={out}", "precision=float64",
            "stats.flow_method=descent")
    a, b = _summary(e2e_run), _summary(out)
    assert b["flow_method"] == ["descent"] * len(b["depths"])
    for key in ("t_ct", "lambda_star"):
        np.testing.assert_allclose(a[key], b[key], rtol=RTOL_DESCENT["float64"], err_msg=key)
    # the flow path is a prediction: the measurement does not depend on how it is followed
    for key in ("learning_time", "best_learning_rate", "best_rate_band", "stability_edge_measured"):
        assert a[key] == b[key], key


def test_rerun_reads_the_path_back(e2e_run, tmp_path):
    """A second run in the same directory finds the path and its check run in the checkpoint and
    writes the same summary."""
    import shutil

    out = tmp_path / "again"
    shutil.copytree(e2e_run, out)
    first = _summary(out)
    (out / "summary.json").unlink()
    res = run_cli("experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={out}", "precision=float64",
                  "stats.flow_method=end_to_end", "stats.gradient_flow=true")
    again = _summary(out)
    for key in ("t_ct", "lambda_star", "flow_check_t_ct", "runs", "member_steps", "learning_time"):
        assert again[key] == first[key], key
    assert "finished runs loaded" in (res.stdout + res.stderr)


@pytest.mark.parametrize("overrides,needle", [
    (["stats.flow_method=rkc"], "stats.flow_method"),
    (["stats.flow_method=end_to_end", "compress=false"], "stats.flow_method"),
    (["stats.end_to_end_from_depth=1"], "stats.end_to_end_from_depth"),
    (["stats.end_to_end_solver=rk4"], "stats.end_to_end_solver"),
])
def test_bad_flow_method_is_refused_at_composition(overrides, needle, tmp_path):
    res = run_cli("experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={tmp_path}", *overrides, check=False)
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert needle in text and "Traceback" not in text
    assert not (tmp_path / "summary.json").exists()


def test_solver_names_are_the_librarys():
    from dlnjax.theory.end_to_end_flow import SOLVERS
    from experiments.schemas.fig4_protocol import EndToEndSolver

    assert tuple(s.value for s in EndToEndSolver) == SOLVERS
