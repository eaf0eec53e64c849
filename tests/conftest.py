import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

# Theory checks run in float64; tests that exercise float32 pass dtypes explicitly.
jax.config.update("jax_enable_x64", True)

# Tolerances keyed by dtype (neural-tangents style).
RTOL = {"float32": 2e-4, "float64": 1e-8}


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
