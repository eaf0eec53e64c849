"""Reproducing results: the same command twice gives bit-identical files; experiments.reproduce
runs experiments and writes the report, with verdicts by its rules."""

import json

from helpers import run_cli, run_py


def test_same_command_twice_gives_identical_files(tmp_path, debug_run):
    """The session's debug depth sweep (run in the test process, after whatever ran before it)
    and the same command in a new interpreter write bit-identical results."""
    a = debug_run("depth_sweep")
    run_py("-m", "experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={tmp_path / 'b'}")
    for f in ("summary.json", "results.npz"):
        assert (a / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "b" / "timing.json").exists()


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
