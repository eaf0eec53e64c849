"""Each benchmark runs once at a tiny size so that it cannot rot (no timing assertions).

Main tier: the benchmark's command line in this process (``helpers.run_cli``; fig3 still runs
its end-to-end app in a new interpreter); slow tier: ``python -m benchmarks.<name>`` in a new
interpreter, as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
# the slow ones (8.9-65 s each on 2 cores) run in the slow tier only
BENCHMARKS = [pytest.param("linear_step", "linear_step_tiny.json", marks=pytest.mark.slow),
              pytest.param("fig3", "fig3_tiny.json", marks=pytest.mark.slow), ("baselines", "baselines_tiny.json"),
              pytest.param("scaling", "scaling_tiny.json", marks=pytest.mark.slow),
              pytest.param("apps", "apps_tiny.json", marks=pytest.mark.slow)]
# Pallas (interpreted) vs XLA step's relative difference, keyed by the run's dtype (float32 unless
# --float64): the same sums in another order, a few ulps per term; half TOL['float32']'s rtol is enough
PALLAS_VS_XLA_RTOL = {"float32": 1e-4}


@pytest.mark.parametrize("how", ["in-process", pytest.param("subprocess", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name,out", BENCHMARKS)
def test_benchmark_runs_tiny(name, out, how, tmp_path):
    env = {"DLNJAX_BENCH_DIR": str(tmp_path)}
    extra = []
    if name == "linear_step":  # also run the Pallas row's code (interpreted on a CPU)
        env["DLNJAX_PALLAS_INTERPRET"] = "1"
        extra = ["--pallas"]
    if how == "in-process":
        run_cli(f"benchmarks.{name}", "--tiny", *extra, env=env)
    else:
        r = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--tiny", *extra], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    payload = json.loads((tmp_path / out).read_text())
    # the machine the numbers were measured on, as this process sees it
    assert payload["machine"]["cpu_count"] == os.cpu_count() and payload["machine"]["jax"] == __import__("jax").__version__
    if name == "linear_step":
        assert payload["step_pallas_s"] > 0 and payload["pallas_vs_xla_rel_diff"] < PALLAS_VS_XLA_RTOL[payload["dtype"]]
