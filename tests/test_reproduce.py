"""Reproducing results: the same command twice gives bit-identical files; experiments.reproduce
runs experiments and writes the report, with verdicts by its rules."""

import json

import pytest

from helpers import run_cli, run_py


@pytest.mark.slow
def test_same_command_twice_gives_identical_files(tmp_path, debug_run):
    """The session's debug depth sweep (run in the test process, after whatever ran before it)
    and the same command in a new interpreter write bit-identical results."""
    a = debug_run("depth_sweep")
    run_py("-m", "experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={tmp_path / 'b'}")
    for f in ("summary.json", "results.npz"):
        assert (a / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "b" / "timing.json").exists()


@pytest.mark.slow
def test_reproduce_runs_experiments_and_writes_the_report(tmp_path):
    out = tmp_path / "rep"
    run_cli("experiments.reproduce", "only=[phase_portrait,edge_of_chaos]", f"hydra.run.dir={out}")  # the apps in new interpreters
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

    sweep = dict(depths=[3, 20, 64], lr_exponent_fit_depths=[20, 64], learning_time_growth=2.0, learning_time_growth_ci=[1.8, 2.2],
                 theory_learning_time_late_slope=0.15)
    # saturation: the interval reaches down to within 0.15 of the prediction's late slope (0.15 + 0.15 = 0.30)
    assert r._fig4a({**sweep, "learning_time_late_slope": 0.35, "learning_time_late_slope_ci": [0.29, 0.41]})[1] == r.YES
    assert r._fig4a({**sweep, "learning_time_late_slope": 0.40, "learning_time_late_slope_ci": [0.31, 0.55]})[1] == r.PARTLY
    assert r._fig4a({**sweep, "learning_time_late_slope": 0.70, "learning_time_late_slope_ci": [0.50, 0.90]})[1] == r.NO
    assert r._fig4a({**sweep, "learning_time_late_slope": None, "learning_time_late_slope_ci": None})[1] == r.NO
    # 1/N_l: the whole interval inside [-1.3, -0.7]; partly when its upper end is below -0.2
    assert r._fig4b({**sweep, "lr_exponent": -1.0, "lr_exponent_ci": [-1.2, -0.8]})[1] == r.YES
    assert r._fig4b({**sweep, "lr_exponent": -0.8, "lr_exponent_ci": [-1.0, -0.6]})[1] == r.PARTLY
    assert r._fig4b({**sweep, "lr_exponent": -0.1, "lr_exponent_ci": [-0.3, 0.1]})[1] == r.NO
    # a Fig. 4 row shows every data set that ran and takes the weaker verdict
    both = r.CLAIMS[3].judge({"depth_sweep": {**sweep, "learning_time_late_slope": 0.35, "learning_time_late_slope_ci": [0.29, 0.41]},
                              "depth_sweep_fashion": {**sweep, "learning_time_late_slope": 0.4, "learning_time_late_slope_ci": [0.31, 0.55]}})
    assert both[1] == r.PARTLY and "embedded digits" in both[0] and "Fashion-MNIST" in both[0]
    assert r.CLAIMS[3].judge({})[1] == r.MISSING
    five = dict(learning_time_ratio_same_rate=1.3, learning_time_ratio=0.3)
    assert r._fig5b(five)[1] == r.PARTLY
    assert r._fig5b({**five, "learning_time_ratio": 1.1})[1] == r.YES
    assert r._fig8({"critical_gain": 1.2})[1] == r.NO


def _lr_teacher(times, pred, rates=(1e-3, 2e-3, 4e-3, 8e-3), edge=5e-3, whitened=True):
    runs = [dict(lr=r, role="grid", learning_time=t) for r, t in zip(rates, times)]
    return dict(whitened=whitened, depth=4, learning_rates=list(rates), finite_rate_theory_learning_time=list(pred),
                finite_rate_theory_edge=edge, runs=[dict(depth=4, runs=runs)])


def test_beyond_the_paper_verdict_rules():
    """Each beyond-the-paper judge on hand-made summaries, every verdict it can give."""
    from experiments import reproduce as r

    # (a) finite-rate theory: exact to the step below the edge, outcomes agree above it
    assert r._beyond_finite_rate(_lr_teacher([4000, 2000, 1000, None], [4000, 2000, 1000, None]))[1] == r.HOLDS
    assert r._beyond_finite_rate(_lr_teacher([4000, 2000, 1000, None], [4010, 2000, 1001, None]))[1] == r.PARTLY
    # above the edge (chaos) the outcome is reported, not judged
    m, v = r._beyond_finite_rate(_lr_teacher([4000, 2000, 1000, None], [4000, 2000, 1000, 900]))
    assert v == r.HOLDS and "agrees at 0 of 1 rates" in m
    assert r._beyond_finite_rate(_lr_teacher([4000, 2000, 1000, None], [4400, 2000, 1000, None]))[1] == r.FAILS
    assert r._beyond_finite_rate(_lr_teacher([None, None, None, None], [4000, 2000, 1000, None]))[1] == r.MISSING
    assert r._beyond_finite_rate(dict(whitened=False))[1] == r.MISSING

    # (b) stability edge: 2/lambda* a lower bound, and the measured edge follows its depth trend
    depths = [3, 5, 10, 20, 40]
    pred = [2e-5, 1.5e-5, 1e-5, 5e-6, 2.5e-6]
    sweep = dict(depths=depths, stability_edge_predicted=pred, config=dict(fit_min_depth=5))
    assert r._beyond_edge({**sweep, "stability_edge_measured": [4 * p for p in pred]})[1] == r.HOLDS
    rises_then_falls = [5e-5, 1.5e-4, 1.9e-4, 1.3e-4, 7e-5]  # the raw-pixel shape: far above, not monotone
    m, v = r._beyond_edge({**sweep, "stability_edge_measured": rises_then_falls})
    assert v == r.PARTLY and "2 of 3 steps" in m
    assert r._beyond_edge({**sweep, "stability_edge_measured": [3e-5, 1e-5, 8e-6, 4e-6, 2e-6]})[1] == r.FAILS
    assert r._beyond_edge({**sweep, "stability_edge_measured": [None] * 5})[1] == r.MISSING

    # (c) gradient flow (diffrax) vs the small-rate run's flow time
    flow = dict(depths=[3, 10], t_ct=[0.0116, 0.0452])
    assert r._beyond_flow({**flow, "t_ct_diffrax": [0.0115, 0.0450]})[1] == r.HOLDS
    assert r._beyond_flow({**flow, "t_ct_diffrax": [0.0105, 0.0450]})[1] == r.PARTLY
    assert r._beyond_flow({**flow, "t_ct_diffrax": [0.0050, 0.0450]})[1] == r.FAILS
    assert r._beyond_flow(flow)[1] == r.MISSING  # the field is absent: not run
    assert r._beyond_flow({**flow, "t_ct_diffrax": [None, None]})[1] == r.MISSING

    # (d) exact vs simulated balanced dynamics
    bal = dict(scales=[0.01, 1.0], signs=[0], kernel_movement=[[10.0, 1.0]])
    assert r._beyond_balanced({**bal, "max_deviation": 0.004, "kernel_movement_simulated": [[10.1, 1.0]]})[1] == r.HOLDS
    assert r._beyond_balanced({**bal, "max_deviation": 0.004, "kernel_movement_simulated": [[12.0, 1.0]]})[1] == r.PARTLY
    assert r._beyond_balanced({**bal, "max_deviation": 0.03, "kernel_movement_simulated": [[10.0, 1.0]]})[1] == r.PARTLY
    assert r._beyond_balanced({**bal, "max_deviation": 0.2, "kernel_movement_simulated": [[10.0, 1.0]]})[1] == r.FAILS


def test_prediction_of_the_optimum_verdict_rule():
    """The prediction row: on target at every depth (rate in the band or within 25%, time within
    25%) holds; at some depths partly; at none fails; the per-depth ratios are printed."""
    from experiments import reproduce as r

    base = dict(dataset="embedded", depths=[3, 10], prediction_rate_ratio=[1.1, 0.9], prediction_rate_in_band=[True, False],
                prediction_time_ratio=[1.2, 0.8], prediction_worst_rate_factor=1.11, prediction_worst_time_factor=1.25)
    m, v = r._beyond_prediction({**base, "prediction_depths_on_target": [3, 10]})
    assert v == r.HOLDS and "3: rate ×1.1 (in band), time ×1.2" in m
    assert r._beyond_prediction({**base, "prediction_depths_on_target": [3]})[1] == r.PARTLY
    assert r._beyond_prediction({**base, "prediction_depths_on_target": []})[1] == r.FAILS
    assert r._beyond_prediction({"depths": [3]})[1] == r.MISSING


def test_beyond_the_paper_section_in_the_report(tmp_path):
    """report.md and report.html carry the section, its counts and one row per comparison."""
    from experiments import reproduce as r

    beyond = [dict(run=b.run, what=b.what, statement=b.statement, rule=b.rule, measured="x | y", verdict=v)
              for b, v in zip(r.BEYOND, [r.HOLDS, r.PARTLY, r.MISSING, r.FAILS, r.HOLDS, r.FAILS])]
    assert len(beyond) == len(r.BEYOND)
    row = dict(app="edge_of_chaos", figure="Fig. 8", statement="s", rule="r", measured="m", verdict=r.YES)
    r.write_reports(tmp_path, [row], dict(preset="quick", minutes=1.0, machine="cpu", figures={}, beyond=beyond))
    md = (tmp_path / "report.md").read_text()
    assert "## Beyond the paper" in md and "**2 hold, 1 partly, 2 fail, 1 not run.**" in md
    rows = [ln for ln in md.splitlines() if any(ln.startswith(f"| {b.what} |") for b in r.BEYOND)]
    assert len(rows) == len(r.BEYOND) and all(ln.replace("\\|", "").count("|") == 6 for ln in rows)
    assert md.index("## Beyond the paper") < md.index("## Figures")
    assert "Beyond the paper" in (tmp_path / "report.html").read_text()


def test_report_summarises_where_the_fig4_claims_hold():
    """The report's summary of docs/fig4.md's table: one row per committed depth sweep, each with
    both verdicts by the report's own rules (point 4 of issue 25: inputs, data sets, thresholds)."""
    import json

    from experiments._shared import verdicts
    from experiments.reproduce import FIG4_RUNS, where_claims_hold_section

    runs = {p.name: json.loads(p.read_text()) for p in sorted(FIG4_RUNS.glob("*.json"))}
    runs = {k: s for k, s in runs.items() if s.get("experiment") == "depth_sweep" and s.get("summary_version", 1) >= 2}
    section = where_claims_hold_section()
    rows = [ln for ln in section if ln.startswith("| ") and "`" in ln.split("|")[-2]]
    assert len(rows) == len(runs)
    for name, s in runs.items():
        row = next(r for r in rows if f"`{name}`" in r)
        assert f"**{verdicts.rate_verdict(s)}**" in row and f"**{verdicts.saturation_verdict(s)}**" in row
    cells = {(s["dataset"], s["preprocessing"], s["threshold"]["eps"]) for s in runs.values()}
    assert {(d, p, e) for d in ("embedded", "fashion_mnist") for p in ("raw", "centred", "whitened")
            for e in (0.05, 0.01)} <= cells
