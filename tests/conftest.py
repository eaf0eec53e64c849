"""Fixtures and test-wide settings; tolerances and the NumPy oracles are in tests/helpers.py."""

import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# The apps (experiments) and the benchmarks are not installed with the package (only dlnjax is):
# they are imported from the clone, also under a bare `pytest` (which, unlike `python -m pytest`,
# does not put the current directory on sys.path).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import pytest  # noqa: E402

# Theory checks run in float64; tests that exercise float32 pass dtypes explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory):
    """``debug_run(app)``: the folder of one ``python -m experiments.<app> experiment=debug`` run,
    made in this process the first time a test asks for it and shared by every test after
    (test_experiments, test_aggregate, test_reproduce, test_resume read its files; none may
    change them)."""
    from helpers import run_cli

    done = {}

    def get(app: str) -> Path:
        if app not in done:
            out = tmp_path_factory.mktemp(f"debug-{app}") / "run"
            run_cli(f"experiments.{app}", "experiment=debug", f"hydra.run.dir={out}")
            done[app] = out
        return done[app]

    return get
