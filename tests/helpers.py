"""What the tests share besides fixtures (those stay in conftest.py): tolerances keyed by dtype,
``assert_close``, the NumPy/SciPy oracles the library is checked against, and ``run_py`` (an
app or script run in the clone's root, as a user runs it).

    from helpers import TOL, assert_close, numpy_solve_deep, run_py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Tolerances keyed by dtype (neural-tangents style): two computations of the same quantity by
# different routes (fused kernels vs XLA, ...) agree to rounding of sums of ~n terms in float64
# and to float32's epsilon times that in float32.
TOL = {
    "float32": dict(rtol=2e-4, atol=2e-6),
    "float64": dict(rtol=1e-10, atol=1e-12),
}

# np.testing.assert_allclose's own defaults, used when no dtype is named
_DEFAULT = dict(rtol=1e-7, atol=0.0)


def _dtype_name(dtype: Any) -> str:
    return dtype if isinstance(dtype, str) else np.dtype(dtype).name


def assert_close(actual: Any, expected: Any, dtype: Any = None, *, rtol: float | None = None, atol: float | None = None,
                 err_msg: str = "", equal_nan: bool = True) -> None:
    """``np.testing.assert_allclose`` with tolerances from :data:`TOL` for ``dtype``.

    ``dtype`` (a name such as ``"float32"`` or a NumPy/JAX dtype) picks both tolerances from
    :data:`TOL`; an explicit ``rtol`` or ``atol`` replaces that one. Without ``dtype`` the
    tolerances are NumPy's defaults (``rtol=1e-7``, ``atol=0``) unless given. JAX arrays and
    scalars are converted with ``np.asarray``.
    """
    tol = dict(TOL[_dtype_name(dtype)]) if dtype is not None else dict(_DEFAULT)
    if rtol is not None:
        tol["rtol"] = rtol
    if atol is not None:
        tol["atol"] = atol
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), err_msg=err_msg, equal_nan=equal_nan, **tol)


def numpy_solve_deep(s: float, u0: float, t: np.ndarray, tau: float, depth: int) -> np.ndarray:
    """Reference solution of Eq. 15 (the balanced mode strength of a depth-``depth`` network) by
    scipy's ``solve_ivp``: the oracle that ``dlnjax.theory.mode_strength`` is checked against."""
    from scipy.integrate import solve_ivp

    n = depth - 1

    def rhs(_t, u):
        return [n * abs(u[0]) ** (2.0 - 2.0 / n) * (s - u[0]) / tau]

    sol = solve_ivp(rhs, (0.0, float(np.max(t))), [u0], t_eval=np.asarray(t), rtol=1e-11, atol=1e-14, method="LSODA")
    return sol.y[0]


# ----------------------------------------------------------------------------------------
# running the apps as a user does: `python -m experiments.<app> ...` in the clone's root
# ----------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
# the apps are not installed with the package: they are imported from the clone
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}


def run_py(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python *args`` in the clone's root; asserts exit status 0 (showing the end of stderr)."""
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r
