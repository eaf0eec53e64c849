"""Fig. 6A: learning time and best learning rate against depth for several initialisations.

The depth-sweep protocol (Fig. 4) for each initial condition: for every depth, a log-spaced grid
of learning rates (times ``seeds`` random draws) trained by full-batch gradient descent on the
statistics, all initialisations of a depth in one jitted, vmapped batch, run in chunks until
every member has crossed the threshold or diverged. Per depth and initialisation the fastest
rate is kept (learning time: the median over seeds; a rate counts only if most seeds learned).

Initialisations (``inits``):
  scaled_gaussian  i.i.d. N(0, gain^2 / N_in): norm-preserving on average (Glorot-style);
  orthogonal       Haar (semi-)orthogonal layers times ``gain`` (W^T W = I for gain 1);
  pretrained       greedy layer-wise autoencoder pretraining of the hidden layers
                   (:mod:`dlnjax.init.pretrain`; one stack per seed, pretrained once for the deepest
                   network and cut to each depth, as greedy pretraining does not look ahead), the
                   output layer i.i.d. N(0, pretrain.top_std^2);
  decoupled        every task mode at strength u0, balanced (the reference of Fig. 4), with the
                   learning time Eq. 15 predicts at its chosen rate drawn over it.

Threshold: ``E <= E* + eps (1/2 tr Sigma33 - E*)`` (relative; the zero map's error as the common
reference, since random starts begin at different errors) or ``threshold.value`` (absolute).
Learning times count fine-tuning steps only; the pretraining steps are reported beside them.
Each finished depth is saved to ``partial/`` (and, every ``checkpoint_every`` steps, the whole
training state), so a killed run re-run in the same directory continues where it stopped.
Right panel: the eigenvalues of one Haar orthogonal matrix (``orthogonal_example`` square) on
the unit circle.

    python -m experiments.init_comparison                          # embedded digits, a few minutes
    python -m experiments.init_comparison data=fashion_mnist
    python -m experiments.init_comparison experiment=paper         # Fig. 4's protocol (GPU)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from .common import Progress, entry, resolved_config, run_dir, write_results
from ._shared.checkpoint import load_tagged, save_tagged
from ._shared.plots.init_comparison import InitComparisonResult, figure
from ._shared.problem import learning_rate_grid, prepare, theory_optimal_rate

log = logging.getLogger("dlnjax")

def seed_median(lt: np.ndarray) -> np.ndarray:
    """Median over the last (seed) axis with a failure counted as infinitely slow (nan if most failed)."""
    x = np.where(np.isnan(lt), np.inf, lt)
    m = np.median(x, axis=-1)
    return np.where(np.isfinite(m), m, np.nan)


def init_hyperparameters(cfg: DictConfig, task) -> dict:
    """Every init's hyper-parameters from the config (each init of :data:`dlnjax.init.registry.INITS`
    reads the ones it needs)."""
    return dict(u0=float(cfg.u0), u_basis=task.u, v_basis=task.v, gain=float(cfg.gain), top_std=float(cfg.pretrain.top_std),
                std=float(cfg.init_std))


def initial_weights(kind: str, key, widths, n_seeds: int, cfg: DictConfig, task, stacks, dtype) -> list[tuple]:
    """``n_seeds`` networks of one initialisation (:meth:`dlnjax.init.registry.Init.networks`; the
    decoupled reference is deterministic up to its hidden bases: one draw)."""
    from dlnjax.init.registry import INITS

    return INITS[kind].networks(key, widths, n_seeds, dtype=dtype, prepared=stacks.get(kind), **init_hyperparameters(cfg, task))


@dataclass
class CompressedSetup:
    """The compressed engine's inputs for a run (made once by :func:`compressed_setup`): the input
    rotation, the rotated statistics, and the jitted runners by ``last_trained``."""

    rot: Any
    cs: Any
    runners: dict = field(default_factory=dict)


def compressed_setup(problem) -> CompressedSetup:
    from dlnjax.networks import compressed

    rot = compressed.rotate_inputs(problem.stats64.sigma11)
    return CompressedSetup(rot, compressed.compress_stats(problem.stats64, rot, problem.task.stats.sigma11.dtype))


def run_compressed(kind: str, key, cfg: DictConfig, problem, setup: CompressedSetup, widths, rates, thr: float) -> dict:
    """An aligned init (one draw: the decoupled reference is deterministic up to its hidden
    bases) on the exact compressed engine, in its own batch apart from the random starts, which
    cannot be compressed: one member per rate to ``max_steps``."""
    import jax

    from dlnjax.networks import compressed
    from dlnjax.init.registry import INITS

    rot, cs, runners = setup.rot, setup.cs, setup.runners
    dtype = problem.task.stats.sigma11.dtype
    depth = len(widths)
    cores = INITS[kind].cores(key, widths, rot, l_cap=compressed.capacity(cfg.depths), dtype=dtype,
                              **init_hyperparameters(cfg, problem.task))
    trained_last = depth > 2
    if trained_last not in runners:
        runners[trained_last] = jax.jit(compressed.make_member_runner(cs, record_every=int(cfg.record_every), last_trained=trained_last))
    member = compressed.member_fn(cs, cores, thr, record_every=int(cfg.record_every), max_steps=int(cfg.max_steps),
                                  last_trained=trained_last, runner=runners[trained_last])
    outs = [member(float(lr), int(cfg.max_steps), None) for lr in rates]
    return dict(
        learning_time=np.asarray([o.cross_step if o.crossed else np.nan for o in outs], np.float64),
        diverged=np.asarray([o.diverged for o in outs]),
        loss=np.stack([o.loss for o in outs]),
        steps=outs[0].record_steps,
    )


def run(cfg: DictConfig) -> dict:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax.init import functions as init_fns
    from dlnjax.measure import headline, robust, sweep
    from dlnjax.init.registry import INITS
    from dlnjax.measure.thresholds import Threshold

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    ds, task = problem.ds, problem.task
    setup: CompressedSetup | None = None  # made at the first depth with an aligned init
    stats = task.stats
    dtype = stats.sigma11.dtype
    depths = sorted(int(d) for d in cfg.depths)
    kinds = list(dict.fromkeys(k.value for k in cfg.inits))
    rates = learning_rate_grid(cfg)
    n_r, n_seeds = len(rates), int(cfg.seeds)
    key = jax.random.PRNGKey(cfg.seed)
    k_pre, k_init, k_example = jax.random.split(key, 3)

    # work an init does once before any network is drawn (greedy pretraining: one stack per seed,
    # for the deepest network); stacks[kind] is passed back to that init's weights
    stacks, pre_steps = {}, 0
    p = cfg.pretrain
    n_layers = max(depths) - 2
    prep = dict(hidden_layers=[int(cfg.hidden)] * n_layers, std=float(p.std), lr_scale=float(p.lr_scale),
                steps=int(p.steps), record_every=int(p.record_every),
                on_stack=lambda i, dt: log.info("pretrained stack %d/%d: %d layers x %d steps (%.1fs)", i + 1, n_seeds, n_layers, int(p.steps), dt))
    for kind in kinds:
        prepared = INITS[kind].prepare(k_pre, stats, n_seeds=n_seeds, **prep)
        if prepared is not None:
            stacks[kind] = prepared
    if "pretrained" in stacks:
        pre_steps = int(cfg.pretrain.steps)  # per layer: a depth-N_l network used N_l - 2 of them

    def init_key(depth: int, kind: str):
        return jax.random.fold_in(jax.random.fold_in(k_init, depth), kinds.index(kind))

    # one threshold for every start (threshold.reference; zero_map by default here)
    threshold = Threshold.from_config(cfg.threshold)
    max_chunks = -(-int(cfg.max_steps) // int(cfg.chunk_steps))
    prog = Progress("init_comparison", len(depths) * max_chunks)
    # lt[kind]: (D, R, seeds); diverged[kind]: (D, R, seeds)
    lt = {k: np.full((len(depths), n_r, n_seeds), np.nan) for k in kinds}
    div = {k: np.zeros((len(depths), n_r, n_seeds), bool) for k in kinds}
    curves = {}
    thresholds, e_stars = [], []
    for di, depth in enumerate(depths):
        t0 = time.time()
        widths = sweep.widths_for(stats.n_in, stats.n_out, depth, int(cfg.hidden))
        done_file = out / "partial" / f"depth{depth}.npz"
        saved = load_tagged(done_file, cfg)
        if saved is not None:  # finished in an earlier run of this very config
            for kind in kinds:
                lt[kind][di], div[kind][di] = saved[f"lt_{kind}"], saved[f"div_{kind}"]
            curves.update({k: saved[k] for k in saved if k.startswith(("loss_", "steps_"))})
            thresholds.append(float(saved["threshold"]))
            e_stars.append(float(saved["e_star"]))
            prog.update((di + 1) * max_chunks)
            log.info("depth %d: finished in an earlier run of this config, loaded from %s", depth, done_file)
            continue
        thr, e_star = threshold.resolve_for(task, widths)
        # aligned starts run compressed (exact), each in its own batch; the others at full width
        compressed_kinds = [k for k in kinds if bool(cfg.compress) and INITS[k].aligned]
        if compressed_kinds and setup is None:
            setup = compressed_setup(problem)
        dec = {k: run_compressed(k, init_key(depth, k), cfg, problem, setup, widths, rates, thr) for k in compressed_kinds}
        members, index = [], []
        for kind in kinds:
            if kind in compressed_kinds:
                continue
            nets = initial_weights(kind, init_key(depth, kind), widths, n_seeds, cfg, task, stacks, dtype)
            for si, net in enumerate(nets):
                for ri in range(n_r):
                    members.append(net)
                    index.append((kind, ri, si))
        batch = tuple(jnp.stack([m[l] for m in members]) for l in range(len(widths) - 1)) if members else None
        lrs = np.asarray([rates[ri] for _, ri, _ in index])
        thresholds.append(thr)
        e_stars.append(e_star)

        def cb(steps, done, total, di=di, depth=depth):
            prog.update(di * max_chunks + steps // int(cfg.chunk_steps), f"depth {depth}: step {steps}, {done}/{total} crossed or diverged")

        state_file = out / "partial" / f"depth{depth}.state.npz"
        resume = load_tagged(state_file, cfg)
        if resume is not None:
            log.info("depth %d: continuing from step %d (%s)", depth, int(resume["done_steps"]), state_file)
        every = int(cfg.checkpoint_every)

        def on_chunk(snap, state_file=state_file):
            done = int(snap["done_steps"])
            if done % every < int(cfg.chunk_steps) and done < int(cfg.max_steps):
                save_tagged(state_file, cfg, **snap)

        res = sweep.run_batch(
            stats, batch, lrs, threshold=thr, max_steps=int(cfg.max_steps), chunk_steps=int(cfg.chunk_steps),
            record_every=int(cfg.record_every), progress=cb, on_chunk=on_chunk if every > 0 else None, resume=resume,
            engine=cfg.engine.value,
        ) if members else None
        prog.update((di + 1) * max_chunks)
        for m, (kind, ri, si) in enumerate(index):
            lt[kind][di, ri, si] = res.learning_time[m]
            div[kind][di, ri, si] = res.diverged[m]
        for k, c in dec.items():
            lt[k][di, :, 0], div[k][di, :, 0] = c["learning_time"], c["diverged"]
        rec_steps = res.record_steps if res is not None else next(iter(dec.values()))["steps"]
        for kind in kinds:
            med = seed_median(lt[kind][di])
            j = None if np.all(np.isnan(med)) else int(np.nanargmin(med))
            if j is not None and kind in compressed_kinds:
                c = np.full(len(rec_steps), np.nan)
                k = min(len(rec_steps), dec[kind]["loss"].shape[1])
                c[:k] = dec[kind]["loss"][j, :k]
                curves[f"loss_{kind}_depth{depth}"] = c
            elif j is not None:
                m = index.index((kind, j, 0))
                curves[f"loss_{kind}_depth{depth}"] = res.loss[m]
        curves[f"steps_depth{depth}"] = rec_steps
        mine = {k: v for k, v in curves.items() if k.endswith(f"_depth{depth}")}
        save_tagged(done_file, cfg, threshold=np.asarray(thr), e_star=np.asarray(e_star),
                 **{f"lt_{k}": lt[k][di] for k in kinds}, **{f"div_{k}": div[k][di] for k in kinds}, **mine)
        state_file.unlink(missing_ok=True)
        log.info(
            "depth %d: %s (%.1fs)", depth,
            ", ".join(f"{k} {np.nanmin(seed_median(lt[k][di])) if not np.all(np.isnan(seed_median(lt[k][di]))) else None}" for k in kinds),
            time.time() - t0,
        )

    per_init = {}
    for kind in kinds:
        med = seed_median(lt[kind])  # (D, R)
        best_t, fast_lr, best_lr, bands = [], [], [], []
        for di in range(len(depths)):
            ok = np.isfinite(med[di])
            if not ok.any():
                best_t.append(None), fast_lr.append(None), best_lr.append(None), bands.append(None)
                continue
            # the same statistics as Fig. 4 (dlnjax.measure.robust.band_of) on the seed-median curve: the
            # learning time is the fastest, the best rate the centre of the 10% band
            t_min, fastest, lo, hi = robust.band_of(rates[ok], med[di][ok], robust.BAND)
            best_t.append(t_min), fast_lr.append(fastest), best_lr.append(float(np.sqrt(lo * hi))), bands.append([lo, hi])
        growth = best_t[-1] / best_t[0] if (best_t[0] and best_t[-1]) else None
        fit = [(d, b) for d, b in zip(depths, best_lr) if d >= cfg.fit_min_depth]
        per_init[kind] = dict(
            learning_time=best_t,
            best_learning_rate=best_lr,
            best_rate_band=bands,
            fastest_rate=fast_lr,
            learning_time_growth=growth,
            lr_exponent=headline.loglog_slope([d for d, _ in fit], [b for _, b in fit]),
            diverged=[int(x) for x in div[kind].any(axis=2).sum(axis=1)],
            not_learned=[int(x) for x in (np.isnan(med) & ~div[kind].any(axis=2)).sum(axis=1)],
            best_rate_at_grid_edge=[b is not None and (b == rates[0] or b == rates[-1]) for b in fast_lr],
        )
    theory_t = None
    if "decoupled" in kinds:
        theory_t = []
        for d, lr in zip(depths, per_init["decoupled"]["fastest_rate"]):
            if lr is None:
                theory_t.append(None)
                continue
            rank = min(sweep.widths_for(stats.n_in, stats.n_out, d, int(cfg.hidden)))
            v = sweep.theory_learning_time(task, lr, d, float(cfg.u0), rank, float(cfg.threshold.eps), t_max=20.0 * int(cfg.max_steps))
            theory_t.append(v if np.isfinite(v) else None)
    opt = [theory_optimal_rate(task, d) for d in depths]

    q = np.asarray(init_fns.haar_orthogonal(k_example, int(cfg.orthogonal_example), dtype=jnp.float32), np.float64)
    eig = np.linalg.eigvals(q)
    figure(out, InitComparisonResult(
        dataset=ds.name, depths=depths, learning_rates=rates, kinds=kinds, per_init=per_init, theory_learning_time=theory_t,
        theory_optimal_rate=opt, orthogonal_eigenvalues=eig, max_steps=int(cfg.max_steps), whitened=problem.whitened,
    ))

    summary = dict(
        experiment="init_comparison",
        dataset=ds.name,
        n_train=ds.n_train,
        preprocessing=ds.info.get("preprocessing", "none"),
        depths=depths,
        hidden=int(cfg.hidden),
        inits=kinds,
        seeds=n_seeds,
        learning_rates=rates,
        **per_init,
        pretraining_steps_per_layer=pre_steps if "pretrained" in stacks else None,
        pretraining_steps=[pre_steps * (d - 2) for d in depths] if "pretrained" in stacks else None,
        pretraining_learning_rates=stacks["pretrained"][0].learning_rates if "pretrained" in stacks else None,
        theory_learning_time_decoupled=theory_t,
        theory_optimal_learning_rate_decoupled=opt,
        orthogonal_example_max_abs_eigenvalue_deviation=float(np.max(np.abs(np.abs(eig) - 1.0))),
        threshold=dict(kind=cfg.threshold.kind.value, eps=float(cfg.threshold.eps), value_per_depth=thresholds, best_error_per_depth=e_stars, zero_map_error=0.5 * float(stats.tr33)),
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )
    arrays = dict(depths=np.asarray(depths), learning_rates=rates, orthogonal_eigenvalues=eig, **curves)
    for kind in kinds:
        arrays[f"learning_time_{kind}"] = lt[kind]
        arrays[f"diverged_{kind}"] = div[kind]
    write_results(out, summary, **arrays)
    log.info(
        "learning_time_growth: %s; wrote %s",
        ", ".join(f"{k} {per_init[k]['learning_time_growth']}" for k in kinds), out,
    )
    return summary


main = entry("init_comparison", run)


if __name__ == "__main__":
    main()
