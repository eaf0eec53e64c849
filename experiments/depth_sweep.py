"""Fig. 4 (the main job): learning time and best learning rate against depth.

For each depth N_l and each learning rate of a log-spaced grid, a deep linear network is
trained from decoupled initial conditions (every mode at strength u0, balanced over the
layers) by full-batch gradient descent on the sufficient statistics; its learning time is the
first step with training error below the threshold. One jitted, vmapped batch per depth runs
in chunks until every rate has crossed or diverged. Per depth the fastest rate is kept.

Threshold (``threshold.kind``):
  relative (default): ``E <= E* + eps (E(0) - E*)``, E* the best error of any product of
      the network's rank (exact, from the statistics), eps = ``threshold.eps`` (0.05: the
      error has gone 95% of the way to the best the architecture can reach);
  absolute: ``E <= threshold.value`` (the paper: 1.3e4 summed squared error on 60,000 digits).

Theory overlaid: the supplement's optimal-rate estimate ``1/lambda_1(a_opt)`` (max over the
task's modes, its Eq. 19, which scales as O(1/(N_l s^2))) with the stability edge at twice it,
and the learning time Eq. 15 predicts at each depth's chosen rate
(:func:`dlnjax.sweep.theory_learning_time`; exact for whitened inputs, the diagonal
approximation ``s_eff = s/(v^T Sigma11 v)`` otherwise).

    python -m experiments.depth_sweep                      # embedded digits, ~3 min on 2 cores
    python -m experiments.depth_sweep data=mnist data.root=/path/to/mnist
    python -m experiments.depth_sweep data=fashion_mnist data.preprocessing=whitened
    python -m experiments.depth_sweep experiment=paper     # the paper's protocol (GPU)
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
from omegaconf import DictConfig

from . import schema  # noqa: F401
from .common import Progress, entry, load_dataset, resolved_config, run_dir, save_figure, save_npz, write_results

log = logging.getLogger("dlnjax")


def learning_rate_grid(cfg: DictConfig) -> np.ndarray:
    lr = cfg.learning_rates
    if lr["values"] is not None:
        return np.sort(np.asarray(list(lr["values"]), np.float64))
    return np.geomspace(lr["min"], lr["max"], int(lr["num"]))


def theory_optimal_rate(task, depth: int) -> float:
    """1 / max_alpha lambda_1 over the task's modes (supplement Eq. 19 with s_eff, d per mode)."""
    s_eff, d = task.effective_modes()
    n = depth - 1
    return float(1.0 / np.max(n * d * s_eff ** (2.0 - 2.0 / n)))


def prepare(cfg: DictConfig):
    """Data set, statistics and task structure (once per run)."""
    import jax
    import jax.numpy as jnp

    from dlnjax import linear, sweep

    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    ds = load_dataset(cfg.data)
    if ds.n_in < 1 or ds.n_out < 1:
        raise schema.ConfigError(f"invalid config: data={cfg.data.name} gives an empty problem")
    stats = linear.stats_from_examples(ds.x, ds.y, dtype=jnp.float64 if dtype == jnp.float64 else None).astype(dtype)
    task = sweep.Task.from_stats(stats)
    log.info(
        "data %s: %d examples, %d inputs, %d outputs, preprocessing %s, s_1 = %.4g",
        ds.name, ds.n_train, ds.n_in, ds.n_out, ds.info.get("preprocessing", "-"), task.s[0],
    )
    return ds, task


def _partial_path(out, depth: int):
    return out / "partial" / f"depth{depth}.npz"


def _config_json(cfg: DictConfig) -> str:
    return json.dumps(resolved_config(cfg), sort_keys=True)


def _load_state(path, cfg: DictConfig) -> dict | None:
    """A mid-depth training snapshot saved by this very config, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            if str(z["config_json"]) != _config_json(cfg):
                return None
            return {k: z[k] for k in z.files if k != "config_json"}
    except (OSError, ValueError, KeyError):
        return None


def _save_partial(out, res, cfg: DictConfig) -> None:
    """One finished depth, atomically, tagged with the run's config (resume after a kill)."""
    from dataclasses import asdict

    fields = {k: np.asarray(v) for k, v in asdict(res).items()}
    fields["config_json"] = np.asarray(_config_json(cfg))
    save_npz(_partial_path(out, res.depth), **fields)


def _load_partial(out, depth: int, cfg: DictConfig):
    """The saved result of ``depth`` if it was computed with this very config, else None."""
    from dlnjax import sweep

    p = _partial_path(out, depth)
    if not p.exists():
        return None
    try:
        with np.load(p) as z:
            if str(z["config_json"]) != _config_json(cfg):
                return None
            kw = {k: z[k] for k in z.files if k != "config_json"}
    except (OSError, ValueError, KeyError):
        return None
    for k in ("depth", "steps_run"):
        kw[k] = int(kw[k])
    for k in ("threshold", "e_star", "loss0"):
        kw[k] = float(kw[k])
    return sweep.DepthResult(**kw)


def sweep_depths(cfg: DictConfig, task, depths, rates, progress_label: str = "depth_sweep") -> list:
    """Every depth's batch of rates; each finished depth is saved to ``partial/`` in the run
    directory, so a killed run re-run in the same directory (``hydra.run.dir=...``, or any
    multirun job) continues at the first unfinished depth."""
    import jax

    from dlnjax import sweep

    out = run_dir()
    key = jax.random.PRNGKey(cfg.seed)
    results = []
    max_chunks = -(-int(cfg.max_steps) // int(cfg.chunk_steps))
    prog = Progress(progress_label, len(depths) * max_chunks)
    thr = (cfg.threshold.kind.value, float(cfg.threshold.eps), float(cfg.threshold.value))
    for i, depth in enumerate(depths):
        t0 = time.time()
        res = _load_partial(out, int(depth), cfg)
        if res is not None:
            log.info("depth %d: finished in an earlier run of this config, loaded from %s", depth, _partial_path(out, int(depth)))
            results.append(res)
            prog.update((i + 1) * max_chunks)
            continue

        def cb(steps, done, total, i=i, depth=depth):
            prog.update(i * max_chunks + steps // int(cfg.chunk_steps), f"depth {depth}: step {steps}, {done}/{total} rates crossed or diverged")

        state_file = _partial_path(out, int(depth)).with_suffix(".state.npz")
        resume = _load_state(state_file, cfg)
        if resume is not None:
            log.info("depth %d: continuing from step %d (%s)", depth, int(resume["done_steps"]), state_file)
        every = int(cfg.checkpoint_every)

        def on_chunk(snap, state_file=state_file):
            done = int(snap["done_steps"])
            if every > 0 and done % every < int(cfg.chunk_steps) and done < int(cfg.max_steps):
                save_npz(state_file, config_json=np.asarray(_config_json(cfg)), **snap)

        res = sweep.run_depth(
            task, int(depth), rates, hidden=int(cfg.hidden), u0=float(cfg.u0), threshold=thr,
            max_steps=int(cfg.max_steps), chunk_steps=int(cfg.chunk_steps), record_every=int(cfg.record_every),
            key=jax.random.fold_in(key, int(depth)), hidden_basis=cfg.hidden_basis, progress=cb,
            on_chunk=on_chunk if every > 0 else None, resume=resume,
        )
        _save_partial(out, res, cfg)
        state_file.unlink(missing_ok=True)
        prog.update((i + 1) * max_chunks)
        b, bt = sweep.best_rate(res)
        log.info(
            "depth %d: best rate %s, learning time %s, %d diverged, %d not learned (%.1fs)",
            depth, f"{b:.3g}" if b else None, bt, int(res.diverged.sum()),
            int(np.sum(np.isnan(res.learning_time) & ~res.diverged)), time.time() - t0,
        )
        results.append(res)
    return results


def run(cfg: DictConfig) -> dict:
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax import sweep

    out = run_dir()
    t_start = time.time()
    ds, task = prepare(cfg)
    depths = sorted(int(d) for d in cfg.depths)
    rates = learning_rate_grid(cfg)
    results = sweep_depths(cfg, task, depths, rates)

    best = [sweep.best_rate(r) for r in results]
    best_lr = [b[0] for b in best]
    best_t = [b[1] for b in best]
    opt = [theory_optimal_rate(task, d) for d in depths]
    eps = float(cfg.threshold.eps)
    th_time = []
    for d, r, lr in zip(depths, results, best_lr):
        if lr is None:
            th_time.append(None)
            continue
        rank = min(sweep.widths_for(task.stats.n_in, task.stats.n_out, d, int(cfg.hidden)))
        v = sweep.theory_learning_time(task, lr, d, float(cfg.u0), rank, eps, t_max=20.0 * max(r.steps_run, 1))
        th_time.append(v if np.isfinite(v) else None)
    fit_d = [d for d in depths if d >= cfg.fit_min_depth]
    fit_lr = [lr for d, lr in zip(depths, best_lr) if d >= cfg.fit_min_depth]
    lr_exponent = sweep.loglog_slope(fit_d, fit_lr)
    lr_exponent_theory = sweep.loglog_slope(fit_d, [o for d, o in zip(depths, opt) if d >= cfg.fit_min_depth])
    growth = (best_t[-1] / best_t[0]) if (best_t[0] and best_t[-1]) else None

    lt_grid = np.stack([r.learning_time for r in results])  # (D, R)
    div_grid = np.stack([r.diverged for r in results])
    make_figures(out, ds.name, depths, rates, best_lr, best_t, opt, th_time, lt_grid, div_grid, lr_exponent, cfg)

    summary = dict(
        experiment="depth_sweep",
        dataset=ds.name,
        n_train=ds.n_train,
        n_in=ds.n_in,
        preprocessing=ds.info.get("preprocessing", "none"),
        checksums=ds.info.get("checksums"),
        depths=depths,
        hidden=int(cfg.hidden),
        u0=float(cfg.u0),
        learning_rates=rates,
        learning_time=best_t,
        best_learning_rate=best_lr,
        lr_exponent=lr_exponent,
        lr_exponent_fit_depths=fit_d,
        lr_exponent_theory=lr_exponent_theory,
        learning_time_growth=growth,
        diverged=[int(r.diverged.sum()) for r in results],
        not_learned=[int(np.sum(np.isnan(r.learning_time) & ~r.diverged)) for r in results],
        best_rate_at_grid_edge=[lr is not None and (lr == rates[0] or lr == rates[-1]) for lr in best_lr],
        theory_optimal_learning_rate=opt,
        theory_stability_edge=[2 * o for o in opt],
        theory_learning_time_at_best_rate=th_time,
        threshold=dict(
            kind=cfg.threshold.kind.value,
            eps=eps if cfg.threshold.kind.value == "relative" else None,
            value_per_depth=[r.threshold for r in results],
            best_error_per_depth=[r.e_star for r in results],
            initial_error_per_depth=[r.loss0 for r in results],
        ),
        singular_values=task.s,
        steps_run=[r.steps_run for r in results],
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )
    arrays = dict(depths=np.asarray(depths), learning_rates=rates, learning_time=lt_grid, diverged=div_grid)
    for r in results:
        arrays[f"loss_depth{r.depth}"] = r.loss
        arrays[f"steps_depth{r.depth}"] = r.record_steps
    write_results(out, summary, **arrays)
    log.info("lr_exponent %s (theory %s), learning_time_growth %s; wrote %s", lr_exponent, lr_exponent_theory, growth, out)
    return summary


def _depth_ticks(ax, depths) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(depths, [str(x) for x in depths])
    ax.xaxis.set_minor_formatter(NullFormatter())


def make_figures(out, dataset, depths, rates, best_lr, best_t, opt, th_time, lt_grid, div_grid, lr_exponent, cfg) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    d = np.asarray(depths, float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.3))
    ok = np.asarray([t is not None for t in best_t])
    a1.plot(d[ok], [t for t in best_t if t is not None], "o-", color="k", label="simulation (best rate)")
    okt = np.asarray([t is not None for t in th_time])
    whitened = getattr(cfg.data.preprocessing, "value", "") == "whitened" or cfg.data.name.value in ("teacher", "hierarchy")
    theory_label = "theory (Eq. 15) at that rate" + ("" if whitened else " — diagonal approx., Σ11 ≠ I")
    if okt.any():
        a1.plot(d[okt], [t for t in th_time if t is not None], "s--", color="tab:red", mfc="none", label=theory_label)
    a1.set_xscale("log")
    if ok.any():
        a1.set_yscale("log")
    else:
        a1.text(0.5, 0.5, "no depth learned within max_steps", transform=a1.transAxes, ha="center")
    _depth_ticks(a1, depths)
    a1.set_xlabel("depth N_l (layers)")
    a1.set_ylabel("learning time (steps)")
    a1.set_title(f"Learning time vs depth ({dataset})")
    a1.legend(fontsize=8)
    if ok.any():
        a2.plot(d[ok], [b for b in best_lr if b is not None], "o-", color="k", label="empirical best rate")
    a2.plot(d, opt, "--", color="tab:red", label="supplement 1/λ₁(a_opt) ~ 1/(N_l s²)")
    a2.plot(d, 2 * np.asarray(opt), ":", color="tab:orange", label="stability edge 2/λ₁")
    a2.axhline(rates[0], color="0.8", lw=0.8)
    a2.axhline(rates[-1], color="0.8", lw=0.8)
    a2.set_xscale("log")
    a2.set_yscale("log")
    _depth_ticks(a2, depths)
    a2.set_xlabel("depth N_l (layers)")
    a2.set_ylabel("learning rate")
    ttl = "Best learning rate vs depth"
    if lr_exponent is not None:
        ttl += f" (slope {lr_exponent:.2f} for N_l ≥ {cfg.fit_min_depth})"
    a2.set_title(ttl)
    a2.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "depth_sweep")

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(depths) + 2))
    grid = np.where(np.isfinite(lt_grid), lt_grid, np.nan)
    finite = grid[np.isfinite(grid)]
    norm = LogNorm(vmin=max(finite.min(), 1), vmax=max(finite.max(), 2)) if finite.size else None
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis_r", norm=norm)
    for i in range(len(depths)):
        for j in range(len(rates)):
            if div_grid[i, j]:
                ax.text(j, i, "×", ha="center", va="center", color="tab:red", fontsize=9)
            elif not np.isfinite(lt_grid[i, j]):
                ax.text(j, i, "–", ha="center", va="center", color="0.4", fontsize=9)
    ax.set_yticks(range(len(depths)), [str(x) for x in depths])
    step = max(1, len(rates) // 8)
    ax.set_xticks(range(0, len(rates), step), [f"{r:.1e}" for r in rates[::step]], rotation=45)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("depth N_l")
    ax.set_title("Learning time (steps); × diverged, – not learned within max_steps")
    if norm is not None:
        fig.colorbar(im, ax=ax, label="learning time (steps)")
    fig.tight_layout()
    save_figure(fig, out / "depth_sweep_grid")


main = entry("depth_sweep", run)


if __name__ == "__main__":
    main()
