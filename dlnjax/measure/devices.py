"""Spreading a vmapped batch over all local devices (jax.sharding).

The members of a batch (learning rates, seeds, gains) are independent, so splitting the
leading axis across devices needs no communication: XLA partitions the jitted, vmapped step
along it. With one device everything is left as it is.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = Any


def ieee_matmuls() -> str | None:
    """Make float32 matrix products IEEE float32 on accelerators, and return the precision in force.

    On an NVIDIA GPU, XLA's default float32 product runs in TF32 (a 10-bit mantissa): a float32
    run there would not be float32. Measured on an H200: the XLA engine's end-to-end map was 1e-3
    off (relative) the Pallas kernels' IEEE one, 254 of 370 entries outside float32's test
    tolerance. This sets ``jax_default_matmul_precision='highest'`` unless a precision was chosen
    (the config, or ``$JAX_DEFAULT_MATMUL_PRECISION``, e.g. ``tensorfloat32`` for speed). On a CPU,
    whose float32 products are IEEE already, nothing is set (so nothing changes). The apps, the
    tests and the GPU benchmarks call it."""
    if jax.config.jax_default_matmul_precision is None and jax.default_backend() != "cpu":
        jax.config.update("jax_default_matmul_precision", "highest")
    return jax.config.jax_default_matmul_precision


def padded_size(n: int, n_devices: int | None = None) -> int:
    """Smallest multiple of the device count that holds ``n`` members."""
    d = n_devices or jax.local_device_count()
    return -(-n // d) * d


def pad_batch(tree: Any, size: int) -> Any:
    """Pad the leading axis of every leaf to ``size`` by repeating its last member."""

    def pad(x):
        x = jnp.asarray(x)
        extra = size - x.shape[0]
        if extra <= 0:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def shard_batch(tree: Any) -> Any:
    """Place every leaf's leading (batch) axis across the local devices (a no-op on one device).

    The leading axis must already be a multiple of the device count (see :func:`pad_batch`).
    """
    devices = jax.local_devices()
    if len(devices) == 1:
        return tree
    mesh = Mesh(np.asarray(devices), ("batch",))

    def put(x):
        spec = PartitionSpec("batch", *([None] * (jnp.ndim(x) - 1)))
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(put, tree)


def sharded_vmap(fn: Callable[..., Any], in_axes: Any = 0) -> Callable[..., Any]:
    """``jit(vmap(fn))`` whose batch is spread over all local devices.

    Every argument mapped by ``in_axes`` (default: all, along axis 0) is padded to a multiple of
    the device count (repeating its last member) and sharded along that axis; outputs are cut
    back to the true batch size. On one device this is exactly ``jit(vmap(fn))``. Arguments with
    ``in_axes`` None are passed unchanged (replicated).
    """
    f = jax.jit(jax.vmap(fn, in_axes=in_axes))

    def call(*args: Any) -> Any:
        axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        sizes = {jax.tree_util.tree_leaves(a)[0].shape[0] for a, ax in zip(args, axes) if ax is not None}
        if len(sizes) != 1:
            raise ValueError(f"sharded_vmap: mapped arguments disagree on the batch size: {sorted(sizes)}")
        (n,) = sizes
        size = padded_size(n)
        args = tuple(shard_batch(pad_batch(a, size)) if ax is not None else a for a, ax in zip(args, axes))
        out = f(*args)
        return jax.tree_util.tree_map(lambda x: x[:n], out)

    return call
