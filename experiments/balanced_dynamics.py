"""Exact learning dynamics from beta-balanced starts, one hidden layer: from rich to lazy.

For each initial scale and each sign of the balance ``beta = sign * beta_factor * scale^2``
(``W2^T W2 - W1 W1^T = beta I``; beta is not a learning rate), a start is drawn with
:func:`dlnjax.theory.balanced.sample_balanced`, the exact solution (:func:`dlnjax.theory.balanced.solution`) is
compared with gradient descent at a small rate (flow time = rate x steps; the rate is capped at
``0.05 / (scale^2 + |beta| + s_1)`` so that large scales stay far below their stability edge), and
the neural tangent kernel's relative Frobenius change from t = 0 to t_max is recorded: near 1 or more
for small scales (rich: the representations are built from scratch), near 0 for large ones (lazy).

    python -m experiments.balanced_dynamics [experiment=debug] [scales='[0.01,1,10]'] [signs='[-1,0,1]']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from .common import entry, resolved_config, run_dir, write_results
from ._shared.plots.balanced_dynamics import BalancedDynamicsResult, figure

log = logging.getLogger("dlnjax")


@dataclass(frozen=True)
class Teacher:
    """The teacher task: its statistics, inputs, and the top ``r`` singular triplets of Sigma31."""

    dtype: Any
    stats: Any
    x: Any
    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray


@dataclass(frozen=True)
class Cell:
    """One (sign, scale) start: exact and simulated modes, the rate, and the kernel movement."""

    exact_modes: np.ndarray
    sim_modes: np.ndarray
    times: np.ndarray
    lr: float
    dev: float
    fine_modes: np.ndarray
    movement: float
    movement_sim: float
    loss_exact_end: float


@dataclass(frozen=True)
class Grid:
    """Every (sign, scale) cell's results, indexed [sign, scale, ...]."""

    fine: np.ndarray
    fine_modes: np.ndarray
    exact_modes: np.ndarray
    sim_modes: np.ndarray
    times: np.ndarray
    dev: np.ndarray
    movement: np.ndarray
    movement_sim: np.ndarray
    rates: np.ndarray
    loss_exact_end: np.ndarray


def _teacher(cfg: DictConfig) -> Teacher:
    """The teacher data set, its statistics at the configured precision, and Sigma31's top SVD."""
    from dlnjax.data.statistics import stats_from_examples
    import jax.numpy as jnp

    from dlnjax.registry import enum_value
    from dlnjax.data import teacher

    ds = teacher(list(cfg.singular_values), cfg.n_in, cfg.n_out, seed=cfg.seed)
    dtype = jnp.float64 if enum_value(cfg.precision) == "float64" else jnp.float32
    stats = stats_from_examples(ds.x, ds.y, dtype=dtype)
    x = jnp.asarray(ds.x, dtype)
    u, s, vt = np.linalg.svd(np.asarray(stats.sigma31, np.float64))
    r = len(cfg.singular_values)
    u, s, vt = u[:, :r], s[:r], vt[:r]
    return Teacher(dtype=dtype, stats=stats, x=x, u=u, s=s, vt=vt)


def _schedule(lr_max: float, scale: float, beta: float, s1: float, t_max: float,
              n_times: int) -> tuple[float, int, int, np.ndarray]:
    """The capped rate, record interval, step count and flow times of the records."""
    # the rate: capped so that lr * lambda_max stays <~ 0.1 (lambda_max <~ 2 (scale^2 + |beta| + s_1))
    lr = min(lr_max, 0.05 / (scale**2 + abs(beta) + s1))
    every = max(1, int(round(t_max / lr / (n_times - 1))))
    n_steps = every * (n_times - 1)
    lr = t_max / n_steps  # the records land exactly on flow times k * t_max / (n_times - 1)
    ts = np.arange(n_times) * every * lr
    return lr, every, n_steps, ts


def _project(u: np.ndarray, w2w1: Any, vt: np.ndarray) -> np.ndarray:
    """Mode strengths u_a^T W2W1(t) v_a of a stack of end-to-end maps, (T, r)."""
    return np.einsum("ia,tij,ja->ta", u, np.asarray(w2w1, np.float64), vt.T)


def _ntk_movement_simulated(w1: Any, w2: Any, weights: Any, x: Any) -> float:
    """Relative Frobenius change of the NTK of the trained network from its start."""
    import jax.numpy as jnp

    from dlnjax.theory import balanced as bl

    g1, g2 = weights
    k0 = bl.ntk(w1.T @ w1, w2 @ w2.T, x)
    k1 = bl.ntk(g1.T @ g1, g2 @ g2.T, x)
    return float(jnp.linalg.norm(k1 - k0) / jnp.linalg.norm(k0))


def _cell(cfg: DictConfig, key: Any, j: int, sign: int, scale: float, t: Teacher, fine: np.ndarray) -> Cell:
    """Exact solution vs gradient descent and the kernel movement for one beta-balanced start."""
    import jax
    import jax.numpy as jnp

    from dlnjax.theory import balanced as bl
    from dlnjax.networks import engines

    dtype, stats, u, s, vt = t.dtype, t.stats, t.u, t.s, t.vt
    beta = sign * float(cfg.beta_factor) * scale**2
    w1, w2 = bl.sample_balanced(jax.random.fold_in(key, j), cfg.n_in, cfg.n_hidden, cfg.n_out, scale, beta, dtype=dtype)
    lr, every, n_steps, ts = _schedule(float(cfg.lr), scale, beta, float(s[0]), float(cfg.t_max), int(cfg.n_times))
    st, rec = engines.train((w1, w2), stats, lr, num_steps=n_steps, record_every=every,
                           u=jnp.asarray(u, dtype), v=jnp.asarray(vt.T, dtype))
    ex = bl.solution(jnp.asarray(ts, dtype), w1, w2, stats.sigma31, beta)
    ex_modes = _project(u, ex.w2w1, vt)
    dev = float(np.max(np.abs(ex_modes - np.asarray(rec.modes))) / s[0])
    fine_modes = _project(u, bl.end_to_end(jnp.asarray(fine, dtype), w1, w2, stats.sigma31, beta), vt)
    first = jax.tree_util.tree_map(lambda z: z[0], ex)
    last = jax.tree_util.tree_map(lambda z: z[-1], ex)
    movement = float(bl.ntk_relative_change(last, first))
    movement_sim = _ntk_movement_simulated(w1, w2, st.weights, t.x)
    loss_exact_end = float(0.5 * np.sum((np.asarray(ex.w2w1[-1]) - np.asarray(stats.sigma31)) ** 2))
    log.info("sign %+d scale %.3g (beta %.3g, lr %.2g): max |u_exact - u_sim| / s1 = %.2e, NTK movement %.3g",
             sign, scale, beta, lr, dev, movement)
    return Cell(exact_modes=ex_modes, sim_modes=np.asarray(rec.modes), times=ts, lr=lr, dev=dev,
                fine_modes=fine_modes, movement=movement, movement_sim=movement_sim, loss_exact_end=loss_exact_end)


def _sweep(cfg: DictConfig, t: Teacher, scales: list[float], signs: list[int]) -> Grid:
    """Every sign x scale cell, in order (the start of scale j drawn from fold_in(key, j))."""
    import jax

    t_max, n_times, r = float(cfg.t_max), int(cfg.n_times), len(t.s)
    key = jax.random.PRNGKey(cfg.seed)
    shape = (len(signs), len(scales))
    fine = np.linspace(0.0, t_max, 200)
    g = Grid(fine=fine, fine_modes=np.zeros(shape + (len(fine), r)), exact_modes=np.zeros(shape + (n_times, r)),
             sim_modes=np.zeros(shape + (n_times, r)), times=np.zeros(shape + (n_times,)), dev=np.zeros(shape),
             movement=np.zeros(shape), movement_sim=np.zeros(shape), rates=np.zeros(shape),
             loss_exact_end=np.zeros(shape))
    for i, sign in enumerate(signs):
        for j, scale in enumerate(scales):
            c = _cell(cfg, key, j, sign, scale, t, fine)
            g.exact_modes[i, j], g.sim_modes[i, j], g.times[i, j], g.rates[i, j] = c.exact_modes, c.sim_modes, c.times, c.lr
            g.dev[i, j], g.fine_modes[i, j], g.movement[i, j] = c.dev, c.fine_modes, c.movement
            g.movement_sim[i, j], g.loss_exact_end[i, j] = c.movement_sim, c.loss_exact_end
    return g


def _summary(cfg: DictConfig, s: np.ndarray, scales: list[float], signs: list[int], g: Grid) -> dict:
    """The run's summary (summary.json)."""
    return dict(
        experiment="balanced_dynamics",
        singular_values=[float(v) for v in s],
        scales=scales,
        signs=signs,
        betas=[[sign * float(cfg.beta_factor) * sc**2 for sc in scales] for sign in signs],
        max_deviation=float(g.dev.max()),
        deviation=g.dev,
        kernel_movement=g.movement,
        kernel_movement_simulated=g.movement_sim,
        learning_rates=g.rates,
        final_loss_exact=g.loss_exact_end,
        config=resolved_config(cfg),
    )


def run(cfg: DictConfig) -> dict:
    """Exact vs simulated dynamics from beta-balanced starts over scales and signs; the summary."""
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t = _teacher(cfg)
    scales, signs = [float(v) for v in cfg.scales], [int(v) for v in cfg.signs]
    g = _sweep(cfg, t, scales, signs)

    figure(out, BalancedDynamicsResult(
        signs=signs, scales=scales, singular_values=t.s, beta_factor=float(cfg.beta_factor), fine=g.fine,
        fine_modes=g.fine_modes, times=g.times, sim_modes=g.sim_modes, movement=g.movement,
        movement_sim=g.movement_sim,
    ))

    summary = _summary(cfg, t.s, scales, signs, g)
    write_results(out, summary, times=g.times, exact_modes=g.exact_modes, simulated_modes=g.sim_modes,
                  kernel_movement=g.movement, scales=np.asarray(scales), signs=np.asarray(signs))
    log.info("max deviation exact vs simulated (relative to s1): %.3g", summary["max_deviation"])
    return summary


main = entry("balanced_dynamics", run)


if __name__ == "__main__":
    main()
