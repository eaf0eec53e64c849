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

import numpy as np
from omegaconf import DictConfig

from .common import entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")


def run(cfg: DictConfig) -> dict:
    from dlnjax.data.statistics import stats_from_examples
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlnjax.theory import balanced as bl
    from dlnjax.networks import engines
    from dlnjax.registry import enum_value
    from dlnjax.data import teacher

    out = run_dir()
    ds = teacher(list(cfg.singular_values), cfg.n_in, cfg.n_out, seed=cfg.seed)
    dtype = jnp.float64 if enum_value(cfg.precision) == "float64" else jnp.float32
    stats = stats_from_examples(ds.x, ds.y, dtype=dtype)
    x = jnp.asarray(ds.x, dtype)
    u, s, vt = np.linalg.svd(np.asarray(stats.sigma31, np.float64))
    r = len(cfg.singular_values)
    u, s, vt = u[:, :r], s[:r], vt[:r]
    t_max, n_times = float(cfg.t_max), int(cfg.n_times)
    scales, signs = [float(v) for v in cfg.scales], [int(v) for v in cfg.signs]
    key = jax.random.PRNGKey(cfg.seed)

    fine = np.linspace(0.0, t_max, 200)
    fine_modes = np.zeros((len(signs), len(scales), len(fine), r))
    exact_modes = np.zeros((len(signs), len(scales), n_times, r))
    sim_modes = np.zeros_like(exact_modes)
    times = np.zeros((len(signs), len(scales), n_times))
    dev = np.zeros((len(signs), len(scales)))
    movement = np.zeros((len(signs), len(scales)))
    movement_sim = np.zeros((len(signs), len(scales)))
    rates = np.zeros((len(signs), len(scales)))
    loss_exact_end = np.zeros((len(signs), len(scales)))
    for i, sign in enumerate(signs):
        for j, scale in enumerate(scales):
            beta = sign * float(cfg.beta_factor) * scale**2
            w1, w2 = bl.sample_balanced(jax.random.fold_in(key, j), cfg.n_in, cfg.n_hidden, cfg.n_out, scale, beta, dtype=dtype)
            # the rate: capped so that lr * lambda_max stays <~ 0.1 (lambda_max <~ 2 (scale^2 + |beta| + s_1))
            lr = min(float(cfg.lr), 0.05 / (scale**2 + abs(beta) + float(s[0])))
            every = max(1, int(round(t_max / lr / (n_times - 1))))
            n_steps = every * (n_times - 1)
            lr = t_max / n_steps  # the records land exactly on flow times k * t_max / (n_times - 1)
            ts = np.arange(n_times) * every * lr
            st, rec = engines.train((w1, w2), stats, lr, num_steps=n_steps, record_every=every,
                                   u=jnp.asarray(u, dtype), v=jnp.asarray(vt.T, dtype))
            ex = bl.solution(jnp.asarray(ts, dtype), w1, w2, stats.sigma31, beta)
            ex_modes = np.einsum("ia,tij,ja->ta", u, np.asarray(ex.w2w1, np.float64), vt.T)
            exact_modes[i, j], sim_modes[i, j], times[i, j], rates[i, j] = ex_modes, np.asarray(rec.modes), ts, lr
            dev[i, j] = float(np.max(np.abs(ex_modes - np.asarray(rec.modes))) / s[0])
            fine_modes[i, j] = np.einsum("ia,tij,ja->ta", u, np.asarray(bl.end_to_end(jnp.asarray(fine, dtype), w1, w2,
                                                                                   stats.sigma31, beta), np.float64), vt.T)
            first = jax.tree_util.tree_map(lambda z: z[0], ex)
            last = jax.tree_util.tree_map(lambda z: z[-1], ex)
            movement[i, j] = float(bl.ntk_relative_change(last, first))
            g1, g2 = st.weights
            k0 = bl.ntk(w1.T @ w1, w2 @ w2.T, x)
            k1 = bl.ntk(g1.T @ g1, g2 @ g2.T, x)
            movement_sim[i, j] = float(jnp.linalg.norm(k1 - k0) / jnp.linalg.norm(k0))
            loss_exact_end[i, j] = float(0.5 * np.sum((np.asarray(ex.w2w1[-1]) - np.asarray(stats.sigma31)) ** 2))
            log.info("sign %+d scale %.3g (beta %.3g, lr %.2g): max |u_exact - u_sim| / s1 = %.2e, NTK movement %.3g",
                     sign, scale, beta, lr, dev[i, j], movement[i, j])

    # ---- figure: mode strengths per sign (exact lines, simulation dots), kernel movement vs scale
    fig, axes = plt.subplots(1, len(signs) + 1, figsize=(4.0 * (len(signs) + 1), 3.8))
    cmap = plt.get_cmap("viridis")
    names = {-1: "β < 0", 0: "β = 0", 1: "β > 0"}
    for i, sign in enumerate(signs):
        ax = axes[i]
        for j, scale in enumerate(scales):
            col = cmap(j / max(len(scales) - 1, 1))
            for a in range(r):
                ax.plot(fine, fine_modes[i, j, :, a], color=col, lw=1.2,
                        label=f"scale {scale:g}" if a == 0 else None)
                ax.plot(times[i, j], sim_modes[i, j, :, a], "o", color=col, ms=2.5, alpha=0.7)
        for sv in s:
            ax.axhline(sv, color="0.8", lw=0.6, ls=":")
        ax.set_xlabel("flow time t = rate × steps")
        ax.set_ylabel("mode strength uᵀ W₂W₁ v")
        ax.set_yscale("symlog", linthresh=1.0)  # large starts (scale² ~ 100) would flatten the rest
        ax.set_title(f"{names[sign]} (|β| = {cfg.beta_factor:g}·scale²)")
        if i == 0:
            ax.legend(fontsize=7, loc="lower right", title="lines: exact, dots: GD", title_fontsize=7)
    ax = axes[-1]
    markers = {-1: "v", 0: "o", 1: "^"}
    for i, sign in enumerate(signs):
        ax.loglog(scales, movement[i], marker=markers[sign], label=f"{names[sign]} exact")
        ax.loglog(scales, movement_sim[i], ls="none", marker="x", color="k", ms=5, label="GD" if i == 0 else None)
    ax.set_xlabel("initial scale")
    ax.set_ylabel("‖Θ(t_max) − Θ(0)‖_F / ‖Θ(0)‖_F")
    ax.set_title("NTK movement: rich → lazy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "balanced_dynamics")

    summary = dict(
        experiment="balanced_dynamics",
        singular_values=[float(v) for v in s],
        scales=scales,
        signs=signs,
        betas=[[sign * float(cfg.beta_factor) * sc**2 for sc in scales] for sign in signs],
        max_deviation=float(dev.max()),
        deviation=dev,
        kernel_movement=movement,
        kernel_movement_simulated=movement_sim,
        learning_rates=rates,
        final_loss_exact=loss_exact_end,
        config=resolved_config(cfg),
    )
    write_results(out, summary, times=times, exact_modes=exact_modes, simulated_modes=sim_modes, kernel_movement=movement,
                  scales=np.asarray(scales), signs=np.asarray(signs))
    log.info("max deviation exact vs simulated (relative to s1): %.3g", summary["max_deviation"])
    return summary


main = entry("balanced_dynamics", run)


if __name__ == "__main__":
    main()
