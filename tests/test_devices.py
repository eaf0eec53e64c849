"""The vmapped batch sharded over several devices gives the one-device results.

Several CPU devices are made with XLA_FLAGS=--xla_force_host_platform_device_count=4 in a
subprocess (the flag must be set before JAX starts); 6 rates are padded to 8 and split 2 per device.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from helpers import assert_close

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from dlnjax import linear, sweep
from dlnjax.data import teacher
ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
task = sweep.Task.from_stats(linear.stats_from_examples(ds.x, ds.y, dtype=jnp.float64))
res = sweep.run_depth(task, 5, [0.005, 0.01, 0.02, 0.05, 0.1, 40.0], hidden=6, u0=1e-2,
                      threshold=("relative", 0.05, 0.0), max_steps=3000, chunk_steps=500,
                      record_every=10, key=jax.random.PRNGKey(0))
print(json.dumps(dict(devices=jax.local_device_count(), lt=[None if x != x else x for x in res.learning_time.tolist()],
                      diverged=res.diverged.tolist(), loss=[[None if v != v else v for v in row] for row in res.loss.tolist()])))
"""


def _run(n_devices):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_sharded_sweep_equals_one_device():
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["lt"] == one["lt"] and four["diverged"] == one["diverged"]
    assert four["diverged"][-1] is True and len(four["lt"]) == 6
    a = np.array(one["loss"], dtype=float)
    b = np.array(four["loss"], dtype=float)
    assert_close(b, a, rtol=1e-12, atol=1e-12, equal_nan=True)


def _app(app, out, n_devices, *overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}"}
    r = subprocess.run([sys.executable, "-m", f"experiments.{app}", "experiment=debug", f"hydra.run.dir={out}", *overrides],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(out / "results.npz") as z:
        return {k: z[k] for k in z.files}


import pytest  # noqa: E402


@pytest.mark.parametrize("app,overrides", [
    ("mode_dynamics", ["n_init=5"]),            # 5 initialisations over 4 devices (padded to 8)
    ("deep_tanh", []),                          # the (gain, seed) batch of networks
    ("random_products", ["realisations=3"]),    # realisations of each depth
    ("edge_of_chaos", []),                      # gains
    ("isometry", []),                           # gains x input variances
    ("init_comparison", ["seeds=2"]),           # every start and rate of a depth
])
def test_every_apps_batch_sharded_over_four_devices_equals_one_device(app, overrides, tmp_path):
    # float64: float32 matrix products may block differently for 1 and 2 members per device
    one = _app(app, tmp_path / "one", 1, "precision=float64", *overrides)
    four = _app(app, tmp_path / "four", 4, "precision=float64", *overrides)
    assert one.keys() == four.keys()
    for k in one:
        a, b = one[k], four[k]
        if a.dtype.kind in "fc":
            assert_close(b, a, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=k)
        else:
            np.testing.assert_array_equal(b, a, err_msg=k)
