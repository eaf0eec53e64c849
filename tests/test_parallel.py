"""Both cores: independent work runs at once, and the numbers do not depend on how many run at
once. The depth loop of Fig. 4 (``depth_sweep``, ``lr_sweep``) runs its depths in threads,
``workers`` at a time (0: one per core); a depth's numbers must not depend on the thread that ran
it or on what ran beside it."""

import json
import math

from helpers import run_cli


def _numbers(x, path=""):
    """Every number of a summary, by path (config and timings left out)."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "config" or "seconds" in k:
                continue
            out.update(_numbers(v, f"{path}.{k}"))
        return out
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            out.update(_numbers(v, f"{path}[{i}]"))
        return out
    return {path: x} if isinstance(x, (int, float, bool)) or x is None else {}


def test_depth_sweep_gives_the_same_numbers_on_one_thread_and_on_three(debug_run, tmp_path):
    """The debug sweep (three depths) with workers=1 against workers=3 (more threads than the
    machine's 2 cores: depths interleave) gives bit-identical summaries; the fixture's run
    (workers=0, one per core) is the third witness."""
    runs = {}
    for w in (1, 3):
        out = tmp_path / f"w{w}"
        r = run_cli("experiments.depth_sweep", "experiment=debug", f"workers={w}", f"hydra.run.dir={out}")
        assert r.returncode == 0, r.stderr[-2000:]
        runs[w] = _numbers(json.loads((out / "summary.json").read_text()))
    runs[0] = _numbers(json.loads((debug_run("depth_sweep") / "summary.json").read_text()))
    assert len(runs[1]) > 100 and any(isinstance(v, float) and v for v in runs[1].values())
    for w in (3, 0):
        assert runs[w].keys() == runs[1].keys()
        diff = [k for k in runs[1] if not (runs[1][k] == runs[w][k] or (isinstance(runs[1][k], float)
                and math.isnan(runs[1][k]) and math.isnan(runs[w][k])))]
        assert not diff, (w, diff[:5], [(runs[1][k], runs[w][k]) for k in diff[:5]])
