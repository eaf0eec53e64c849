"""The compressed engine (:mod:`dlnjax.networks.compressed`) seen through the :class:`~dlnjax.networks.engines.base.Engine`
protocol: start = cores (:class:`dlnjax.networks.compressed.Cores`), stats = the rotated statistics
(:class:`dlnjax.networks.compressed.CStats`), state = :class:`dlnjax.networks.compressed.MemberState`, and
``run(state, lr, threshold, limit) -> state``.

It is kept out of :data:`dlnjax.networks.engines.ENGINES` on purpose: the apps decide compression with
their own ``compress`` switch (only rank-r aligned starts can be compressed exactly, see
:attr:`dlnjax.init.registry.Init.aligned`), and ``engine`` keeps naming the kernels, which the
compressed engine has too (XLA, or native ones in :mod:`dlnjax.networks.kernels.native.compressed`).
"""

from __future__ import annotations

from typing import Any


class Compressed:
    name = "compressed"

    def unavailable(self) -> tuple[type[Exception], str] | None:
        return None  # plain XLA operations: runs anywhere

    def init_state(self, start: Any, stats: Any, *, n_records: int, n_modes: int = 0, **options: Any) -> Any:
        """:func:`dlnjax.networks.compressed.init_member` (``start``: the cores, ``stats``: the ``CStats``)."""
        from dlnjax.networks import compressed

        return compressed.init_member(start, stats, n_records, n_modes)

    def kernels_for(self, engine: str) -> str:
        """Which kernels run the compressed network for the config's ``engine``: ``'native'``
        (:mod:`dlnjax.networks.kernels.native.compressed`) for ``auto`` or ``native`` on a CPU where they are built,
        else ``'xla'`` (``xla``, ``pallas``, a GPU, or no compiler: the XLA loop is exact too)."""
        import jax

        if engine not in ("auto", "native") or jax.default_backend() != "cpu":
            return "xla"
        try:
            from dlnjax.networks.kernels.native import compressed as ncomp
        except ImportError:
            return "xla"
        return "native" if ncomp.available() else "xla"

    def make_runner(self, stats: Any, *, record_every: int, kernels: str = "xla", **options: Any) -> Any:
        """:func:`dlnjax.networks.compressed.make_member_runner`, or its native twin when ``kernels='native'``
        (:meth:`kernels_for`); ``last_trained``, ``readout``, ``diverge_factor``, ``spike_rtol`` as there."""
        if kernels == "native":
            from dlnjax.networks.kernels.native import compressed as ncomp

            return ncomp.make_member_runner(stats, record_every=record_every, **options)
        from dlnjax.networks import compressed

        return compressed.make_member_runner(stats, record_every=record_every, **options)

    def member(self, cs: Any, cores: Any, threshold: float, *, record_every: int, max_steps: int,
               readout: Any = None, last_trained: bool = True, runner: Any = None, kernels: str = "xla",
               **options: Any) -> Any:
        """This engine's :class:`~dlnjax.networks.outcome.Member` from ``cores``
        (:func:`dlnjax.networks.compressed.member_fn`). ``runner``: a jitted runner of
        :meth:`make_runner` to share across members of the same shapes (one compilation for every
        depth of a sweep); built on ``kernels`` when not given."""
        import jax

        from dlnjax.networks import compressed

        if runner is None:
            runner = jax.jit(self.make_runner(cs, record_every=record_every, kernels=kernels, last_trained=last_trained,
                                              readout=readout, **options))
        return compressed.member_fn(cs, cores, threshold, record_every=record_every, max_steps=max_steps,
                                    readout=readout, last_trained=last_trained, runner=runner)

    def __repr__(self) -> str:
        return "<engine compressed>"


COMPRESSED = Compressed()
