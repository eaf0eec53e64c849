"""Each benchmark runs once at a tiny size so that it cannot rot (no timing assertions).

Main tier: the benchmark's command line in this process (``helpers.run_cli``; fig3 still runs
its end-to-end app in a new interpreter); slow tier: ``python -m benchmarks.<name>`` in a new
interpreter, as a user runs it."""

import json
import operator
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
# the slow ones (8.9-65 s each on 2 cores) run in the slow tier only
BENCHMARKS = [pytest.param("linear_step", "linear_step_tiny.json", marks=pytest.mark.slow),
              pytest.param("fig3", "fig3_tiny.json", marks=pytest.mark.slow), ("baselines", "baselines_tiny.json"),
              pytest.param("scaling", "scaling_tiny.json", marks=pytest.mark.slow),
              pytest.param("apps", "apps_tiny.json", marks=pytest.mark.slow),
              pytest.param("flops", "compressed_flops_tiny.json", marks=pytest.mark.slow)]
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


class _Counted:
    """A float that counts the arithmetic done on it (one per +, -, *, /; class-wide counter)."""

    n = 0
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = float(v)

    def _op(self, other, f, swap=False):
        _Counted.n += 1
        o = other.v if isinstance(other, _Counted) else float(other)
        return _Counted(f(o, self.v) if swap else f(self.v, o))

    def __add__(self, o): return self._op(o, operator.add)  # noqa: E704
    def __radd__(self, o): return self._op(o, operator.add, True)  # noqa: E704
    def __sub__(self, o): return self._op(o, operator.sub)  # noqa: E704
    def __rsub__(self, o): return self._op(o, operator.sub, True)  # noqa: E704
    def __mul__(self, o): return self._op(o, operator.mul)  # noqa: E704
    def __rmul__(self, o): return self._op(o, operator.mul, True)  # noqa: E704
    def __truediv__(self, o): return self._op(o, operator.truediv)  # noqa: E704


def _total(terms):
    """A sum of K terms: K - 1 adds."""
    s = terms[0]
    for t in terms[1:]:
        s = s + t
    return s


def _mm(a, b):
    return [[_total([a[i][k] * b[k][j] for k in range(len(b))]) for j in range(len(b[0]))] for i in range(len(a))]


def _t(a):
    return [list(col) for col in zip(*a)]


def _counted_step(first, hidden, last, lam, s31, tr33, lr, loss_prev, u, v):
    """One step of the compressed engine written from its maths (dlnjax/networks/compressed.py's
    docstring) on scalars that count their operations, plus the spike check and one record's
    mode readout. Returns the loss, the new cores and the FLOP of the step and of the record."""
    _Counted.n = 0
    L = len(hidden)
    s, buf = last, [None] * L
    for j in reversed(range(L)):
        buf[j] = s
        s = _mm(s, hidden[j])
    w = _mm(s, first)
    no, n = len(w), len(w[0])
    e = 0.5 * tr33 - _total([w[o][i] * s31[o][i] for o in range(no) for i in range(n)]) \
        + 0.5 * _total([w[o][i] * w[o][i] * lam[i] for o in range(no) for i in range(n)])
    g = [[w[o][i] * lam[i] - s31[o][i] for i in range(n)] for o in range(no)]
    gf = _mm(_t(s), g)
    new_first = [[first[k][i] - lr * gf[k][i] for i in range(n)] for k in range(len(first))]
    q = _mm(g, _t(first))
    e / loss_prev - 1.0  # the spike check's relative rise
    new_hidden = []
    for j in range(L):
        gh = _mm(_t(buf[j]), q)
        new_hidden.append([[hidden[j][a][c] - lr * gh[a][c] for c in range(len(gh[0]))] for a in range(len(gh))])
        q = _mm(q, _t(hidden[j]))
    new_last = [[last[o][k] - lr * q[o][k] for k in range(len(q[0]))] for o in range(no)]
    step_n = _Counted.n
    _Counted.n = 0
    x = _mm(w, v)  # (no, nk)
    [_total([u[o][m] * x[o][m] for o in range(no)]) for m in range(len(u[0]))]
    return e.v, new_first, new_hidden, new_last, step_n, _Counted.n


@pytest.mark.parametrize("r,n,no,L,nk", [(2, 3, 2, 0, 2), (2, 3, 2, 1, 1), (2, 3, 3, 2, 2), (3, 5, 2, 2, 3)])
def test_flop_formula_counts_the_compressed_step(r, n, no, L, nk):
    """benchmarks.flops' hand-derived FLOP count of compressed_run.cc's step equals the operations
    counted on an independent scalar implementation of the same step, which gives the engine's
    numbers (dlnjax.networks.compressed.step); nothing is timed."""
    import jax.numpy as jnp

    from benchmarks import flops
    from dlnjax.networks import compressed

    rng = np.random.default_rng(r * 100 + n * 10 + L)
    first, last = rng.standard_normal((r, n)), rng.standard_normal((no, r))
    hidden = rng.standard_normal((L, r, r))
    lam, s31, tr33 = rng.uniform(0.5, 2.0, n), rng.standard_normal((no, n)), 7.0
    u, v = rng.standard_normal((no, nk)), rng.standard_normal((n, nk))
    lr = 0.01

    def counted(a):
        return [[_Counted(x) for x in row] for row in a]

    e, new_first, new_hidden, new_last, step_n, record_n = _counted_step(
        counted(first), [counted(h) for h in hidden], counted(last), [_Counted(x) for x in lam], counted(s31),
        _Counted(tr33), lr, 3.0, counted(u), counted(v))
    # the counted step is the engine's step
    l_cap = max(L, 1)
    hid = np.concatenate([hidden, np.broadcast_to(np.eye(r), (l_cap - L, r, r))]) if L < l_cap else hidden
    cores = compressed.Cores(jnp.asarray(first), jnp.asarray(hid), jnp.asarray(last), jnp.zeros((r, 0)), jnp.asarray(L, jnp.int32))
    cs = compressed.CStats(jnp.asarray(lam), jnp.asarray(s31), jnp.asarray(tr33))
    new, e_ref, _ = compressed.step(cores, cs, jnp.asarray(lr), jnp.zeros((l_cap, no, r)))
    vals = lambda a: np.array([[x.v for x in row] for row in a])  # noqa: E731
    np.testing.assert_allclose(e, float(e_ref), rtol=1e-12)
    np.testing.assert_allclose(vals(new_first), np.asarray(new.first), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vals(new_last), np.asarray(new.last), rtol=1e-12, atol=1e-12)
    for j in range(L):
        np.testing.assert_allclose(vals(new_hidden[j]), np.asarray(new.hidden[j]), rtol=1e-12, atol=1e-12)
    # the formula against the count
    assert flops.step_flops(r, n, no, L) == step_n
    assert flops.record_flops(n, no, nk) == record_n
    assert flops.flops_per_member_step(r, n, no, L, nk, record_every=4) == step_n + record_n / 4
    # every lane the vector units execute includes every useful operation
    assert flops.lane_flops_per_member_step(r, n, no, L, nk, record_every=4) >= step_n + record_n / 4
