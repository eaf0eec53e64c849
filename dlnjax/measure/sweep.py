"""Learning-time sweeps over learning rates for deep linear networks (Fig. 4 protocol).

One jitted, vmapped batch per depth over all learning rates, run in chunks of steps
until every member has crossed the threshold or diverged (or ``max_steps``). No I/O here:
progress is reported through an optional callback.
"""

from __future__ import annotations

import threading
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
    learning_time: np.ndarray  # (M,) first step with E < threshold; nan if never (or diverged, or stopped)
    diverged: np.ndarray  # (M,) bool
    steps_run: int
    record_steps: np.ndarray  # (T,)
    loss: np.ndarray  # (M, T) nan after divergence, and after the member left the batch
    loss0: np.ndarray  # (M,) error at step 0
    stopped: np.ndarray | None = None  # (M,) bool: stopped by the caller's rule before crossing or diverging
    member_steps: int = 0  # steps taken by all members together (padding included): the cost

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


_STACKED_STEPS: dict = {}
_STACKED_LOCK = threading.Lock()


def stacked_step(record_every: int, n_records: int, donate: bool, kernels: Callable = linear.StackedKernels) -> Callable:
    """The jitted batch step on :class:`dlnjax.networks.linear.Stacked` weights, ``step(states, lrs,
    threshold, n_hidden, stats)``, the members vmapped (the native kernels loop over them
    themselves): one function per (record_every, n_records, donate, kernels) for the whole process, with the statistics an argument (not a constant of the program), so
    every depth up to the stack's capacity, and every call of :func:`run_batch`, reuses one
    compilation per batch size. ``kernels``: an engine's
    :meth:`~dlnjax.networks.engines.base.FullWidthBase.stacked_kernels`."""
    key = (int(record_every), int(n_records), bool(donate), kernels)
    with _STACKED_LOCK:
        if key not in _STACKED_STEPS:
            def step(states, lrs, thr, n_hidden, stats):
                run = linear.make_stacked_runner(stats, record_every=key[0], n_records=key[1], kernels=kernels)
                return jax.vmap(run, in_axes=(0, 0, None, None))(states, lrs, thr, n_hidden)

            _STACKED_STEPS[key] = jax.jit(step, donate_argnums=(0,) if donate else ())
        return _STACKED_STEPS[key]


# identity layers a member may carry beyond its own depth in the stacked layout, in bytes (see
# stack_capacity): at 32 hidden units the stack of a 32-layer sweep pads a depth-3 member by 0.1 MB
STACK_PAD_BYTES = 32_000_000


def stack_capacity(n_hidden: int, capacity: int, layer_bytes: int, pad_bytes: int = STACK_PAD_BYTES) -> int:
    """The hidden-stack capacity a batch of ``n_hidden`` hidden layers runs with in a sweep whose
    deepest network has ``capacity``: that one (one program for every depth) while the padding
    costs at most ``pad_bytes`` per member, else the next power of two at or above ``n_hidden``
    (wide layers: at most twice a depth's own memory, one program per power of two)."""
    n_hidden, capacity = int(n_hidden), max(int(capacity), int(n_hidden), 1)
    if (capacity - n_hidden) * int(layer_bytes) <= pad_bytes:
        return capacity
    return min(capacity, 1 << max(n_hidden - 1, 0).bit_length())


class SnapshotMismatch(ValueError):
    """A snapshot handed to :func:`run_batch` as ``resume`` is not of this batch (other members,
    shapes or weight layout): nothing was run; start afresh or pass the matching snapshot."""


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
    stop: Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    shrink: bool = True,
    rotation: Any = None,
    capacity: int | None = None,
) -> BatchResult:
    """Train a batch of networks (``weights``: every array with a leading member axis M, one
    learning rate per member) in chunks of ``chunk_steps`` until every member has crossed
    ``threshold`` or diverged (or ``max_steps``). The batch is spread over all local devices
    (padded to a multiple of their count by repeating the last member; padding dropped).

    No wasted steps: a member that has crossed or diverged leaves the batch. Whenever the members
    still running fill at most half of it, they are gathered into a batch of the next power of two
    (one compilation per size, at most log2 M). A member's steps do not depend on its
    neighbours: its learning time is that of the full batch, and its records agree to rounding
    (XLA may order a batched product's sums differently for another batch size; tested against
    ``shrink=False``, which keeps every member in the batch to the end, as before). ``stop(done_steps,
    cross_step, diverged, running)`` (arrays over the M members: ``cross_step`` -1 until crossed)
    may return a mask of running members to stop now (a caller's rule that they can no longer
    matter); they are reported in ``stopped``, with no learning time.

    Checkpoints without I/O here: after every chunk ``on_chunk(snapshot)`` receives a dict of
    numpy arrays (the running members' state, which members they are, the outcomes of those
    that left, the records so far, the steps done) that the caller may save; passing such a
    snapshot back as ``resume`` continues exactly where it stopped.

    ``engine`` names the full-width engine of :data:`dlnjax.networks.engines.ENGINES` (None:
    ``$DLNJAX_ENGINE``, else ``'auto'``; see :func:`dlnjax.networks.linear.make_runner`).

    ``rotation`` (an :class:`dlnjax.networks.compressed.InputRotation` of these statistics' Sigma11):
    train with the inputs in Sigma11's eigenbasis (:func:`dlnjax.networks.compressed.rotated_full_width`),
    an exact change of variables that makes the step's ``W Sigma11`` elementwise; the results
    (learning times, loss curves) are those of the original network, to rounding.

    ``capacity`` (an int, the most hidden layers of any network of the sweep): when the hidden
    layers are square of one width, hold them as one stack (:class:`dlnjax.networks.linear.Stacked`)
    with the layer count a traced argument, so one compiled program per batch size serves every
    depth up to ``capacity + 2`` layers and every call (:func:`stacked_step`; wide layers get a
    stack per power of two instead, :func:`stack_capacity`). The engine's
    :meth:`~dlnjax.networks.engines.base.FullWidthBase.stacked_kernels` run it: the native kernels
    (``auto`` where they build, or ``native``; the same bits as on the tuple of layers). An engine
    without them (``xla``, ``pallas``, ``auto`` without the native kernels) runs the tuple of
    layers: XLA's loops over a stack cost more per step than the compilations they save, on a CPU
    and on a GPU (docs/benchmarks.md)."""
    dtype = stats.sigma11.dtype
    if rotation is not None:
        from dlnjax.networks import compressed

        stats, weights = compressed.rotated_full_width(stats, weights, rotation, dtype)
    weights = tuple(jnp.asarray(w, dtype) for w in weights)
    n = len(learning_rates)
    if any(w.shape[0] != n for w in weights):
        raise ValueError(f"every weight needs a leading axis of {n} members (one per learning rate)")
    # a copy: the chunks below consume (donate) the state, never the caller's weights
    states = jax.tree_util.tree_map(jnp.copy, jax.vmap(lambda w: linear.init_state(w, stats))(weights))
    loss0 = np.asarray(states.loss_ref, np.float64)
    lr_all = jnp.asarray(np.asarray(learning_rates, np.float64), dtype)
    engine = engines.resolve(engine)
    fused = engines.fused(engine, member_shapes(weights))
    member_bytes = sum(int(w[0].nbytes) for w in weights)
    layout, make = 0, None  # layout 0: the tuple of layers; k > 0: a hidden stack of capacity k
    if capacity is not None and linear.stackable(weights):
        try:
            make = engines.get(engine).stacked_kernels(member_shapes(weights))
        except (ValueError, RuntimeError):  # no stacked kernels on this engine: the tuple of layers (which
            make = None                      # raises, saying why, if the engine cannot run these at all)
    if make is not None:
        layout = stack_capacity(len(weights) - 2, capacity, int(weights[1][0].nbytes) if len(weights) > 2 else 0)
        stacked, n_hidden = linear.stack_layers(states.weights, layout)
        states = states._replace(weights=stacked)
        stacked_fn = stacked_step(record_every, chunk_steps // record_every, True, make)
        n_hid = jnp.asarray(n_hidden, jnp.int32)
        step_fn = lambda st, lr, thr: stacked_fn(st, lr, thr, n_hid, stats)  # noqa: E731
    else:
        runner = engines.make_runner(stats, record_every=record_every, n_records=chunk_steps // record_every, engine=engine)
        step_fn = batched(runner, member_bytes=member_bytes, fused=fused, donate=True)
    thr_arr = jnp.asarray(threshold, dtype)
    b = _Batch(n, lr_all, layout)
    if resume is not None:
        b.restore(resume, states)
    else:
        b.place(states, np.arange(n), devices.padded_size(n))
    n_rec = chunk_steps // record_every
    while b.done_steps < max_steps and b.keep.any():
        b.states, rec = step_fn(b.states, b.lrs, thr_arr)
        b.record(np.asarray(rec.loss), n_rec, record_every)
        b.done_steps += chunk_steps
        b.member_steps += chunk_steps * int(b.lrs.shape[0])
        b.retire(stop)
        if progress is not None:
            progress(b.done_steps, n - int(b.keep.sum()), n)
        if shrink and b.keep.any() and 2 * int(b.keep.sum()) <= b.lrs.shape[0]:
            b.compact()
        if on_chunk is not None:
            on_chunk(b.snapshot())
    return b.result(learning_rates, loss0)


class _Batch:
    """The running part of :func:`run_batch`'s batch. Its rows are the members ``active`` (padded
    rows repeat the last); ``keep`` marks the rows still running. A member's outcome is fixed
    when it leaves (crossed, diverged or stopped): ``cross``, ``div``, ``stopped`` over all M."""

    def __init__(self, n: int, lr_all: Array, layout: int = 0):
        self.n, self.lr_all, self.layout = n, lr_all, int(layout)
        self.cross = np.full(n, -1, np.int64)
        self.div = np.zeros(n, bool)
        self.stopped = np.zeros(n, bool)
        self.steps: list = []
        self.losses: list = []
        self.done_steps = self.member_steps = 0
        self.active = np.arange(n)
        self.keep = np.ones(n, bool)
        self.states = self.lrs = None

    def place(self, states: Any, active: np.ndarray, size: int) -> None:
        """Rows for the members ``active`` (``states``' rows), padded to ``size`` and sharded."""
        self.active = np.asarray(active, np.int64)
        self.keep = np.ones(len(self.active), bool)
        self.lrs, self.states = devices.shard_batch((devices.pad_batch(self.lr_all[self.active], size),
                                                     jax.tree_util.tree_map(lambda x: devices.pad_batch(x, size), states)))

    def record(self, loss: np.ndarray, n_rec: int, record_every: int) -> None:
        """One chunk's records: the loss of every member that ran it (nan for those that left)."""
        full = np.full((self.n, n_rec), np.nan, loss.dtype)
        rows = np.nonzero(self.keep)[0]
        full[self.active[rows]] = loss[rows]
        self.losses.append(full)
        self.steps.append(self.done_steps + np.arange(n_rec, dtype=np.int64) * record_every)

    def retire(self, stop: Callable | None) -> None:
        """The outcomes of the running rows; those that crossed, diverged or are stopped leave."""
        rows = np.nonzero(self.keep)[0]
        k = len(self.active)
        cross = np.asarray(self.states.cross_step)[:k][rows]
        div = np.asarray(self.states.diverged)[:k][rows]
        who = self.active[rows]
        self.cross[who], self.div[who] = cross, div
        left = (cross >= 0) | div
        if stop is not None:
            running = np.zeros(self.n, bool)
            running[who[~left]] = True
            halt = np.asarray(stop(self.done_steps, self.cross.copy(), self.div.copy(), running.copy()), bool) & running
            self.stopped |= halt
            left |= halt[who]
        self.keep[rows[left]] = False

    def compact(self) -> None:
        """Gather the running members into a batch of the next power of two (device multiple)."""
        rows = np.nonzero(self.keep)[0]
        size = devices.padded_size(1 << int(np.ceil(np.log2(len(rows)))))
        states = jax.tree_util.tree_map(lambda x: x[rows], self.states)
        self.place(states, self.active[rows], size)

    def result(self, learning_rates: Sequence[float], loss0: np.ndarray) -> BatchResult:
        cross = self.cross.astype(np.float64)
        return BatchResult(
            learning_rates=np.asarray(learning_rates, np.float64),
            learning_time=np.where((cross >= 0) & ~self.div, cross, np.nan),
            diverged=self.div.copy(),
            steps_run=self.done_steps,
            record_steps=np.concatenate(self.steps) if self.steps else np.zeros((0,), np.int64),
            loss=np.concatenate(self.losses, axis=1) if self.losses else np.zeros((self.n, 0)),
            loss0=loss0,
            stopped=self.stopped.copy(),
            member_steps=self.member_steps,
        )

    def snapshot(self) -> dict:
        """The checkpoint :func:`run_batch` hands to ``on_chunk``."""
        snap = {f"state_{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(self.states))}
        snap.update(steps=np.stack(self.steps), losses=np.stack(self.losses), done_steps=np.asarray(self.done_steps),
                    active=self.active.copy(), keep=self.keep.copy(), cross=self.cross.copy(), div=self.div.copy(),
                    stopped=self.stopped.copy(), layout=np.asarray(self.layout),
                    member_steps=np.asarray(self.member_steps))
        return snap

    def restore(self, resume: dict, fresh: Any) -> None:
        """Continue from a :meth:`snapshot` of a batch of the same members."""
        leaves, treedef = jax.tree_util.tree_flatten(fresh)
        saved = [resume.get(f"state_{i}") for i in range(len(leaves))]
        if ("active" not in resume or len(resume["cross"]) != self.n or len(resume["steps"]) != len(resume["losses"])
                or int(resume.get("layout", 0)) != self.layout
                or any(a is None or np.shape(a)[1:] != np.shape(b)[1:] for a, b in zip(saved, leaves))):
            raise SnapshotMismatch("run_batch: the snapshot to resume from does not match this batch")
        self.active, keep = np.asarray(resume["active"], np.int64), np.asarray(resume["keep"], bool)
        states = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a, b.dtype) for a, b in zip(saved, leaves)])
        self.place(jax.tree_util.tree_map(lambda x: x[: len(self.active)], states), self.active, int(np.shape(saved[0])[0]))
        self.keep = keep
        self.steps, self.losses = list(resume["steps"]), list(resume["losses"])
        self.done_steps, self.member_steps = int(resume["done_steps"]), int(resume["member_steps"])
        self.cross, self.div = np.asarray(resume["cross"], np.int64), np.asarray(resume["div"], bool)
        self.stopped = np.asarray(resume["stopped"], bool)


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
