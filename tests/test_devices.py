"""The vmapped batch sharded over several devices gives the one-device results.

Several CPU devices are made with XLA_FLAGS=--xla_force_host_platform_device_count=4 in a
subprocess (the flag must be set before JAX starts); 6 rates are padded to 8 and split 2 per
device. The one-device side runs in the test process (one CPU device); the four-device side in
one new interpreter per module, which runs the sweep and every app the session selected (their
command lines through ``helpers.run_cli``). Main tier: the sweep, and the apps whose batches
are padded (5 initialisations over 4 devices) and two-dimensional (gains x input variances);
the slow tier adds the other apps.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_close, run_cli
from dlnjax.data.statistics import Task, stats_from_examples

ROOT = Path(__file__).resolve().parents[1]

# one device vs four, float64 (both sides set precision=float64), by what is compared:
# the sweep (the same per-member programs: a few ulps)
SWEEP_TOL = {"float64": dict(rtol=1e-12, atol=1e-12)}
# every app's results (matrix products may block differently with 1 and 2 members per device, and
# the difference compounds over a run's steps)
APP_TOL = {"float64": dict(rtol=1e-9, atol=1e-12)}

# the whole module is in the slow tier (its four-device interpreter is shared by its tests)
pytestmark = pytest.mark.slow


def sweep_on_all_devices():
    """A depth-5 sweep of 6 rates (the last diverges) on the teacher task, float64."""
    import jax
    import jax.numpy as jnp

    from dlnjax.init import functions as init_fns
    from dlnjax.networks import linear
    from dlnjax.measure import sweep
    from dlnjax.data import teacher
    from dlnjax.measure.thresholds import Threshold

    assert jax.config.jax_enable_x64
    ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
    task = Task.from_stats(stats_from_examples(ds.x, ds.y, dtype=jnp.float64))
    rates = [0.005, 0.01, 0.02, 0.05, 0.1, 40.0]
    widths = sweep.widths_for(5, 4, 5, 6)
    w0 = init_fns.decoupled(jax.random.PRNGKey(0), widths, 1e-2, task.u, task.v, dtype=jnp.float64)
    thr, _ = Threshold("relative", "initial", 0.05).resolve_for(task, widths, loss0=float(linear.loss_from_stats(w0, task.stats)))
    batch = tuple(jnp.broadcast_to(w, (len(rates),) + w.shape) for w in w0)
    res = sweep.run_batch(task.stats, batch, rates, threshold=thr, max_steps=3000, chunk_steps=500, record_every=10)
    return dict(devices=jax.local_device_count(), lt=[None if x != x else x for x in res.learning_time.tolist()],
                diverged=res.diverged.tolist(), loss=[[None if v != v else v for v in row] for row in res.loss.tolist()])


# run in the four-device interpreter: the sweep, then each (app, overrides, folder) given as JSON
SCRIPT = r"""
import json, sys
sys.path.insert(0, "tests")
import jax
jax.config.update("jax_enable_x64", True)
from helpers import run_cli
from test_devices import sweep_on_all_devices
sweep = sweep_on_all_devices()
for app, overrides, out in json.loads(sys.argv[1]):
    run_cli(f"experiments.{app}", "experiment=debug", f"hydra.run.dir={out}", "precision=float64", *overrides)
print(json.dumps(sweep))
"""

APPS = [
    pytest.param("mode_dynamics", ["n_init=5"], id="mode_dynamics"),       # 5 initialisations over 4 devices (padded to 8)
    pytest.param("deep_tanh", [], id="deep_tanh", marks=pytest.mark.slow),  # the (gain, seed) batch of networks
    pytest.param("random_products", ["realisations=3"], id="random_products", marks=pytest.mark.slow),  # realisations of each depth
    pytest.param("edge_of_chaos", [], id="edge_of_chaos", marks=pytest.mark.slow),  # gains
    pytest.param("isometry", [], id="isometry"),                           # gains x input variances
    pytest.param("init_comparison", ["seeds=2"], id="init_comparison", marks=pytest.mark.slow),  # every start and rate of a depth
]


@pytest.fixture(scope="module")
def four_devices(request, tmp_path_factory):
    """The four-device interpreter's sweep result and app folders (for the apps this session runs)."""
    base = tmp_path_factory.mktemp("four-devices")
    jobs = [(it.callspec.params["app"], it.callspec.params["overrides"], str(base / it.callspec.params["app"]))
            for it in request.session.items
            if it.module is request.module and getattr(it, "originalname", "") == "test_every_apps_batch_sharded_over_four_devices_equals_one_device"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(jobs)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), base


def test_sharded_sweep_equals_one_device(four_devices):
    one, four = sweep_on_all_devices(), four_devices[0]
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["lt"] == one["lt"] and four["diverged"] == one["diverged"]
    assert four["diverged"][-1] is True and len(four["lt"]) == 6
    a = np.array(one["loss"], dtype=float)
    b = np.array(four["loss"], dtype=float)
    assert_close(b, a, **SWEEP_TOL["float64"], equal_nan=True)


def _results(out):
    with np.load(out / "results.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("app,overrides", APPS)
def test_every_apps_batch_sharded_over_four_devices_equals_one_device(app, overrides, four_devices, tmp_path):
    # float64: float32 matrix products may block differently for 1 and 2 members per device
    import jax

    assert jax.local_device_count() == 1
    run_cli(f"experiments.{app}", "experiment=debug", f"hydra.run.dir={tmp_path / 'one'}", "precision=float64", *overrides)
    one, four = _results(tmp_path / "one"), _results(four_devices[1] / app)
    assert one.keys() == four.keys()
    for k in one:
        a, b = one[k], four[k]
        if a.dtype.kind in "fc":
            assert_close(b, a, **APP_TOL["float64"], equal_nan=True, err_msg=k)
        else:
            np.testing.assert_array_equal(b, a, err_msg=k)
