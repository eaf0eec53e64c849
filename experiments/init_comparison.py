"""Fig. 6A: learning time and best learning rate against depth for several initialisations.

The depth-sweep protocol (Fig. 4) for each initial condition: for every depth, a log-spaced grid
of learning rates (times ``seeds`` random draws) trained by full-batch gradient descent on the
statistics, all initialisations of a depth in one jitted, vmapped batch, run in chunks until
every member has crossed the threshold or diverged. Per depth and initialisation the fastest
rate is kept (learning time: the median over seeds; a rate counts only if most seeds learned).
No wasted steps: a member that crossed or diverged leaves the batch, and the seeds of a rate that
can no longer change its init's statistics are stopped (:func:`stop_rule`; recorded as
``stopped``, drawn as small crosses).

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
    rotation, the rotated statistics, the kernels ``engine`` picks for it
    (:meth:`dlnjax.networks.engines.compressed.Compressed.kernels_for`: native on a CPU for
    ``auto`` and ``native``), and the jitted runners by ``last_trained``."""

    rot: Any
    cs: Any
    kernels: str = "xla"
    runners: dict = field(default_factory=dict)


def compressed_setup(problem, engine: str) -> CompressedSetup:
    from dlnjax.networks import compressed
    from dlnjax.networks.engines.compressed import COMPRESSED

    rot = problem.rotation
    return CompressedSetup(rot, compressed.compress_stats(problem.stats64, rot, problem.task.stats.sigma11.dtype),
                           COMPRESSED.kernels_for(engine))


def run_compressed(kind: str, key, cfg: DictConfig, problem, setup: CompressedSetup, widths, rates, thr: float) -> dict:
    """An aligned init (one draw: the decoupled reference is deterministic up to its hidden
    bases) on the exact compressed engine, in its own batch apart from the random starts, which
    cannot be compressed: one member per rate to ``max_steps`` (the engine's member, on the
    kernels of ``setup``; one compilation per ``last_trained`` for every depth)."""
    import jax

    from dlnjax.networks import compressed
    from dlnjax.networks.engines.compressed import COMPRESSED
    from dlnjax.init.registry import INITS

    dtype = problem.task.stats.sigma11.dtype
    cores = INITS[kind].cores(key, widths, setup.rot, l_cap=compressed.capacity(cfg.depths), dtype=dtype,
                              **init_hyperparameters(cfg, problem.task))
    trained_last = len(widths) > 2
    if trained_last not in setup.runners:
        setup.runners[trained_last] = jax.jit(COMPRESSED.make_runner(setup.cs, record_every=int(cfg.record_every),
                                                                     kernels=setup.kernels, last_trained=trained_last))
    member = COMPRESSED.member(setup.cs, cores, thr, record_every=int(cfg.record_every), max_steps=int(cfg.max_steps),
                               last_trained=trained_last, runner=setup.runners[trained_last])
    outs = [member(float(lr), int(cfg.max_steps), None) for lr in rates]
    return dict(
        learning_time=np.asarray([o.cross_step if o.crossed else np.nan for o in outs], np.float64),
        diverged=np.asarray([o.diverged for o in outs]),
        loss=np.stack([o.loss for o in outs]),
        steps=outs[0].record_steps,
    )


@dataclass
class Sweep:
    """What every depth of a run shares: the config, the problem, the inits and their prepared
    stacks, the grid, the keys, the threshold, the progress bar; and what the depths fill in:
    learning times and divergence per init (D, R, seeds), the curves, thresholds and E*."""

    cfg: DictConfig
    problem: Any
    kinds: list
    depths: list
    rates: np.ndarray
    stacks: dict
    k_init: Any
    threshold: Any
    prog: Any
    max_chunks: int
    lt: dict = field(default_factory=dict)
    div: dict = field(default_factory=dict)
    stop: dict = field(default_factory=dict)  # (D, R, seeds): stopped by stop_rule (no longer able to matter)
    curves: dict = field(default_factory=dict)
    thresholds: list = field(default_factory=list)
    e_stars: list = field(default_factory=list)
    setup: CompressedSetup | None = None  # made at the first depth with an aligned init

    def init_key(self, depth: int, kind: str):
        import jax

        return jax.random.fold_in(jax.random.fold_in(self.k_init, depth), self.kinds.index(kind))


def prepare_inits(cfg: DictConfig, stats, kinds: list, n_seeds: int, k_pre, depths: list) -> tuple[dict, int]:
    """Work an init does once before any network is drawn (greedy pretraining: one stack per
    seed, for the deepest network): ``(stacks, pretraining steps per layer)``; ``stacks[kind]``
    is passed back to that init's weights."""
    from dlnjax.init.registry import INITS

    stacks = {}
    p = cfg.pretrain
    n_layers = max(depths) - 2
    prep = dict(hidden_layers=[int(cfg.hidden)] * n_layers, std=float(p.std), lr_scale=float(p.lr_scale),
                steps=int(p.steps), record_every=int(p.record_every),
                on_stack=lambda i, dt: log.info("pretrained stack %d/%d: %d layers x %d steps (%.1fs)", i + 1, n_seeds, n_layers, int(p.steps), dt))
    for kind in kinds:
        prepared = INITS[kind].prepare(k_pre, stats, n_seeds=n_seeds, **prep)
        if prepared is not None:
            stacks[kind] = prepared
    # per layer: a depth-N_l network used N_l - 2 of them
    return stacks, (int(cfg.pretrain.steps) if "pretrained" in stacks else 0)


def load_depth(sw: Sweep, di: int, depth: int) -> bool:
    """Fill depth ``di`` from ``partial/depth<N>.npz`` when an earlier run of this very config
    finished it; False when there is none."""
    done_file = run_dir() / "partial" / f"depth{depth}.npz"
    saved = load_tagged(done_file, sw.cfg)
    if saved is None:
        return False
    for kind in sw.kinds:
        sw.lt[kind][di], sw.div[kind][di] = saved[f"lt_{kind}"], saved[f"div_{kind}"]
        sw.stop[kind][di] = saved[f"stop_{kind}"] if f"stop_{kind}" in saved else False
    sw.curves.update({k: saved[k] for k in saved if k.startswith(("loss_", "steps_"))})
    sw.thresholds.append(float(saved["threshold"]))
    sw.e_stars.append(float(saved["e_star"]))
    sw.prog.update((di + 1) * sw.max_chunks)
    log.info("depth %d: finished in an earlier run of this config, loaded from %s", depth, done_file)
    return True


def stop_rule(index: list, n_rates: int, n_seeds: int, band: float):
    """``stop(t, cross, diverged, running)`` for :func:`dlnjax.measure.sweep.run_batch`: the
    running members that can no longer change their init's statistics (:func:`per_init_statistics`:
    :func:`dlnjax.measure.robust.band_of` on the seed-median curve). Per init, with each member's
    time known (crossed), infinite (diverged, stopped) or at least ``t`` (running), each rate's
    seed median lies between two bounds. Once every rate whose median is still open is above
    ``(1 + band) x`` the fastest known median, the fastest and the band are final; a rate then
    still matters only as the band's interpolation neighbour (the nearest rate on each side whose
    median is finite), so the running seeds of every other rate stop, and so do the running
    seeds of a rate whose median is already fixed."""
    ids: dict = {}
    for m, (kind, ri, si) in enumerate(index):
        ids.setdefault(kind, np.full((n_rates, n_seeds), -1, np.int64))[ri, si] = m

    def stop(t: int, cross: np.ndarray, div: np.ndarray, running: np.ndarray) -> np.ndarray:
        halt = np.zeros_like(running)
        for m_ids in ids.values():
            c, run = cross[m_ids].astype(np.float64), running[m_ids]
            known = np.where(c >= 0, c, np.inf)
            lo = np.median(np.where(run, float(t), known), axis=1)
            hi = np.median(np.where(run, np.inf, known), axis=1)
            fixed = lo == hi
            finite = fixed & np.isfinite(hi)
            if not finite.any():
                continue
            cut = (1.0 + band) * hi[finite].min()
            if (lo[~fixed] <= cut).any():
                continue
            inside = np.nonzero(finite & (hi <= cut))[0]
            j, k = inside.min(), inside.max()
            for r in range(n_rates):
                if not run[r].any():
                    continue
                needed = not fixed[r] and ((r > k and not finite[k + 1:r].any()) or (r < j and not finite[r + 1:j].any()))
                if not needed:
                    halt[m_ids[r][run[r]]] = True
        return halt

    return stop


def full_width_batch(sw: Sweep, di: int, depth: int, widths, kinds: list, thr: float):
    """The random (unaligned) starts of one depth, every init x seed x rate in one vmapped batch
    (:func:`dlnjax.measure.sweep.run_batch`, checkpointed every ``checkpoint_every`` steps):
    ``(result or None, index of (kind, rate, seed) per member)``."""
    import jax.numpy as jnp

    from dlnjax.measure import robust, sweep

    cfg, task = sw.cfg, sw.problem.task
    dtype = task.stats.sigma11.dtype
    members, index = [], []
    for kind in kinds:
        nets = initial_weights(kind, sw.init_key(depth, kind), widths, int(cfg.seeds), cfg, task, sw.stacks, dtype)
        for si, net in enumerate(nets):
            for ri in range(len(sw.rates)):
                members.append(net)
                index.append((kind, ri, si))
    if not members:
        return None, index
    batch = tuple(jnp.stack([m[l] for m in members]) for l in range(len(widths) - 1))
    lrs = np.asarray([sw.rates[ri] for _, ri, _ in index])

    def cb(steps, done, total):
        sw.prog.update(di * sw.max_chunks + steps // int(cfg.chunk_steps), f"depth {depth}: step {steps}, {done}/{total} crossed or diverged")

    state_file = run_dir() / "partial" / f"depth{depth}.state.npz"
    resume = load_tagged(state_file, cfg)
    if resume is not None:
        log.info("depth %d: continuing from step %d (%s)", depth, int(resume["done_steps"]), state_file)
    every = int(cfg.checkpoint_every)

    def on_chunk(snap):
        done = int(snap["done_steps"])
        if done % every < int(cfg.chunk_steps) and done < int(cfg.max_steps):
            save_tagged(state_file, cfg, **snap)

    res = sweep.run_batch(
        task.stats, batch, lrs, threshold=thr, max_steps=int(cfg.max_steps), chunk_steps=int(cfg.chunk_steps),
        record_every=int(cfg.record_every), progress=cb, on_chunk=on_chunk if every > 0 else None, resume=resume,
        engine=cfg.engine.value, stop=stop_rule(index, len(sw.rates), int(cfg.seeds), robust.BAND),
        rotation=sw.problem.full_width_rotation(cfg),
        capacity=max(max(int(d) for d in cfg.depths) - 3, 1) if bool(cfg.stack_depths) else None,
    )
    log.info("depth %d: %d of %d member-steps run (finished members leave the batch; %d members stopped)", depth,
             res.member_steps, len(index) * res.steps_run, int(res.stopped.sum()))
    return res, index


def run_depth(sw: Sweep, di: int, depth: int) -> None:
    """One depth: aligned starts on the compressed engine, the others at full width; the
    learning times, the best rate's curve per init, and the depth's checkpoint."""
    from dlnjax.init.registry import INITS
    from dlnjax.measure import sweep

    cfg, stats = sw.cfg, sw.problem.task.stats
    t0 = time.time()
    widths = sweep.widths_for(stats.n_in, stats.n_out, depth, int(cfg.hidden))
    thr, e_star = sw.threshold.resolve_for(sw.problem.task, widths)
    # aligned starts run compressed (exact), each in its own batch; the others at full width
    compressed_kinds = [k for k in sw.kinds if bool(cfg.compress) and INITS[k].aligned]
    if compressed_kinds and sw.setup is None:
        sw.setup = compressed_setup(sw.problem, cfg.engine.value)
    dec = {k: run_compressed(k, sw.init_key(depth, k), cfg, sw.problem, sw.setup, widths, sw.rates, thr) for k in compressed_kinds}
    sw.thresholds.append(thr)
    sw.e_stars.append(e_star)
    res, index = full_width_batch(sw, di, depth, widths, [k for k in sw.kinds if k not in compressed_kinds], thr)
    sw.prog.update((di + 1) * sw.max_chunks)
    for m, (kind, ri, si) in enumerate(index):
        sw.lt[kind][di, ri, si] = res.learning_time[m]
        sw.div[kind][di, ri, si] = res.diverged[m]
        sw.stop[kind][di, ri, si] = res.stopped[m]
    for k, c in dec.items():
        sw.lt[k][di, :, 0], sw.div[k][di, :, 0] = c["learning_time"], c["diverged"]
    rec_steps = res.record_steps if res is not None else next(iter(dec.values()))["steps"]
    for kind in sw.kinds:
        med = seed_median(sw.lt[kind][di])
        j = None if np.all(np.isnan(med)) else int(np.nanargmin(med))
        if j is not None and kind in compressed_kinds:
            c = np.full(len(rec_steps), np.nan)
            k = min(len(rec_steps), dec[kind]["loss"].shape[1])
            c[:k] = dec[kind]["loss"][j, :k]
            sw.curves[f"loss_{kind}_depth{depth}"] = c
        elif j is not None:
            sw.curves[f"loss_{kind}_depth{depth}"] = res.loss[index.index((kind, j, 0))]
    sw.curves[f"steps_depth{depth}"] = rec_steps
    mine = {k: v for k, v in sw.curves.items() if k.endswith(f"_depth{depth}")}
    save_tagged(run_dir() / "partial" / f"depth{depth}.npz", cfg, threshold=np.asarray(thr), e_star=np.asarray(e_star),
                **{f"lt_{k}": sw.lt[k][di] for k in sw.kinds}, **{f"div_{k}": sw.div[k][di] for k in sw.kinds},
                **{f"stop_{k}": sw.stop[k][di] for k in sw.kinds}, **mine)
    (run_dir() / "partial" / f"depth{depth}.state.npz").unlink(missing_ok=True)
    log.info(
        "depth %d: %s (%.1fs)", depth,
        ", ".join(f"{k} {np.nanmin(seed_median(sw.lt[k][di])) if not np.all(np.isnan(seed_median(sw.lt[k][di]))) else None}" for k in sw.kinds),
        time.time() - t0,
    )


def per_init_statistics(sw: Sweep) -> dict:
    """Per init: the same statistics as Fig. 4 (:func:`dlnjax.measure.robust.band_of`) on the
    seed-median curve of each depth: the learning time is the fastest, the best rate the centre
    of the 10% band; with the growth, the slope of the best rate and the failure counts."""
    from dlnjax.measure import headline, robust

    rates, depths, cfg = sw.rates, sw.depths, sw.cfg
    per_init = {}
    for kind in sw.kinds:
        med = seed_median(sw.lt[kind])  # (D, R)
        best_t, fast_lr, best_lr, bands = [], [], [], []
        for di in range(len(depths)):
            ok = np.isfinite(med[di])
            if not ok.any():
                best_t.append(None), fast_lr.append(None), best_lr.append(None), bands.append(None)
                continue
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
            diverged=[int(x) for x in sw.div[kind].any(axis=2).sum(axis=1)],
            not_learned=[int(x) for x in (np.isnan(med) & ~sw.div[kind].any(axis=2) & ~sw.stop[kind].any(axis=2)).sum(axis=1)],
            # rates with a seed stopped once it could no longer change this init's statistics (stop_rule)
            stopped=[int(x) for x in sw.stop[kind].any(axis=2).sum(axis=1)],
            best_rate_at_grid_edge=[b is not None and (b == rates[0] or b == rates[-1]) for b in fast_lr],
        )
    return per_init


def decoupled_theory(sw: Sweep, per_init: dict) -> list | None:
    """Eq. 15's learning time of the decoupled start at its fastest rate, per depth (None
    without a decoupled start)."""
    from dlnjax.measure import sweep

    cfg, task = sw.cfg, sw.problem.task
    if "decoupled" not in sw.kinds:
        return None
    theory_t = []
    for d, lr in zip(sw.depths, per_init["decoupled"]["fastest_rate"]):
        if lr is None:
            theory_t.append(None)
            continue
        rank = min(sweep.widths_for(task.stats.n_in, task.stats.n_out, d, int(cfg.hidden)))
        v = sweep.theory_learning_time(task, lr, d, float(cfg.u0), rank, float(cfg.threshold.eps), t_max=20.0 * int(cfg.max_steps))
        theory_t.append(v if np.isfinite(v) else None)
    return theory_t


def run(cfg: DictConfig) -> dict:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax.init import functions as init_fns
    from dlnjax.measure.thresholds import Threshold

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    ds, task = problem.ds, problem.task
    stats = task.stats
    depths = sorted(int(d) for d in cfg.depths)
    kinds = list(dict.fromkeys(k.value for k in cfg.inits))
    rates = learning_rate_grid(cfg)
    n_r, n_seeds = len(rates), int(cfg.seeds)
    k_pre, k_init, k_example = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    stacks, pre_steps = prepare_inits(cfg, stats, kinds, n_seeds, k_pre, depths)
    # one threshold for every start (threshold.reference; zero_map by default here)
    max_chunks = -(-int(cfg.max_steps) // int(cfg.chunk_steps))
    sw = Sweep(cfg, problem, kinds, depths, rates, stacks, k_init, Threshold.from_config(cfg.threshold),
               Progress("init_comparison", len(depths) * max_chunks), max_chunks,
               lt={k: np.full((len(depths), n_r, n_seeds), np.nan) for k in kinds},
               div={k: np.zeros((len(depths), n_r, n_seeds), bool) for k in kinds},
               stop={k: np.zeros((len(depths), n_r, n_seeds), bool) for k in kinds})
    for di, depth in enumerate(depths):
        if not load_depth(sw, di, depth):
            run_depth(sw, di, depth)
    per_init = per_init_statistics(sw)
    theory_t = decoupled_theory(sw, per_init)
    opt = [theory_optimal_rate(task, d) for d in depths]
    q = np.asarray(init_fns.haar_orthogonal(k_example, int(cfg.orthogonal_example), dtype=jnp.float32), np.float64)
    eig = np.linalg.eigvals(q)
    figure(out, InitComparisonResult(
        dataset=ds.name, depths=depths, learning_rates=rates, kinds=kinds, per_init=per_init, theory_learning_time=theory_t,
        theory_optimal_rate=opt, orthogonal_eigenvalues=eig, max_steps=int(cfg.max_steps), whitened=problem.whitened,
        stopped={k: sw.stop[k].any(axis=2) for k in kinds},
    ))
    pre = "pretrained" in stacks
    summary = dict(
        experiment="init_comparison", dataset=ds.name, n_train=ds.n_train,
        preprocessing=ds.info.get("preprocessing", "none"), depths=depths, hidden=int(cfg.hidden), inits=kinds,
        seeds=n_seeds, learning_rates=rates, **per_init,
        pretraining_steps_per_layer=pre_steps if pre else None,
        pretraining_steps=[pre_steps * (d - 2) for d in depths] if pre else None,
        pretraining_learning_rates=stacks["pretrained"][0].learning_rates if pre else None,
        theory_learning_time_decoupled=theory_t,
        theory_optimal_learning_rate_decoupled=opt,
        orthogonal_example_max_abs_eigenvalue_deviation=float(np.max(np.abs(np.abs(eig) - 1.0))),
        threshold=dict(kind=cfg.threshold.kind.value, eps=float(cfg.threshold.eps), value_per_depth=sw.thresholds,
                       best_error_per_depth=sw.e_stars, zero_map_error=0.5 * float(stats.tr33)),
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )
    arrays = dict(depths=np.asarray(depths), learning_rates=rates, orthogonal_eigenvalues=eig, **sw.curves)
    for kind in kinds:
        arrays[f"learning_time_{kind}"] = sw.lt[kind]
        arrays[f"diverged_{kind}"] = sw.div[kind]
        arrays[f"stopped_{kind}"] = sw.stop[kind]
    write_results(out, summary, **arrays)
    log.info("learning_time_growth: %s; wrote %s", ", ".join(f"{k} {per_init[k]['learning_time_growth']}" for k in kinds), out)
    return summary


main = entry("init_comparison", run)


if __name__ == "__main__":
    main()
