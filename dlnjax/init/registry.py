"""The registry of initialisations: ``INITS[name]`` -> an :class:`Init`.

Every app that starts networks from a named initialisation looks the name up here (no string
switches elsewhere). An init

- makes the starting weights ``(W^1, ..., W^n)`` for given widths, key, dtype and hyper-parameters
  (:meth:`Init.weights`; :meth:`Init.networks` for ``n_seeds`` draws as the apps use them);
- may ``prepare`` something once, before any network is drawn (greedy pretraining stacks for
  ``pretrained``; ``None`` for the others), passed back to ``weights`` as ``prepared``;
- says whether its starts are rank-r aligned (``aligned``): only those can run on the exact
  compressed engine (:mod:`dlnjax.networks.compressed`); today that is ``decoupled`` alone.

Hyper-parameters are keyword arguments; each init reads the ones it needs and ignores the rest,
so an app can pass all of its settings to whichever init a config names:

    ========================  ===========================================================
    ``small_gaussian``        ``std``
    ``scaled_gaussian``       ``gain`` (default 1)              alias ``gaussian``
    ``orthogonal``            ``gain`` (default 1)
    ``decoupled``             ``u0``, ``u_basis``, ``v_basis`` (the task's U, V),
                              ``n_modes``, ``hidden_basis`` (optional)
    ``pretrained``            ``top_std``; ``prepare``: ``hidden_layers``, ``std``, ``lr_scale``,
                              ``steps``, ``record_every``
    ========================  ===========================================================

The arithmetic of each init lives in its own module (:mod:`dlnjax.init.functions` for the random and
decoupled ones, :mod:`dlnjax.init.pretrain` for pretraining); the classes here only say how a name
maps onto it. To add an init: write its class (in its own module, on :class:`InitBase`) and add
one entry to :data:`INITS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import jax

from dlnjax.init import functions as _init
from dlnjax.registry import Registry

Array = Any


@runtime_checkable
class Init(Protocol):
    """What the apps need of an initialisation (see the module docstring)."""

    name: str
    aligned: bool  # starts are rank-r aligned: they can run on the compressed engine

    def prepare(self, key: Array, stats: Any, *, n_seeds: int, **hp: Any) -> Any:
        """Work done once before any network is drawn (``None`` when there is none)."""
        ...

    def weights(self, key: Array, widths: Sequence[int], *, dtype: Any = None, prepared: Any = None, seed: int = 0,
                **hp: Any) -> tuple:
        """One network ``(W^1, ..., W^n)``, ``W^l`` of shape ``(widths[l+1], widths[l])``."""
        ...

    def networks(self, key: Array, widths: Sequence[int], n_seeds: int, *, dtype: Any = None, prepared: Any = None,
                 **hp: Any) -> list[tuple]:
        """The networks an app trains for ``n_seeds`` seeds from ``key``."""
        ...

    def square_stack(self, key: Array, n: int, n_layers: int, dtype: Any = None) -> Array:
        """``n_layers`` stacked ``n x n`` matrices at unit gain (random-matrix apps)."""
        ...

    def cores(self, key: Array, widths: Sequence[int], rot: Any, *, l_cap: int | None = None, dtype: Any = None,
              prepared: Any = None, **hp: Any) -> Any:
        """The start as compressed cores (:class:`dlnjax.networks.compressed.Cores`, inputs rotated by
        ``rot``), for an ``aligned`` init only."""
        ...


def _need(name: str, hp: dict, key: str) -> Any:
    if key not in hp or hp[key] is None:
        raise ValueError(f"init {name!r} needs the hyper-parameter {key!r}")
    return hp[key]


@dataclass(frozen=True)
class InitBase:
    """Defaults shared by the inits: nothing to prepare, one independent draw per seed
    (``jax.random.split(key, n_seeds)``), no square stacks."""

    name: str
    aligned: bool = False

    def prepare(self, key: Array, stats: Any, *, n_seeds: int, **hp: Any) -> Any:
        return None

    def weights(self, key: Array, widths: Sequence[int], *, dtype: Any = None, prepared: Any = None, seed: int = 0,
                **hp: Any) -> tuple:
        raise NotImplementedError

    def networks(self, key: Array, widths: Sequence[int], n_seeds: int, *, dtype: Any = None, prepared: Any = None,
                 **hp: Any) -> list[tuple]:
        keys = jax.random.split(key, n_seeds)
        return [self.weights(k, widths, dtype=dtype, prepared=prepared, seed=i, **hp) for i, k in enumerate(keys)]

    def cores(self, key: Array, widths: Sequence[int], rot: Any, *, l_cap: int | None = None, dtype: Any = None,
              prepared: Any = None, **hp: Any) -> Any:
        """By default from the full-width start (:func:`dlnjax.networks.compressed.cores_from_weights`, which
        refuses a start that is not rank-r aligned); an aligned init that can build its cores
        without the full-width weights overrides this (``decoupled``)."""
        from dlnjax.networks import compressed

        if not self.aligned:
            raise ValueError(f"init {self.name!r} is not rank-r aligned: it cannot run on the compressed engine")
        w = self.weights(key, widths, dtype=dtype, prepared=prepared, **hp)
        return compressed.cores_from_weights(w, rot, l_cap=l_cap, dtype=dtype)[0]

    def square_stack(self, key: Array, n: int, n_layers: int, dtype: Any = None) -> Array:
        raise ValueError(f"init {self.name!r} has no stack of square random matrices; "
                         f"expected one of {', '.join(k for k, v in INITS.items() if v.has_square_stack)}")

    @property
    def has_square_stack(self) -> bool:
        return type(self).square_stack is not InitBase.square_stack


@dataclass(frozen=True)
class SmallGaussian(InitBase):
    """i.i.d. N(0, std^2) entries (the paper's 'small random weights'): :func:`dlnjax.init.functions.small_gaussian`."""

    def weights(self, key, widths, *, dtype=None, prepared=None, seed=0, **hp):
        return _init.small_gaussian(key, widths, _need(self.name, hp, "std"), dtype=dtype)


def _gaussian_square(key: Array, n: int, dtype: Any = None) -> Array:
    """i.i.d. N(0, 1/N) entries (Figs. 6B-C, 7-8)."""
    import jax.numpy as jnp

    dtype = dtype or jnp.result_type(float)
    return jax.random.normal(key, (n, n), dtype) / jnp.sqrt(n)


def _haar_square(key: Array, n: int, dtype: Any = None) -> Array:
    return _init.haar_orthogonal(key, n, dtype=dtype)


@dataclass(frozen=True)
class GainLayers(InitBase):
    """Independent random layers times ``gain``: ``layers(key, widths, gain, dtype)`` (scaled
    Gaussian: :func:`dlnjax.init.functions.scaled_gaussian`, i.i.d. N(0, gain^2 / N_in); orthogonal:
    :func:`dlnjax.init.functions.random_orthogonal`, Haar (semi-)orthogonal), and stacks of square matrices
    ``square(key, n, dtype)``, one key per layer."""

    layers: Callable[..., tuple] | None = None
    square: Callable[..., Array] | None = None

    def weights(self, key, widths, *, dtype=None, prepared=None, seed=0, **hp):
        return self.layers(key, widths, hp.get("gain", 1.0), dtype)

    def square_stack(self, key, n, n_layers, dtype=None):
        keys = jax.random.split(key, n_layers)
        return jax.vmap(lambda k: self.square(k, n, dtype))(keys)


@dataclass(frozen=True)
class Decoupled(InitBase):
    """Every task mode at strength ``u0``, balanced over the layers: :func:`dlnjax.init.functions.decoupled`.
    Deterministic up to its Haar hidden bases, so the apps draw it once (from the first of the
    ``n_seeds`` keys) whatever the number of seeds."""

    aligned: bool = True

    def weights(self, key, widths, *, dtype=None, prepared=None, seed=0, **hp):
        return _init.decoupled(
            key, widths, _need(self.name, hp, "u0"), _need(self.name, hp, "u_basis"), _need(self.name, hp, "v_basis"),
            n_modes=hp.get("n_modes"), hidden_basis=hp.get("hidden_basis", "random"), dtype=dtype,
        )

    def networks(self, key, widths, n_seeds, *, dtype=None, prepared=None, **hp):
        keys = jax.random.split(key, n_seeds)
        return [self.weights(keys[0], widths, dtype=dtype, prepared=prepared, seed=0, **hp)]

    def cores(self, key, widths, rot, *, l_cap=None, dtype=None, prepared=None, **hp):
        """Built directly (:func:`dlnjax.networks.compressed.decoupled_cores`), never at full width; the
        same start as :meth:`weights` up to its hidden bases, which the cores do not carry."""
        from dlnjax.networks import compressed

        return compressed.decoupled_cores(widths, _need(self.name, hp, "u0"), _need(self.name, hp, "u_basis"),
                                          _need(self.name, hp, "v_basis"), rot, l_cap=l_cap, n_modes=hp.get("n_modes"),
                                          dtype=dtype)


@dataclass(frozen=True)
class Pretrained(InitBase):
    """Greedy layer-wise autoencoder pretraining of the hidden layers (:mod:`dlnjax.init.pretrain`):
    ``prepare`` pretrains one stack per seed (for the deepest network: greedy pretraining does
    not look ahead, so shallower networks use the stack's first layers); ``weights`` cuts seed
    ``seed``'s stack to ``len(widths)`` layers and adds an i.i.d. N(0, top_std^2) output layer."""

    def prepare(self, key, stats, *, n_seeds, on_stack: Callable[[int, float], None] | None = None, **hp):
        """One :class:`dlnjax.init.pretrain.Pretrained` stack per seed (``jax.random.split(key, n_seeds)``);
        ``on_stack(i, seconds)`` is called after each."""
        from dlnjax.init import pretrain

        stacks = []
        for i, k in enumerate(jax.random.split(key, n_seeds)):
            t0 = time.time()
            stacks.append(pretrain.greedy_pretrain(
                k, stats.sigma11, list(_need(self.name, hp, "hidden_layers")), std=_need(self.name, hp, "std"),
                lr_scale=_need(self.name, hp, "lr_scale"), steps=_need(self.name, hp, "steps"),
                record_every=_need(self.name, hp, "record_every"),
            ))
            if on_stack is not None:
                on_stack(i, time.time() - t0)
        return stacks

    def weights(self, key, widths, *, dtype=None, prepared=None, seed=0, **hp):
        from dlnjax.init import pretrain

        if prepared is None:
            raise ValueError("init 'pretrained' needs its prepared stacks (call INITS['pretrained'].prepare first)")
        ws = pretrain.pretrained_network(key, prepared[seed], len(widths), widths[-1], _need(self.name, hp, "top_std"))
        if dtype is None:
            return ws
        import jax.numpy as jnp

        return tuple(jnp.asarray(w, dtype) for w in ws)


INITS: Registry[Init] = Registry(
    "init",
    {
        "decoupled": Decoupled("decoupled"),
        "scaled_gaussian": GainLayers("scaled_gaussian", layers=_init.scaled_gaussian, square=_gaussian_square),
        "orthogonal": GainLayers("orthogonal", layers=_init.random_orthogonal, square=_haar_square),
        "pretrained": Pretrained("pretrained"),
        "small_gaussian": SmallGaussian("small_gaussian"),
    },
    aliases={"gaussian": "scaled_gaussian"},
)


def get(name: Any) -> Init:
    """``INITS[name]`` (an alias or a config enum member work too); ValueError naming the allowed ones."""
    return INITS.get(name)
