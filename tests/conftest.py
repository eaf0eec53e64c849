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

# One persistent XLA compilation cache for the test run: both tiers of .ci/run and every app a
# test starts in a new interpreter (they inherit the variables) compile each program once. It is
# keyed by the program and the compiler's flags and version, so a cached executable is the one a
# fresh compile would give: the same numbers. Set JAX_COMPILATION_CACHE_DIR to move it ('' disables).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax  # noqa: E402
import pytest  # noqa: E402

# Theory checks run in float64; tests that exercise float32 pass dtypes explicitly.
jax.config.update("jax_enable_x64", True)
# IEEE float32 products on a GPU too (XLA's default there is TF32); nothing changes on a CPU
from dlnjax.measure.devices import ieee_matmuls  # noqa: E402

ieee_matmuls()


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


# The main tier (the README's `python -m pytest`) must run in at most 10 min on 2 cores: its slowest
# tests carry @pytest.mark.slow (on the test, or on a parameter) and run in the slow tier
# (`python -m pytest -m slow`, which .ci/run also runs).
