"""Learning-time sweeps over learning rates for deep linear networks (Fig. 4 protocol).

One jitted, vmapped batch per depth over all learning rates, run in chunks of steps
until every member has crossed the threshold or diverged (or ``max_steps``). No I/O here:
progress is reported through an optional callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.measure import devices
from dlnjax.networks import engines, linear
from dlnjax.theory import closed_form as theory
from dlnjax.data.statistics import Stats, Task

Array = Any


def widths_for(n_in: int, n_out: int, depth: int, hidden: int) -> tuple[int, ...]:
    return (n_in,) + (hidden,) * (depth - 2) + (n_out,)


def theory_error_curve(task: Task, t: np.ndarray, lr: float, depth: int, u0: float, rank: int) -> np.ndarray:
    """Training error predicted by the decoupled theory (Eq. 12/15 per mode) at times ``t`` (steps).

    ``E(t) = E_rest + sum_a d_a/2 (s_eff_a - u_a(t))^2`` with ``u_a`` from
    :func:`theory.mode_strength` (``tau_a = 1 / (lr d_a)``) for the ``rank`` strongest modes;
    weaker modes keep their full error. Exact for whitened inputs; for raw or centred inputs
    it is the diagonal approximation of :meth:`Task.effective_modes`.
    """
    s_eff, d = task.effective_modes()
    k = min(len(s_eff), rank)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    tt = jnp.asarray(t, dtype)[:, None]
    u = theory.mode_strength(tt, jnp.asarray(s_eff[:k], dtype), u0, 1.0 / (lr * jnp.asarray(d[:k], dtype)), depth)
    u = np.asarray(u, np.float64)
    e_rest = 0.5 * float(task.stats.tr33) - 0.5 * float(np.sum(s_eff * s_eff * d))
    mode_err = 0.5 * np.sum(d[:k] * (s_eff[:k] - u) ** 2, axis=1) + 0.5 * float(np.sum(d[k:] * s_eff[k:] ** 2))
    return e_rest + mode_err


def theory_learning_time(task: Task, lr: float, depth: int, u0: float, rank: int, eps: float, t_max: float) -> float:
    """Steps for the theory's error (:func:`theory_error_curve`) to go a fraction 1 - eps of the
    way from its start to its own floor (nan if not within ``t_max``).

    Using the theory's own floor makes the prediction comparable with the relative
    threshold of the simulation; for whitened inputs both floors coincide.
    """
    t = np.linspace(0.0, t_max, 20001)
    e = theory_error_curve(task, t, lr, depth, u0, rank)
    e_floor = theory_error_curve(task, np.array([1e12]), lr, depth, u0, rank)[0]
    thr = e_floor + eps * (e[0] - e_floor)
    return first_crossing(t, e, thr)


def first_crossing(t: np.ndarray, e: np.ndarray, thr: float) -> float:
    below = np.nonzero(e < thr)[0]
    if len(below) == 0:
        return float("nan")
    i = below[0]
    if i == 0:
        return float(t[0])
    # linear interpolation between the two bracketing grid points
    f = (e[i - 1] - thr) / (e[i - 1] - e[i])
    return float(t[i - 1] + f * (t[i] - t[i - 1]))


@dataclass
class BatchResult:
    """A vmapped batch of networks trained to a threshold (one member per rate / seed / init)."""

    learning_rates: np.ndarray  # (M,)
    learning_time: np.ndarray  # (M,) first step with E < threshold; nan if never (or diverged)
    diverged: np.ndarray  # (M,) bool
    steps_run: int
    record_steps: np.ndarray  # (T,)
    loss: np.ndarray  # (M, T) nan after divergence
    loss0: np.ndarray  # (M,) error at step 0


# on a CPU, networks with at least this many bytes of weights run one after another (see batched)
MAP_MIN_BYTES_CPU = 8_000_000


def batched(
    runner: Callable, mode: str = "auto", member_bytes: int | None = None, fused: bool = False, donate: bool = False
) -> Callable:
    """``jit`` of ``runner(state, lr, threshold)`` over a leading member axis of state and lr.

    ``mode='vmap'`` batches every matrix product over the members (best on accelerators and for
    small networks); ``'map'`` runs the members one after another inside one compiled loop
    (``lax.map``), which on a CPU keeps each large network's products as plain matrix products:
    1.4x faster per network-step at 1000 hidden units, 1.2-2.3x slower below ~3 MB of weights
    (measured on 2 cores). ``'auto'``: vmap when the runner's steps run on the fused native kernels
    (``fused``: they loop over the members themselves, in place, and a ``lax.map`` would only add
    copies); otherwise map on a CPU when a member's weights take at least ``MAP_MIN_BYTES_CPU``
    bytes, else vmap. All give the same numbers up to rounding (tested). ``donate``: the state
    passed in is consumed (its buffers are reused for the result: peak memory ~1x the weights
    instead of 2x); the caller must not touch it afterwards.
    """
    jit = (lambda f: jax.jit(f, donate_argnums=(0,))) if donate else jax.jit
    if mode == "auto":
        big = member_bytes is not None and member_bytes >= MAP_MIN_BYTES_CPU
        mode = "map" if (jax.default_backend() == "cpu" and big and not fused) else "vmap"
    if mode == "vmap":
        return jit(jax.vmap(runner, in_axes=(0, 0, None)))
    if mode == "map":
        return jit(lambda st, lr, thr: jax.lax.map(lambda a: runner(a[0], a[1], thr), (st, lr)))
    raise ValueError(f"mode must be 'auto', 'vmap' or 'map', got {mode!r}")


def member_shapes(weights: Sequence[Array]) -> list:
    """Shapes and dtypes of one member of a batch of weights (leading member axis dropped)."""
    return [jax.ShapeDtypeStruct(tuple(w.shape[1:]), w.dtype) for w in weights]


def run_batch(
    stats: Stats,
    weights: Sequence[Array],
    learning_rates: Sequence[float],
    *,
    threshold: float,
    max_steps: int,
    chunk_steps: int,
    record_every: int,
    progress: Callable[[int, int, int], None] | None = None,
    on_chunk: Callable[[dict], None] | None = None,
    resume: dict | None = None,
    engine: str | None = None,
) -> BatchResult:
    """Train a batch of networks (``weights``: every array with a leading member axis M, one
    learning rate per member) in chunks of ``chunk_steps`` until every member has crossed
    ``threshold`` or diverged (or ``max_steps``). The batch is spread over all local devices
    (padded to a multiple of their count by repeating the last member; padding dropped).

    Checkpoints without I/O here: after every chunk ``on_chunk(snapshot)`` receives a dict of
    numpy arrays (the whole training state, the records so far, the steps done) that the caller
    may save; passing such a snapshot back as ``resume`` continues exactly where it stopped.

    ``engine`` names the full-width engine of :data:`dlnjax.networks.engines.ENGINES` (None:
    ``$DLNJAX_ENGINE``, else ``'auto'``; see :func:`dlnjax.networks.linear.make_runner`)."""
    dtype = stats.sigma11.dtype
    weights = tuple(jnp.asarray(w, dtype) for w in weights)
    n = len(learning_rates)
    if any(w.shape[0] != n for w in weights):
        raise ValueError(f"every weight needs a leading axis of {n} members (one per learning rate)")
    # a copy: the chunks below consume (donate) the state, never the caller's weights
    states = jax.tree_util.tree_map(jnp.copy, jax.vmap(lambda w: linear.init_state(w, stats))(weights))
    loss0 = np.asarray(states.loss_ref, np.float64)
    size = devices.padded_size(n)
    lrs = devices.pad_batch(jnp.asarray(np.asarray(learning_rates, np.float64), dtype), size)
    states = jax.tree_util.tree_map(lambda x: devices.pad_batch(x, size), states)
    lrs, states = devices.shard_batch((lrs, states))
    engine = engines.resolve(engine)
    runner = engines.make_runner(stats, record_every=record_every, n_records=chunk_steps // record_every, engine=engine)
    fused = engines.fused(engine, member_shapes(weights))
    step_fn = batched(runner, member_bytes=sum(int(w[0].nbytes) for w in weights), fused=fused, donate=True)
    thr_arr = jnp.asarray(threshold, dtype)
    steps, losses, done_steps = [], [], 0
    if resume is not None:
        states, steps, losses, done_steps = _restore(resume, states)
    while done_steps < max_steps:
        if done_steps > 0 and _finished(states, n).all():
            break
        states, rec = step_fn(states, lrs, thr_arr)
        steps.append(np.asarray(rec.step[0]))
        losses.append(np.asarray(rec.loss)[:n])
        done_steps += chunk_steps
        finished = _finished(states, n)
        if progress is not None:
            progress(done_steps, int(np.sum(finished)), n)
        if on_chunk is not None:
            on_chunk(_snapshot(states, steps, losses, done_steps))
        if finished.all():
            break
    cross = np.asarray(states.cross_step)[:n].astype(np.float64)
    diverged = np.asarray(states.diverged)[:n]
    return BatchResult(
        learning_rates=np.asarray(learning_rates, np.float64),
        learning_time=np.where((cross >= 0) & ~diverged, cross, np.nan),
        diverged=diverged,
        steps_run=done_steps,
        record_steps=np.concatenate(steps),
        loss=np.concatenate(losses, axis=1),
        loss0=loss0,
    )


def _finished(states: Any, n: int) -> np.ndarray:
    """Which of the first ``n`` members have crossed or diverged."""
    return (np.asarray(states.cross_step)[:n] >= 0) | np.asarray(states.diverged)[:n]


def _snapshot(states: Any, steps: list, losses: list, done_steps: int) -> dict:
    """The checkpoint :func:`run_batch` hands to ``on_chunk``: the whole state as numpy arrays,
    the records so far and the steps done."""
    snap = {f"state_{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(states))}
    snap.update(steps=np.stack(steps), losses=np.stack(losses), done_steps=np.asarray(done_steps))
    return snap


def _restore(resume: dict, states: Any) -> tuple[Any, list, list, int]:
    """``(states, steps, losses, done_steps)`` from a :func:`_snapshot` of this very batch."""
    leaves, treedef = jax.tree_util.tree_flatten(states)
    saved = [resume[f"state_{i}"] for i in range(len(leaves))]
    if any(np.shape(a) != np.shape(b) for a, b in zip(saved, leaves)) or len(resume["steps"]) != len(resume["losses"]):
        raise ValueError("run_batch: the snapshot to resume from does not match this batch")
    states = devices.shard_batch(jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a, b.dtype) for a, b in zip(saved, leaves)]))
    return states, list(resume["steps"]), list(resume["losses"]), int(resume["done_steps"])


def theory_t_ct(task: Task, depth: int, u0: float, rank: int, eps: float, n_grid: int = 4000) -> float:
    """Eq. 15's continuous-time learning time T (so that ``t(lr) = T / lr`` steps): the time, in
    units of ``1/lr``, for the theory's error (:func:`theory_error_curve`, diagonal approximation
    ``s_eff = s/d`` on non-white inputs, exact on whitened ones) to go a fraction ``1 - eps`` of
    the way from its start to its floor. Evaluated from the closed form ``t(u)`` of every mode
    (:func:`dlnjax.theory.closed_form.learning_time`) on a grid of strengths and inverted by interpolation:
    no root finding, no compilation per call. nan when no mode can learn."""
    s_eff, d = task.effective_modes()
    k = min(len(s_eff), int(rank))
    if k == 0:
        return float("nan")
    s_eff, dd = np.asarray(s_eff[:k], np.float64), np.asarray(d[:k], np.float64)
    e_rest = 0.5 * float(task.stats.tr33) - 0.5 * float(np.sum(s_eff * s_eff * dd))
    e_uncarried = 0.5 * float(np.sum(np.asarray(d[k:]) * np.asarray(task.effective_modes()[0][k:]) ** 2))
    e0 = e_rest + e_uncarried + 0.5 * float(np.sum(dd * (s_eff - u0) ** 2))
    e_floor = e_rest + e_uncarried
    thr = e_floor + eps * (e0 - e_floor)
    # per mode: strengths from u0 to s_eff (1 - 1e-12) and their times (tau = 1/d at lr = 1), all
    # modes in one call of the closed form (a mode that starts at or above s_eff never moves)
    frac = 1.0 - np.geomspace(1.0 - u0 / s_eff.max(), 1e-12, n_grid)  # u/s from ~u0/s to 1
    learns = s_eff > u0
    uu = np.maximum(frac[None, :] * s_eff[:, None], u0 * (1.0 + 1e-12))
    tt = np.asarray(theory.learning_time(np.where(learns, s_eff, 2.0 * u0)[:, None], u0, uu,
                                         (1.0 / dd)[:, None], depth), np.float64)
    times, strengths = [], []
    for a in range(k):
        if not learns[a]:
            times.append(np.array([0.0, np.inf]))
            strengths.append(np.array([u0, u0]))
            continue
        order = np.argsort(tt[a])
        times.append(np.concatenate([[0.0], tt[a][order]]))
        strengths.append(np.concatenate([[u0], uu[a][order]]))
    t_all = np.unique(np.concatenate([t[np.isfinite(t)] for t in times]))
    err = np.full(t_all.shape, e_rest + e_uncarried)
    for a in range(k):
        ua = np.interp(t_all, times[a], strengths[a])
        err = err + 0.5 * dd[a] * (s_eff[a] - ua) ** 2
    return first_crossing(t_all, err, thr)
