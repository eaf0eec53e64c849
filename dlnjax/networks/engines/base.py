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
(its ``name``, ``kernels`` and ``problem``) and one entry in :data:`dlnjax.networks.engines.ENGINES`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

Array = Any
Runner = Callable[..., Any]  # run(state, lr, threshold, *more) -> state or (state, records)


@runtime_checkable
class Engine(Protocol):
    """A training engine at the level of runner and state (see the module docstring)."""

    name: str

    def problem(self) -> tuple[type[Exception], str] | None:
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

    def problem(self) -> tuple[type[Exception], str] | None:
        return None

    def kernels(self, weights: Sequence[Array]) -> Any:
        raise NotImplementedError

    def init_state(self, start: Sequence[Array], stats: Any, **options: Any) -> Any:
        from dlnjax.networks import linear

        return linear.init_state(start, stats)

    def make_runner(self, stats: Any, *, record_every: int, **options: Any) -> Runner:
        """:func:`dlnjax.networks.linear.make_runner` with this engine's kernels (``n_records``, ``u``, ``v``,
        ``diverge_factor`` as there)."""
        from dlnjax.networks import linear

        return linear.make_runner(stats, record_every=record_every, kernels=self.kernels, **options)

    def __repr__(self) -> str:
        return f"<engine {self.name}>"


def shapes(weights: Sequence[Array]) -> str:
    return str([tuple(w.shape) for w in weights])


def fused_kernels_for(engine: Engine, module: Any, weights: Sequence[Array]) -> Any:
    """``module`` after the checks every fused engine makes: shapes the kernels take, then the
    machine (``engine.problem()``)."""
    from dlnjax.networks.kernels import native

    if not native.fused_shapes_ok(weights):
        raise ValueError(
            f"engine={engine.name!r} needs float32/float64 weights, at least two layers and 1..16 output units "
            f"(no wider than the input); got shapes {shapes(weights)}"
        )
    problem = engine.problem()
    if problem is not None:
        raise problem[0](f"engine={engine.name!r} {problem[1]}")
    return module
