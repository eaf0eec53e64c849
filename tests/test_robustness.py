"""The Fig. 4 headline does not move more than its interval when rounding changes (slow tier).

On the main job's data, grid and threshold (the 8,000 embedded digits, raw pixels, 20 rates,
eps = 0.05, depths 3-100: the late depths N_l >= 20 hold six points) at a reduced width (16 hidden
units, so that the full-width network is cheap; the compressed one does not depend on it), the depth sweep's headline, ``lr_exponent``,
``learning_time_growth`` and ``learning_time_late_slope``, is measured five ways: float32 vs
float64, the compressed engine vs the full-width network, and the XLA vs native engines
(compressed and full width). Each run's 90% interval must hold every other run's point value,
and the point values must agree within +-0.05, +-5% and +-0.1.
"""

import json

import pytest

from helpers import run_py

BASE = ["hidden=16", "chunk_steps=200", "stats.snapshots=8", "stats.edge_bisections=2"]
VARIANTS = {
    "compressed-xla-f64": ["precision=float64", "engine=xla"],
    "compressed-xla-f32": ["precision=float32", "engine=xla"],
    "compressed-native-f32": ["precision=float32", "engine=native"],
    "full-xla-f64": ["precision=float64", "engine=xla", "compress=false"],
    "full-native-f64": ["precision=float64", "engine=native", "compress=false"],
}
AGREE = {"lr_exponent": ("abs", 0.05), "learning_time_growth": ("rel", 0.05), "learning_time_late_slope": ("abs", 0.1)}


@pytest.mark.slow
def test_headline_agrees_across_precisions_engines_and_compression(tmp_path):
    out = {}
    for name, extra in VARIANTS.items():
        run_py("-m", "experiments.depth_sweep", *BASE, *extra, f"hydra.run.dir={tmp_path / name}")
        out[name] = json.loads((tmp_path / name / "summary.json").read_text())
    ref = out["compressed-xla-f64"]
    assert ref["lr_exponent_fit_depths"] == [20, 30, 40, 50, 70, 100]
    for name, s in out.items():
        assert s["engine_used"].startswith("compressed" if "compressed" in name else "full"), name
        assert s["unbracketed_depths"] == [], name
        for k, (kind, tol) in AGREE.items():
            assert s[k] is not None, (name, k)
            diff = abs(s[k] - ref[k]) if kind == "abs" else abs(s[k] / ref[k] - 1.0)
            assert diff <= tol, (name, k, s[k], ref[k])
            for other, o in out.items():  # every run's interval holds every other run's value
                lo, hi = s[k + "_ci"]
                assert lo <= o[k] <= hi, (name, other, k, s[k + "_ci"], o[k])
