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

import numpy as np
from omegaconf import DictConfig

from . import schemas
from .common import Progress, entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")


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


def run(cfg: DictConfig) -> dict:
    from dlnjax.data.statistics import full_svd_basis, stats_from_examples
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlnjax.init import functions as init_fns
    from dlnjax.measure import devices
    from dlnjax.nonlinear import reduced
    from dlnjax.theory import closed_form as theory
    from dlnjax.data import registry as data_registry

    out = run_dir()
    t_start = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    ds = data_registry.load(cfg.data)
    stats = stats_from_examples(ds.x, ds.y).astype(dtype)
    u_full, s, v_full = full_svd_basis(stats.sigma31)
    s_np = np.asarray(s, np.float64)
    rank = int(np.sum(s_np > s_np[0] * 1e-6))
    n_in, n_out, hidden = ds.n_in, ds.n_out, int(cfg.hidden)
    n_modes = min(rank, hidden)
    modes = [m for m in cfg.modes if m <= n_modes]
    if len(modes) < len(cfg.modes):
        log.warning("modes %s exceed the %d learnable modes and are left out", [m for m in cfg.modes if m > n_modes], n_modes)
    if not modes:
        raise schemas.ConfigError(f"invalid config: modes={list(cfg.modes)} (allowed: mode numbers <= {n_modes})")
    mi = np.asarray(modes) - 1
    lr, u0 = float(cfg.lr), float(cfg.u0)
    tau = 1.0 / lr
    u_r = u_full[:, :rank]
    prob = reduced.make_problem(jnp.asarray(ds.x, dtype), ds.y, u_r, v_full, n_modes)
    num_steps, rec = int(cfg.num_steps), int(cfg.record_every)
    t = np.arange(num_steps // rec + 1) * rec
    widths = (n_in, hidden, n_out)

    # ---- analytic (Eq. 12)
    u_an = np.asarray(theory.mode_strength(t[:, None], s_np[None, :n_modes], u0, tau, 3), np.float64)
    th_an = np.asarray(theory.half_learning_time(s_np[:n_modes], u0, tau, 3), np.float64)

    # ---- decoupled starts at lr * f for each factor f (same continuous time)
    dec = {}
    key = jax.random.PRNGKey(cfg.seed)
    k_dec, k_rand = jax.random.split(key)
    w_dec = init_fns.decoupled(k_dec, widths, u0, u_full, v_full, n_modes=n_modes, dtype=dtype)
    for f in cfg.decoupled_lr_factors:
        steps_f = int(round(num_steps / f))
        rec_f = max(int(round(rec / f)), 1)
        steps_f -= steps_f % rec_f
        st0 = reduced.reduce_weights(w_dec[0], w_dec[1], u_r)
        fn = jax.jit(lambda st, lr_=lr * f, n=steps_f, r=rec_f: reduced.train(st, prob, lr_, activation="linear", num_steps=n, record_every=r))
        _, _, md = fn(st0)
        t_f = np.arange(steps_f // rec_f + 1) * rec_f * f  # in units of the base lr's steps
        u_th = np.asarray(theory.mode_strength(t_f[:, None], s_np[None, :n_modes], u0, tau, 3), np.float64)
        err = np.abs(np.asarray(md, np.float64) - u_th) / s_np[None, :n_modes]
        dec[float(f)] = dict(t=t_f, u=np.asarray(md, np.float64), max_abs_error=float(np.max(err)))
        log.info("decoupled start, lr x %g: max |u_sim - u_an| / s = %.4g", f, dec[float(f)]["max_abs_error"])
    base_f = min(dec, key=lambda f: abs(f - 1.0))

    # ---- random starts: linear and tanh, one vmapped batch each
    n_init = int(cfg.n_init)
    std = float(cfg.init_std) if cfg.init_std is not None else float(np.sqrt(u0 / hidden))
    keys = jax.random.split(k_rand, n_init)
    ws = jax.vmap(lambda k: init_fns.small_gaussian(k, widths, std, dtype))(keys)
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
    delays = {}
    for act in sims:
        th_sim = half_times(t, sims[act]["u"], s_np[:n_modes])  # (n_init, M)
        rel = (th_sim - th_an[None, :]) / th_an[None, :]
        delays[act] = dict(
            mean=np.nanmean(rel, axis=0),
            std=np.nanstd(rel, axis=0),
            not_reached=np.sum(np.isnan(rel), axis=0),
        )

    # ---- figure
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw=dict(width_ratios=[1.6, 1]))
    for k, m in enumerate(mi):
        ax.plot(t, sims["linear"]["u"][0, :, m], color="tab:blue", lw=1.6, label="linear network" if k == 0 else None)
        ax.plot(t, sims["tanh"]["u"][0, :, m], color="tab:green", lw=1.6, label="tanh network" if k == 0 else None)
        ax.plot(t, u_an[:, m], color="tab:red", lw=1.3, ls="--", label="analytic (Eq. 12)" if k == 0 else None)
        ax.text(t[-1] * 1.01, u_an[-1, m], str(m + 1), fontsize=7, va="center")
    dd = dec[base_f]
    ax.plot(dd["t"], dd["u"][:, mi[0]], color="k", lw=0.8, ls=":", label=f"decoupled start (lr × {base_f:g})")
    for m in mi[1:]:
        ax.plot(dd["t"], dd["u"][:, m], color="k", lw=0.8, ls=":")
    ax.set_xlabel("t (full-batch steps)")
    ax.set_ylabel("mode strength  u_α")
    ax.set_title(f"Mode strengths (λ = {lr:g}, N2 = {hidden}, u0 = {u0:g})")
    ax.legend(fontsize=8, loc="lower right")
    x = np.arange(len(mi))
    for off, act, col in ((-0.12, "linear", "tab:blue"), (0.12, "tanh", "tab:green")):
        ax2.errorbar(x + off, delays[act]["mean"][mi], yerr=delays[act]["std"][mi], fmt="o", color=col, capsize=3, label=act)
    ax2.axhline(0.0, color="tab:red", lw=1, ls="--")
    ax2.set_xticks(x, [str(m + 1) for m in mi])
    ax2.set_xlabel("mode α")
    ax2.set_ylabel("(t½ simulated − t½ analytic) / t½ analytic")
    ax2.set_title(f"Half-learning delay, mean ± std over {n_init} inits")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "mode_dynamics")

    summary = dict(
        experiment="mode_dynamics",
        dataset=ds.name,
        singular_values=s_np[:rank],
        modes_plotted=modes,
        lr=lr,
        u0=u0,
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
    write_results(out, summary,
        t=t,
        singular_values=s_np[:rank],
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
