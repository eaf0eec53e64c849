"""What an engine is: the written protocol every training engine of the library follows.

An engine turns training statistics and a start into a *state* and runs that state forward in
jitted chunks of steps with a *runner*:

    state = engine.init_state(start, stats, ...)
    run = engine.make_runner(stats, record_every=..., ...)
    ... = run(state, lr, threshold, ...)

``lr`` and ``threshold`` are traced scalars (vmap a runner over states and rates for a batch);
every step checks the loss against ``threshold`` (first crossing kept exactly) and against
divergence (the member stops). Two families share this protocol:

- **full width** (:class:`FullWidthEngine`; the ``engine`` setting, registered in
  :data:`dlnjax.networks.engines.ENGINES`: ``xla``, ``native``, ``pallas`` and the rule ``auto``):
  start = the weights ``(W^1, ..., W^n)``, state = :class:`dlnjax.networks.linear.TrainState`,
  ``run(state, lr, threshold) -> (state, Records)`` for a fixed number of steps
  (:func:`dlnjax.networks.linear.make_runner`). They differ only in how a step is computed: the engine's
  :meth:`FullWidthEngine.kernels` are the fused kernels a step runs on (``None``: XLA ops);
  all compute the same step to rounding.
- **compressed** (:data:`dlnjax.networks.engines.compressed.COMPRESSED`): start = the cores of a rank-r
  aligned start (:func:`dlnjax.networks.compressed.decoupled_cores` / ``cores_from_weights``), state =
  cores + step counters + records (:class:`dlnjax.networks.compressed.MemberState`; the rotated
  statistics ``CStats`` and the hidden bases stay outside, fixed), ``run(state, lr, threshold,
  limit) -> state`` until the member crosses, diverges or reaches ``limit`` steps
  (:func:`dlnjax.networks.compressed.make_member_runner`). It is not an ``engine`` value: whether to
  compress is the apps' separate ``compress`` switch (only aligned starts qualify, see
  :attr:`dlnjax.init.registry.Init.aligned`), and with it ``engine`` still picks XLA or native kernels.

To add a full-width engine: a module in this package with a class on :class:`FullWidthBase`
(its ``name``, ``kernels`` and ``unavailable``) and one entry in :data:`dlnjax.networks.engines.ENGINES`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

Array = Any
Runner = Callable[..., Any]  # run(state, lr, threshold, *more) -> state or (state, records)


@runtime_checkable
class Engine(Protocol):
    """A training engine at the level of runner and state (see the module docstring)."""

    name: str

    def unavailable(self) -> tuple[type[Exception], str] | None:
        """Why this engine cannot run on this machine whatever the shapes: the exception to raise
        and a phrase that follows the engine's name; None when it can."""
        ...

    def init_state(self, start: Any, stats: Any, **options: Any) -> Any:
        """The state of one member at step 0."""
        ...

    def make_runner(self, stats: Any, *, record_every: int, **options: Any) -> Runner:
        """``run(state, lr, threshold, ...)``: one chunk of steps (jit and vmap it)."""
        ...


@runtime_checkable
class FullWidthEngine(Engine, Protocol):
    """An engine on the full weights: which kernels compute a step on these weights."""

    def kernels(self, weights: Sequence[Array]) -> Any:
        """The module whose fused ``top_down`` / ``bottom_up`` run a step on these (per-member)
        weights, or None for the XLA path; raises, saying why, when the engine cannot run them."""
        ...


class FullWidthBase:
    """Shared by the full-width engines: state and runner of :mod:`dlnjax.networks.linear`, with this
    engine's kernels."""

    name: str = ""

    def unavailable(self) -> tuple[type[Exception], str] | None:
        return None

    def kernels(self, weights: Sequence[Array]) -> Any:
        raise NotImplementedError

    def stacked_kernels(self, weights: Sequence[Array]) -> Callable[[Array], Any]:
        """For the stacked layout (:class:`dlnjax.networks.linear.Stacked`, one compilation for every
        depth) of networks with these (per-member) layers: ``make(n_hidden)``, the object whose
        ``product`` / ``top_down`` / ``bottom_up`` run a step; raises ValueError, saying why, when
        this engine has none (the sweeps then keep a program per depth). Only the native engine has
        them: XLA's loops over a stack (:class:`dlnjax.networks.linear.StackedKernels`) give the same
        numbers but cost 1.1-2.7x the unrolled step per step on a CPU and 3-15x on an H200
        (docs/benchmarks.md), more than the compilations they save."""
        raise ValueError(f"engine={self.name!r} has no kernels for the stacked layout (only native has)")

    def init_state(self, start: Sequence[Array], stats: Any, **options: Any) -> Any:
        from dlnjax.networks import linear

        return linear.init_state(start, stats)

    def make_runner(self, stats: Any, *, record_every: int, **options: Any) -> Runner:
        """:func:`dlnjax.networks.linear.make_runner` with this engine's kernels (``n_records``, ``u``, ``v``,
        ``diverge_factor`` as there)."""
        from dlnjax.networks import linear

        return linear.make_runner(stats, record_every=record_every, kernels=self.kernels, **options)

    def member(self, stats: Any, weights: Sequence[Array], threshold: float, *, record_every: int, chunk_steps: int,
               u: Array | None = None, v: Array | None = None, diverge_factor: float = 1e4,
               sharpness_iters: int = 60) -> Any:
        """This engine's :class:`~dlnjax.networks.outcome.Member` on the full-width network from
        ``weights``: steps in jitted chunks of ``chunk_steps``; a crossing or divergence after
        ``limit`` (inside the last chunk) counts as not reached, so the outcome is the same as a
        run stopped at ``limit``. Loss spikes are not detected at full width (``spikes`` is
        None). Its ``sharpness`` is :func:`dlnjax.networks.curvature.full_width_top_eigenpair`
        from the fixed start :func:`~dlnjax.networks.curvature.random_start`."""
        import jax
        import jax.numpy as jnp
        import numpy as np

        from dlnjax.networks import curvature, linear
        from dlnjax.networks.outcome import Member, MemberOutcome

        dtype = stats.sigma11.dtype
        runner = jax.jit(self.make_runner(stats, record_every=record_every, n_records=chunk_steps // record_every,
                                          u=u, v=v, diverge_factor=diverge_factor))
        w0 = tuple(jnp.asarray(w, dtype) for w in weights)
        thr = jnp.asarray(threshold, dtype)
        power = curvature.full_width_top_eigenpair(stats, iters=sharpness_iters)

        def run(lr: float, limit: int, resume: Any = None) -> MemberOutcome:
            if resume is None or resume.state is None:  # a replayed outcome keeps no state: run again
                st, steps, losses, modes = linear.init_state(w0, stats), [], [], []
            else:
                st, steps, losses, modes = resume.state
                steps, losses, modes = list(steps), list(losses), list(modes)
            lr_a = jnp.asarray(lr, dtype)
            while not (int(st.cross_step) >= 0 or bool(st.diverged) or int(st.step) >= limit):
                st, rec = runner(st, lr_a, thr)
                steps.append(np.asarray(rec.step))
                losses.append(np.asarray(rec.loss))
                modes.append(np.asarray(rec.modes))
            cross = int(st.cross_step)
            div = int(st.diverge_step) if bool(st.diverged) else -1
            cross = cross if 0 <= cross < limit else -1
            div = div if 0 <= div < limit else -1
            taken = cross if cross >= 0 else (div if div >= 0 else min(int(st.step), limit))
            rs = np.concatenate(steps) if steps else np.zeros((0,), np.int64)
            ls = np.concatenate(losses) if losses else np.zeros((0,))
            ms = np.concatenate(modes) if modes else np.zeros((0, 0))
            return MemberOutcome(float(lr), int(limit), int(taken), cross, div, None, None, None, rs, ls, ms,
                                 state=(st, steps, losses, modes))

        def sharpness(o: MemberOutcome, v0: Any = None) -> tuple[float, Any]:
            ws = tuple(o.state[0].weights)
            lam, vec = power(ws, curvature.random_start(ws))
            return float(lam), vec

        return Member(run, sharpness)

    def __repr__(self) -> str:
        return f"<engine {self.name}>"


def shapes(weights: Sequence[Array]) -> str:
    return str([tuple(w.shape) for w in weights])


def fused_kernels_for(engine: Engine, module: Any, weights: Sequence[Array]) -> Any:
    """``module`` after the checks every fused engine makes: shapes the kernels take, then the
    machine (``engine.unavailable()``)."""
    from dlnjax.networks.kernels import native

    if not native.fused_shapes_ok(weights):
        raise ValueError(
            f"engine={engine.name!r} needs float32/float64 weights, at least two layers and 1..16 output units "
            f"(no wider than the input); got shapes {shapes(weights)}"
        )
    why = engine.unavailable()
    if why is not None:
        raise why[0](f"engine={engine.name!r} {why[1]}")
    return module
