"""What the tests share besides fixtures (those stay in conftest.py): tolerances keyed by dtype,
``assert_close``, the NumPy/SciPy oracles the library is checked against, and ``run_py`` (an
app or script run in the clone's root, as a user runs it).

    from helpers import TOL, TOL_ULPS, approx, assert_close, numpy_solve_deep, run_py
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

# Tighter, for the same few operations done twice in one dtype (a vmap lane against the lone run,
# one evaluation against its rotated or rewritten twin, an identity of a handful of terms): no long
# sums and no steps to compound rounding, so a few hundred ulps. Only float64 needs one so far.
TOL_ULPS = {
    "float64": dict(rtol=1e-12, atol=1e-14),
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


def approx(expected: Any, dtype: Any, *, rel: float | None = None, abs: float | None = None, table: dict = TOL) -> Any:
    """``pytest.approx(expected)`` with ``rel`` and ``abs`` from ``table[dtype]`` (its ``rtol`` and
    ``atol``; :data:`TOL` unless another dtype-keyed table such as :data:`TOL_ULPS` is given); an
    explicit ``rel`` or ``abs`` replaces that one. A value passes within the larger of the two."""
    import pytest

    tol = table[_dtype_name(dtype)]
    return pytest.approx(expected, rel=tol["rtol"] if rel is None else rel, abs=tol["atol"] if abs is None else abs)


def numpy_solve_deep(s: float, u0: float, t: np.ndarray, tau: float, depth: int) -> np.ndarray:
    """Reference solution of Eq. 15 (the balanced mode strength of a depth-``depth`` network) by
    scipy's ``solve_ivp``: the oracle that ``dlnjax.theory.closed_form.mode_strength`` is checked against."""
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


def numpy_gradient_descent(weights: Any, sigma11: Any, sigma31: Any, tr33: float, lr: float, steps: int) -> np.ndarray:
    """A NumPy oracle of full-batch gradient descent on Eq. 13 (float64): E = tr33/2 -
    tr(W Sigma31^T) + tr(W Sigma11 W^T)/2 with W = W^n ... W^1, and the loss before each of
    ``steps`` steps (dE/dW^l = A^T (W Sigma11 - Sigma31) B^T, A the layers above, B below)."""
    ws = [np.asarray(w, np.float64) for w in weights]
    s11, s31 = np.asarray(sigma11, np.float64), np.asarray(sigma31, np.float64)
    losses = []
    for _ in range(steps):
        total = ws[0]
        for w in ws[1:]:
            total = w @ total
        losses.append(0.5 * tr33 - np.trace(total @ s31.T) + 0.5 * np.trace(total @ s11 @ total.T))
        g = total @ s11 - s31
        grads = []
        for l in range(len(ws)):
            a = np.eye(ws[l].shape[0])
            for w in ws[l + 1:]:
                a = w @ a
            b = np.eye(ws[0].shape[1])
            for w in ws[:l]:
                b = w @ b
            grads.append(a.T @ g @ b.T)
        ws = [w - lr * gr for w, gr in zip(ws, grads)]
    return np.asarray(losses)


def run_py(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python *args`` in the clone's root; asserts exit status 0 (showing the end of stderr)."""
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


# ----------------------------------------------------------------------------------------
# the same command line run in this process: no new interpreter, no new JAX import (each
# subprocess costs ~3-5 s of imports before the app starts, and recompiles what this process
# has already compiled). For tests that are about an app's work and files, not about the
# interpreter: Hydra's command-line parsing, composition, output folder and the apps' error
# handling (one line, exit status 2) all run as under `python -m experiments.<app>`.
# ----------------------------------------------------------------------------------------
class CliResult:
    """What ``run_cli`` saw: ``returncode`` (the exit status ``python -m`` would give), ``stdout``
    and ``stderr`` (an exception that escapes the app is written there as its traceback, as the
    interpreter would print it, with ``returncode`` 1)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(module: str, *args: str, env: dict | None = None, check: bool = True) -> CliResult:
    """``python -m <module> *args`` in this process (``module`` is e.g. ``"experiments.lr_sweep"``).

    ``env`` sets (a value) or removes (``None``) environment variables for the run. Everything the
    run changes in the process is put back afterwards: ``sys.argv``, the environment (the CLI sets
    ``HYDRA_FULL_ERROR``), the working directory, JAX's float64 switch (the apps set their
    precision), the root logger's handlers and level (Hydra configures logging per job) and Hydra's
    global state (so that ``initialize_config_dir`` and the apps' "outside Hydra" path work again).
    With ``check`` the exit status must be 0 (the end of stderr is shown otherwise).
    """
    import contextlib
    import importlib
    import io
    import logging
    import traceback

    import jax

    mod = importlib.import_module(module)
    saved_argv, saved_env, saved_cwd = sys.argv[:], dict(os.environ), os.getcwd()
    saved_x64 = bool(jax.config.jax_enable_x64)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    # Hydra configures logging with logging.config.dictConfig, which closes every handler the
    # logging module knows of, this process's own (pytest's capture) included: hide them from it
    saved_refs = logging._handlerList[:]  # type: ignore[attr-defined]
    del logging._handlerList[:]  # type: ignore[attr-defined]
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    try:
        for k, v in (env or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        sys.argv = [str(ROOT / (module.replace(".", "/") + ".py")), *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                r = mod.main()
                rc = r if isinstance(r, int) and not isinstance(r, bool) else 0
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - reported as the interpreter would: a traceback, status 1
                traceback.print_exc()
                rc = 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        jax.config.update("jax_enable_x64", saved_x64)
        for h in root.handlers[:]:
            if h not in saved_handlers:
                root.removeHandler(h)
                h.close()
        for h in saved_handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved_level)
        logging._handlerList[:] = saved_refs + [r for r in logging._handlerList if r not in saved_refs]  # type: ignore[attr-defined]
        _reset_hydra()
    res = CliResult(rc, out.getvalue(), err.getvalue())
    if check:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def _reset_hydra() -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
