"""The Fig. 4 headline does not move when rounding changes (slow tier).

At a reduced size on raw pixels (2,000 embedded digits, depths 3-8, 16 hidden units), the
depth sweep's headline numbers, ``lr_exponent`` and ``learning_time_growth``, must agree within
+-0.05 and +-5% across float32 vs float64, the compressed engine vs the full-width network, and
the XLA vs native engines (compressed and full width). The measured finite-rate numbers (the
fastest crossing, the measured edge), which the edge of stability moves, are not held to it.
"""

import json

import pytest

from helpers import run_py

BASE = ["experiment=debug", "data.n_train=2000", "depths=[3,5,8]", "hidden=16", "learning_rates.num=8",
        "learning_rates.min=3e-6", "learning_rates.max=1e-3", "threshold.eps=0.2", "max_steps=20000", "chunk_steps=200",
        "stats.snapshots=8", "stats.edge_bisections=2"]
VARIANTS = {
    "compressed-xla-f64": ["precision=float64", "engine=xla"],
    "compressed-xla-f32": ["precision=float32", "engine=xla"],
    "compressed-native-f32": ["precision=float32", "engine=native"],
    "full-xla-f64": ["precision=float64", "engine=xla", "compress=false"],
    "full-native-f64": ["precision=float64", "engine=native", "compress=false"],
}


@pytest.mark.slow
def test_headline_agrees_across_precisions_engines_and_compression(tmp_path):
    out = {}
    for name, extra in VARIANTS.items():
        run_py("-m", "experiments.depth_sweep", *BASE, *extra, f"hydra.run.dir={tmp_path / name}")
        out[name] = json.loads((tmp_path / name / "summary.json").read_text())
    ref = out["compressed-xla-f64"]
    assert ref["lr_exponent"] is not None and ref["learning_time_growth"] is not None
    for name, s in out.items():
        assert s["engine_used"].startswith("compressed" if "compressed" in name else "full"), name
        assert abs(s["lr_exponent"] - ref["lr_exponent"]) <= 0.05, (name, s["lr_exponent"], ref["lr_exponent"])
        assert abs(s["learning_time_growth"] / ref["learning_time_growth"] - 1.0) <= 0.05, (
            name, s["learning_time_growth"], ref["learning_time_growth"])
