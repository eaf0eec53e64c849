"""Fig. 3: learning of the modes of a hierarchical data set in three-layer networks.

Left: strength of modes 1, 2, 3, 5, 12, 18, 31 over training: the analytic sigmoid (Eq. 12,
from u0), a linear network and a tanh network from small random weights (mode strengths
``diag(U^T Sigma31_net V)``, ``Sigma31_net = sum_mu yhat^mu x^mu^T``). Right: relative delay
of the simulated half-learning time against Eq. 12's, mean +- std over ``n_init``
random initialisations trained as one vmapped batch. Also a run from decoupled initial
conditions, which must follow Eq. 12 up to discretisation error, at ``lr`` times each of
``decoupled_lr_factors`` (same continuous time span).

Random starts: i.i.d. N(0, init_std^2) in both layers with ``init_std = sqrt(u0 / N2)``
by default, so that ``|a^alpha| |b^alpha| ~ N2 init_std^2 = u0``: the random network's
modes start at the analytic curve's initial strength.

    python -m experiments.mode_dynamics [n_init=100] [modes='[1,2,3]'] [experiment=debug]
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from . import schemas
from .common import Progress, entry, resolved_config, run_dir, write_results
from ._shared.plots.mode_dynamics import ModeDynamicsResult, figure

log = logging.getLogger("dlnjax")


@dataclass(frozen=True)
class ModeProblem:
    """The data set's SVD basis, the plotted modes and the reduced training problem."""

    ds: Any  # the loaded data set (x, y, name, n_in, n_out)
    dtype: Any
    u_full: Any
    v_full: Any
    u_r: Any  # u_full's first ``rank`` columns
    s_np: np.ndarray  # singular values of Sigma31 (float64)
    rank: int
    n_modes: int  # learnable modes, min(rank, hidden)
    modes: list[int]  # plotted mode numbers (1-based)
    mi: np.ndarray  # their 0-based indices
    hidden: int
    widths: tuple[int, int, int]
    prob: Any  # reduced.make_problem's problem
    lr: float
    u0: float
    tau: float
    num_steps: int
    rec: int  # record_every
    t: np.ndarray  # recorded steps


def half_times(t: np.ndarray, u: np.ndarray, s: np.ndarray) -> np.ndarray:
    """First time u crosses s/2 (linear interpolation between records); nan if never.

    ``u``: (..., T, M), ``s``: (M,). Returns (..., M).
    """
    half = 0.5 * s
    above = u >= half
    idx = np.argmax(above, axis=-2)  # first True
    hit = np.any(above, axis=-2)
    i1 = np.clip(idx, 1, len(t) - 1)
    u1 = np.take_along_axis(u, i1[..., None, :], axis=-2)[..., 0, :]
    u0 = np.take_along_axis(u, (i1 - 1)[..., None, :], axis=-2)[..., 0, :]
    frac = np.where(u1 != u0, (half - u0) / np.where(u1 != u0, u1 - u0, 1.0), 0.0)
    th = t[i1 - 1] + frac * (t[i1] - t[i1 - 1])
    th = np.where(idx == 0, t[0], th)
    return np.where(hit, th, np.nan)


def select_modes(requested: list[int], n_modes: int) -> list[int]:
    """The requested mode numbers that are learnable (warns about the rest; ConfigError if none)."""
    modes = [m for m in requested if m <= n_modes]
    if len(modes) < len(requested):
        log.warning("modes %s exceed the %d learnable modes and are left out", [m for m in requested if m > n_modes], n_modes)
    if not modes:
        raise schemas.ConfigError(f"invalid config: modes={list(requested)} (allowed: mode numbers <= {n_modes})")
    return modes


def mode_problem(cfg: DictConfig) -> ModeProblem:
    """Load the data, take Sigma31's SVD, pick the modes and build the reduced problem."""
    from dlnjax.data.statistics import full_svd_basis, stats_from_examples
    import jax
    import jax.numpy as jnp

    from dlnjax.nonlinear import reduced
    from dlnjax.data import registry as data_registry

    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    ds = data_registry.load(cfg.data)
    stats = stats_from_examples(ds.x, ds.y).astype(dtype)
    u_full, s, v_full = full_svd_basis(stats.sigma31)
    s_np = np.asarray(s, np.float64)
    rank = int(np.sum(s_np > s_np[0] * 1e-6))
    n_in, n_out, hidden = ds.n_in, ds.n_out, int(cfg.hidden)
    n_modes = min(rank, hidden)
    modes = select_modes(list(cfg.modes), n_modes)
    mi = np.asarray(modes) - 1
    lr, u0 = float(cfg.lr), float(cfg.u0)
    tau = 1.0 / lr
    u_r = u_full[:, :rank]
    prob = reduced.make_problem(jnp.asarray(ds.x, dtype), ds.y, u_r, v_full, n_modes)
    num_steps, rec = int(cfg.num_steps), int(cfg.record_every)
    t = np.arange(num_steps // rec + 1) * rec
    widths = (n_in, hidden, n_out)
    return ModeProblem(ds=ds, dtype=dtype, u_full=u_full, v_full=v_full, u_r=u_r, s_np=s_np, rank=rank,
                       n_modes=n_modes, modes=modes, mi=mi, hidden=hidden, widths=widths, prob=prob,
                       lr=lr, u0=u0, tau=tau, num_steps=num_steps, rec=rec, t=t)


def analytic_curves(p: ModeProblem) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 12's mode strengths on ``p.t`` (T, n_modes) and half-learning times (n_modes,)."""
    from dlnjax.theory import closed_form as theory

    u_an = np.asarray(theory.mode_strength(p.t[:, None], p.s_np[None, :p.n_modes], p.u0, p.tau, 3), np.float64)
    th_an = np.asarray(theory.half_learning_time(p.s_np[:p.n_modes], p.u0, p.tau, 3), np.float64)
    return u_an, th_an


def decoupled_run(p: ModeProblem, w_dec: Any, f: float) -> dict:
    """Train from the decoupled start at rate ``lr * f`` over the same continuous time; its t, u, error."""
    import jax

    from dlnjax.nonlinear import reduced
    from dlnjax.theory import closed_form as theory

    lr, prob, s_np, n_modes = p.lr, p.prob, p.s_np, p.n_modes
    steps_f = int(round(p.num_steps / f))
    rec_f = max(int(round(p.rec / f)), 1)
    steps_f -= steps_f % rec_f
    st0 = reduced.reduce_weights(w_dec[0], w_dec[1], p.u_r)
    fn = jax.jit(lambda st, lr_=lr * f, n=steps_f, r=rec_f: reduced.train(st, prob, lr_, activation="linear", num_steps=n, record_every=r))
    _, _, md = fn(st0)
    t_f = np.arange(steps_f // rec_f + 1) * rec_f * f  # in units of the base lr's steps
    u_th = np.asarray(theory.mode_strength(t_f[:, None], s_np[None, :n_modes], p.u0, p.tau, 3), np.float64)
    err = np.abs(np.asarray(md, np.float64) - u_th) / s_np[None, :n_modes]
    return dict(t=t_f, u=np.asarray(md, np.float64), max_abs_error=float(np.max(err)))


def decoupled_runs(p: ModeProblem, k_dec: Any, factors: list[float]) -> dict[float, dict]:
    """One decoupled start, trained at ``lr`` times each factor (logs each run's max error)."""
    from dlnjax.init import functions as init_fns

    dec = {}
    w_dec = init_fns.decoupled(k_dec, p.widths, p.u0, p.u_full, p.v_full, n_modes=p.n_modes, dtype=p.dtype)
    for f in factors:
        dec[float(f)] = decoupled_run(p, w_dec, f)
        log.info("decoupled start, lr x %g: max |u_sim - u_an| / s = %.4g", f, dec[float(f)]["max_abs_error"])
    return dec


def random_init_std(cfg: DictConfig, p: ModeProblem) -> float:
    """``cfg.init_std``, else sqrt(u0 / N2) (random modes start at the analytic strength)."""
    return float(cfg.init_std) if cfg.init_std is not None else float(np.sqrt(p.u0 / p.hidden))


def random_starts(p: ModeProblem, k_rand: Any, n_init: int, std: float) -> dict[str, dict]:
    """Linear and tanh networks from ``n_init`` small Gaussian starts, one vmapped batch each."""
    import jax

    from dlnjax.init import functions as init_fns
    from dlnjax.measure import devices
    from dlnjax.nonlinear import reduced

    keys = jax.random.split(k_rand, n_init)
    ws = jax.vmap(lambda k: init_fns.small_gaussian(k, p.widths, std, p.dtype))(keys)
    u_r, prob, lr, num_steps, rec = p.u_r, p.prob, p.lr, p.num_steps, p.rec
    sims = {}
    prog = Progress("mode_dynamics", 2)
    for j, act in enumerate(("linear", "tanh")):
        fn = devices.sharded_vmap(  # the batch of initialisations spread over all local devices
            lambda w, a=act: reduced.train(reduced.reduce_weights(w[0], w[1], u_r), prob, lr, activation=a, num_steps=num_steps, record_every=rec)
        )
        t0 = time.time()
        _, losses, md = fn(ws)
        md = np.asarray(md, np.float64)
        sims[act] = dict(loss=np.asarray(losses, np.float64), u=md, seconds=time.time() - t0)
        prog.update(j + 1, f"{act}: {n_init} networks x {num_steps} steps in {sims[act]['seconds']:.1f}s")
    return sims


def half_time_delays(p: ModeProblem, sims: dict[str, dict], th_an: np.ndarray) -> dict[str, dict]:
    """Per activation: mean, std and not-reached count of the relative half-learning delay per mode."""
    delays = {}
    for act in sims:
        th_sim = half_times(p.t, sims[act]["u"], p.s_np[:p.n_modes])  # (n_init, M)
        rel = (th_sim - th_an[None, :]) / th_an[None, :]
        delays[act] = dict(
            mean=np.nanmean(rel, axis=0),
            std=np.nanstd(rel, axis=0),
            not_reached=np.sum(np.isnan(rel), axis=0),
        )
    return delays


def figure_result(p: ModeProblem, u_an: np.ndarray, dec: dict, base_f: float, sims: dict, delays: dict, n_init: int) -> ModeDynamicsResult:
    """The figure's plain inputs: the first random start's curves, Eq. 12, the base decoupled run, the delays."""
    return ModeDynamicsResult(
        t=p.t, mode_index=p.mi, u_linear=sims["linear"]["u"][0], u_tanh=sims["tanh"]["u"][0], u_analytic=u_an,
        t_decoupled=dec[base_f]["t"], u_decoupled=dec[base_f]["u"], decoupled_factor=base_f,
        delay_linear_mean=delays["linear"]["mean"], delay_linear_std=delays["linear"]["std"],
        delay_tanh_mean=delays["tanh"]["mean"], delay_tanh_std=delays["tanh"]["std"],
        lr=p.lr, hidden=p.hidden, u0=p.u0, n_init=n_init,
    )


def summarise(cfg: DictConfig, p: ModeProblem, std: float, n_init: int, th_an: np.ndarray, dec: dict,
              base_f: float, sims: dict, delays: dict, t_start: float) -> dict:
    """The run's summary dict (the plotted modes' half-time delays, decoupled errors, timings)."""
    mi = p.mi
    return dict(
        experiment="mode_dynamics",
        dataset=p.ds.name,
        singular_values=p.s_np[:p.rank],
        modes_plotted=p.modes,
        lr=p.lr,
        u0=p.u0,
        init_std=std,
        n_init=n_init,
        decoupled_max_abs_error=dec[base_f]["max_abs_error"],
        decoupled_max_abs_error_by_lr_factor={str(f): dec[f]["max_abs_error"] for f in dec},
        half_time_analytic=th_an[mi],
        half_time_delay_linear_mean=delays["linear"]["mean"][mi],
        half_time_delay_linear_std=delays["linear"]["std"][mi],
        half_time_delay_tanh_mean=delays["tanh"]["mean"][mi],
        half_time_delay_tanh_std=delays["tanh"]["std"][mi],
        half_time_not_reached_linear=delays["linear"]["not_reached"][mi],
        half_time_not_reached_tanh=delays["tanh"]["not_reached"][mi],
        seconds_linear=sims["linear"]["seconds"],
        seconds_tanh=sims["tanh"]["seconds"],
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )


def run(cfg: DictConfig) -> dict:
    """Fig. 3: analytic, decoupled and random-start mode dynamics; writes the figure and results."""
    import jax
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t_start = time.time()
    p = mode_problem(cfg)
    u_an, th_an = analytic_curves(p)  # Eq. 12
    key = jax.random.PRNGKey(cfg.seed)
    k_dec, k_rand = jax.random.split(key)
    dec = decoupled_runs(p, k_dec, cfg.decoupled_lr_factors)
    base_f = min(dec, key=lambda f: abs(f - 1.0))
    n_init = int(cfg.n_init)
    std = random_init_std(cfg, p)
    sims = random_starts(p, k_rand, n_init, std)
    delays = half_time_delays(p, sims, th_an)
    figure(out, figure_result(p, u_an, dec, base_f, sims, delays, n_init))
    summary = summarise(cfg, p, std, n_init, th_an, dec, base_f, sims, delays, t_start)
    write_results(out, summary,
        t=p.t,
        singular_values=p.s_np[:p.rank],
        u_analytic=u_an,
        u_linear=sims["linear"]["u"],
        u_tanh=sims["tanh"]["u"],
        loss_linear=sims["linear"]["loss"],
        loss_tanh=sims["tanh"]["loss"],
        t_decoupled=dec[base_f]["t"],
        u_decoupled=dec[base_f]["u"],
        half_time_analytic=th_an,
    )
    log.info("wrote %s", out)
    return summary


main = entry("mode_dynamics", run)


if __name__ == "__main__":
    main()
