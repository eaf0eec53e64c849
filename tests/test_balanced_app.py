"""The balanced_dynamics app at experiment=debug through Hydra's compose API: values in its summary."""

import json

import numpy as np
import pytest
from experiments import balanced_dynamics as app
from experiments.schemas import ConfigError, compose, validate


def _cfg(*overrides):
    return compose("balanced_dynamics", ["experiment=debug", *overrides])


@pytest.mark.slow
def test_debug_run_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside Hydra the app writes to the working directory
    cfg = _cfg("scales=[0.01,3.0]")
    summary = app.run(cfg)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert (tmp_path / "balanced_dynamics.png").exists() and (tmp_path / "results.npz").exists()
    assert saved["signs"] == [-1, 0, 1] and saved["scales"] == [0.01, 3.0]
    dev = np.asarray(saved["deviation"])
    # gradient descent at rate lr is within O(lr) of the exact flow (lr = 2e-3; C ~ 1 relative to s_1)
    assert dev.shape == (3, 2) and np.all(dev < 10 * np.asarray(saved["learning_rates"]))
    assert saved["max_deviation"] == pytest.approx(dev.max())
    move = np.asarray(saved["kernel_movement"])
    # rich (small scale: the kernel is built from ~0, moves by orders of magnitude its start) to lazy
    assert np.all(move[:, 0] > 100) and np.all(move[:, 1] < 1.0)
    # the exact kernel movement matches the one of the simulated network (O(lr))
    np.testing.assert_allclose(move, np.asarray(saved["kernel_movement_simulated"]), rtol=2e-2)
    assert summary["max_deviation"] == saved["max_deviation"]


@pytest.mark.parametrize("override,fragment", [
    ("signs=[2]", "signs=[2]"),
    ("scales=[0.0]", "scales=[0.0]"),
    ("n_hidden=6", "n_hidden=6"),
])
def test_range_checks(override, fragment):
    with pytest.raises(ConfigError, match="invalid config: " + fragment.replace("[", r"\[").replace("]", r"\]")):
        validate("balanced_dynamics", _cfg(override))
