"""Each benchmark runs once at a tiny size so that it cannot rot (no timing assertions)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,out", [("linear_step", "linear_step_tiny.json"), ("fig3", "fig3_tiny.json"),
                                      ("baselines", "baselines_tiny.json"),
                                      ("scaling", "scaling_tiny.json")])
def test_benchmark_runs_tiny(name, out, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLNJAX_BENCH_DIR": str(tmp_path)}
    extra = []
    if name == "linear_step":  # also run the Pallas row's code (interpreted on a CPU)
        env["DLNJAX_PALLAS_INTERPRET"] = "1"
        extra = ["--pallas"]
    r = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--tiny", *extra], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    payload = json.loads((tmp_path / out).read_text())
    assert "machine" in payload
    if name == "linear_step":
        assert payload["step_pallas_s"] > 0 and payload["pallas_vs_xla_rel_diff"] < 1e-4
