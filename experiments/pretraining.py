"""Fig. 5: the consistency condition for greedy pretraining (Eq. 18) and pretrained vs random
learning curves of a five-layer linear network.

Left/centre: a block of the raw input correlation ``Sigma11`` (the ``submatrix`` pixels of
largest variance) beside the leading block of ``V^T Sigma11 V``, V the right singular vectors of
``Sigma31`` (the task's r directions first, completed by the eigenvectors of Sigma11 on their
complement, :func:`dlnjax.init.pretrain.completed_basis`). "Approximately diagonal" is the share of
the squared Frobenius mass of the task rows that lies off the diagonal
(:func:`dlnjax.init.pretrain.offdiag_fraction`), against the same number for random orthonormal
directions (the baseline it must beat).

Right: training error of a ``depth``-layer network fine-tuned on the task by full-batch gradient
descent, from i.i.d. N(0, init_std^2) weights (black) and from greedy layer-wise pretraining
(red: each hidden layer the encoder of a linear autoencoder on the representation below it,
``pretrain.steps`` steps each at ``pretrain.lr_scale / lambda_max``; the output layer i.i.d.
N(0, pretrain.top_std^2)), the red curve shifted right by the steps spent pretraining. Both
inits run the same log-spaced grid of fine-tuning rates in one vmapped batch; each is shown at
its fastest rate, and the random start also at the pretrained start's rate (dashed: the
comparison at one common rate, as in the paper's figure). Learning time: the first step with ``E <= E* + eps (1/2 tr Sigma33 - E*)``
(E* the best error of the architecture's rank, 1/2 tr Sigma33 the zero map's error: one
threshold for both starts). Analytic references drawn: E* and the threshold on the fine-tuning
panel, each autoencoder's best reconstruction error ``1/2 sum_{a > h} lambda_a(C_l)`` on the
pretraining panel.

    python -m experiments.pretraining                              # embedded digits, ~1 min
    python -m experiments.pretraining data=fashion_mnist
    python -m experiments.pretraining experiment=paper             # full MNIST, 1000 hidden (GPU)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig

from .common import Progress, entry, resolved_config, run_dir, write_results
from ._shared.plots.pretraining import PretrainingResult, figure
from ._shared.problem import learning_rate_grid, prepare

if TYPE_CHECKING:  # keeps JAX out of the import (the app imports JAX only once it runs)
    from dlnjax.init.pretrain import Pretrained

log = logging.getLogger("dlnjax")


@dataclass(frozen=True)
class Consistency:
    """The consistency condition (Eq. 18): off-diagonal shares and the blocks the figure shows."""

    offdiag: float
    per_mode: list[float]
    offdiag_random: float
    offdiag_random_std: float
    sigma11_block: np.ndarray  # Sigma11 on the ``k`` most variable pixels
    rotated_block: np.ndarray  # leading k x k block of V^T Sigma11 V
    pixels: np.ndarray


@dataclass(frozen=True)
class Starts:
    """Both initial networks and how the pretrained one treats the task's directions."""

    w_rand: Any
    w_pre: Any
    dec_rand: float
    dec_pre: float
    mode_gain: np.ndarray


@dataclass(frozen=True)
class FineTune:
    """The fine-tuning batch (random starts first, then pretrained) and its threshold."""

    res: Any  # sweep.run_batch's result
    rates: np.ndarray
    n_r: int
    eps: float
    thr: float
    e_star: float
    lt_rand: np.ndarray
    lt_pre: np.ndarray


@dataclass(frozen=True)
class LearningTimes:
    """Each start's best learning time and the ratios, at each one's best rate and at one rate."""

    i_rand: int | None
    i_pre: int | None
    t_rand: float | None
    t_pre_ft: float | None
    t_pre: float | None
    ratio: float | None
    t_rand_same: float | None
    ratio_same: float | None


def best_member(lt: np.ndarray) -> int | None:
    """Index of the fastest member (nan = not learned), None if none learned."""
    return None if np.all(np.isnan(lt)) else int(np.nanargmin(lt))


def _consistency(stats: Any, v_task: np.ndarray, k_basis: Any, draws: int, submatrix: int) -> Consistency:
    """Off-diagonal shares of Sigma11 in the task's basis and in random ones, and the blocks shown."""
    from dlnjax.init import pretrain

    r = v_task.shape[1]
    s11 = np.asarray(stats.sigma11, np.float64)
    offdiag = pretrain.offdiag_fraction(s11, v_task)
    per_mode = [pretrain.offdiag_fraction(s11, v_task[:, a : a + 1]) for a in range(r)]
    off_rand, off_rand_std = pretrain.offdiag_fraction_random(s11, r, k_basis, draws)
    basis = pretrain.completed_basis(s11, v_task)
    rotated = basis.T @ s11 @ basis
    k = min(submatrix, s11.shape[0])
    pixels = np.sort(np.argsort(np.diagonal(s11))[::-1][:k])
    return Consistency(offdiag=offdiag, per_mode=per_mode, offdiag_random=off_rand, offdiag_random_std=off_rand_std,
                       sigma11_block=s11[np.ix_(pixels, pixels)], rotated_block=rotated[:k, :k], pixels=pixels)


def _greedy_pretrain(k_pre: Any, stats: Any, widths: list[int], p: DictConfig) -> "Pretrained":
    """Greedy layer-wise pretraining of the hidden layers (``cfg.pretrain``)."""
    from dlnjax.init import pretrain

    return pretrain.greedy_pretrain(
        k_pre, stats.sigma11, widths[1:-1], std=float(p.std), lr_scale=float(p.lr_scale),
        steps=int(p.steps), record_every=int(p.record_every),
    )


def _autoencoder_floors(sigma11: Any, layers: list) -> list[float]:
    """Each autoencoder's best reconstruction error, 1/2 sum_{a > h} lambda_a(C_l)."""
    floors = []
    cov = np.asarray(sigma11, np.float64)
    for w in layers:
        lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
        floors.append(0.5 * float(np.sum(lam[w.shape[0] :])))
        w64 = np.asarray(w, np.float64)
        cov = w64 @ cov @ w64.T
    return floors


def _starts(k_rand: Any, k_top: Any, pre: "Pretrained", widths: list[int], cfg: DictConfig, stats: Any,
            v_task: np.ndarray) -> Starts:
    """The pretrained and the random start, their decoupling and the pretrained task-mode gain."""
    from dlnjax.init import functions as init_fns
    from dlnjax.init import pretrain

    w_pre = pretrain.pretrained_network(k_top, pre, int(cfg.depth), stats.n_out, float(cfg.pretrain.top_std))
    w_rand = init_fns.small_gaussian(k_rand, widths, float(cfg.init_std), dtype=stats.sigma11.dtype)
    dec_pre = pretrain.decoupling_offdiag(w_pre[0], v_task)
    dec_rand = pretrain.decoupling_offdiag(w_rand[0], v_task)
    lower = np.asarray(w_pre[0], np.float64)
    for w in w_pre[1:-1]:
        lower = np.asarray(w, np.float64) @ lower
    mode_gain = np.linalg.norm(lower @ v_task, axis=0)  # how strongly the pretrained stack passes each task direction
    return Starts(w_rand=w_rand, w_pre=w_pre, dec_rand=dec_rand, dec_pre=dec_pre, mode_gain=mode_gain)


def _fine_tune(cfg: DictConfig, task: Any, widths: list[int], starts: Starts, rotation: Any = None) -> FineTune:
    """Fine-tune both starts x every rate in one vmapped batch, to one common threshold
    (``rotation``: with the inputs in Sigma11's eigenbasis, ``rotate_inputs``)."""
    import jax.numpy as jnp

    from dlnjax.measure import sweep
    from dlnjax.measure.thresholds import Threshold

    rates = learning_rate_grid(cfg)
    n_r = len(rates)
    batch = tuple(jnp.concatenate([jnp.broadcast_to(a, (n_r,) + a.shape), jnp.broadcast_to(b, (n_r,) + b.shape)])
                  for a, b in zip(starts.w_rand, starts.w_pre))
    eps = float(cfg.threshold.eps)
    # one threshold for both starts: by default relative to the zero map's error
    thr, e_star = Threshold.from_config(cfg.threshold).resolve_for(task, widths)
    max_chunks = -(-int(cfg.max_steps) // int(cfg.chunk_steps))
    ft_prog = Progress("fine-tuning", max_chunks)
    res = sweep.run_batch(
        task.stats, batch, np.concatenate([rates, rates]), threshold=thr, max_steps=int(cfg.max_steps),
        chunk_steps=int(cfg.chunk_steps), record_every=int(cfg.record_every),
        progress=lambda s, done, tot: ft_prog.update(s // int(cfg.chunk_steps), f"step {s}: {done}/{tot} crossed or diverged"),
        engine=cfg.engine.value, rotation=rotation,
    )
    return FineTune(res=res, rates=rates, n_r=n_r, eps=eps, thr=thr, e_star=e_star,
                    lt_rand=res.learning_time[:n_r], lt_pre=res.learning_time[n_r:])


def _learning_times(lt_rand: np.ndarray, lt_pre: np.ndarray, pretraining_steps: int) -> LearningTimes:
    """Best learning times (the pretrained one including its pretraining steps) and their ratios."""
    i_rand, i_pre = best_member(lt_rand), best_member(lt_pre)
    t_rand = None if i_rand is None else float(lt_rand[i_rand])
    t_pre_ft = None if i_pre is None else float(lt_pre[i_pre])
    t_pre = None if t_pre_ft is None else t_pre_ft + pretraining_steps
    ratio = t_rand / t_pre if (t_rand is not None and t_pre) else None
    # the same comparison at one common rate (the pretrained start's best): the paper's curves
    t_rand_same = None if i_pre is None or np.isnan(lt_rand[i_pre]) else float(lt_rand[i_pre])
    ratio_same = t_rand_same / t_pre if (t_rand_same is not None and t_pre) else None
    return LearningTimes(i_rand=i_rand, i_pre=i_pre, t_rand=t_rand, t_pre_ft=t_pre_ft, t_pre=t_pre, ratio=ratio,
                         t_rand_same=t_rand_same, ratio_same=ratio_same)


def _figure_result(dataset: str, depth: int, init_std: float, task_modes: int, c: Consistency, pre: "Pretrained",
                   floors: list[float], ft: FineTune, lt: LearningTimes) -> PretrainingResult:
    """What the figure draws, as plain values."""
    res, n_r = ft.res, ft.n_r
    return PretrainingResult(
        dataset=dataset, depth=depth, init_std=init_std, sigma11_block=c.sigma11_block,
        rotated_block=c.rotated_block, task_modes=task_modes, offdiag=c.offdiag, offdiag_random=c.offdiag_random,
        pretrained=pre, best_errors=floors, learning_rates=ft.rates, steps=res.record_steps,
        loss_random=res.loss[:n_r], loss_pretrained=res.loss[n_r:], learning_time_random=ft.lt_rand,
        learning_time_pretrained=ft.lt_pre, best_random=lt.i_rand, best_pretrained=lt.i_pre, threshold=ft.thr,
        best_error=ft.e_star,
    )


def _summary(cfg: DictConfig, ds: Any, stats: Any, task_modes: int, c: Consistency, pre: "Pretrained",
             floors: list[float], starts: Starts, ft: FineTune, lt: LearningTimes, t_start: float) -> dict:
    """The run's summary (summary.json)."""
    res, rates, n_r = ft.res, ft.rates, ft.n_r
    return dict(
        experiment="pretraining",
        dataset=ds.name,
        n_train=ds.n_train,
        preprocessing=ds.info.get("preprocessing", "none"),
        depth=int(cfg.depth),
        hidden=int(cfg.hidden),
        task_modes=task_modes,
        offdiag_fraction=c.offdiag,
        offdiag_fraction_per_mode=c.per_mode,
        offdiag_fraction_random_basis=c.offdiag_random,
        offdiag_fraction_random_basis_std=c.offdiag_random_std,
        decoupling_offdiag_pretrained=starts.dec_pre,
        decoupling_offdiag_random=starts.dec_rand,
        pretrained_task_mode_gain=starts.mode_gain,
        learning_time_random=lt.t_rand,
        learning_time_pretrained=lt.t_pre,
        learning_time_pretrained_finetune=lt.t_pre_ft,
        learning_time_ratio=lt.ratio,
        learning_time_random_same_rate=lt.t_rand_same,
        learning_time_ratio_same_rate=lt.ratio_same,
        pretraining_steps=pre.total_steps,
        pretraining_learning_rates=pre.learning_rates,
        pretraining_diverged=pre.diverged,
        pretraining_final_error=[float(e[-1]) for e in pre.reconstruction_error],
        pretraining_best_error=floors,
        # one meaning across apps (dlnjax.measure.robust.band_of): the best rate is the centre of the band of
        # rates within 10% of the fastest; the fastest rate is the raw arg-min on the grid
        **_best_rates("random", rates, ft.lt_rand),
        **_best_rates("pretrained", rates, ft.lt_pre),
        best_rate_at_grid_edge=[i in (0, n_r - 1) for i in (lt.i_rand, lt.i_pre) if i is not None],
        learning_rates=rates,
        learning_time_per_rate_random=ft.lt_rand,
        learning_time_per_rate_pretrained=ft.lt_pre,
        diverged_random=int(res.diverged[:n_r].sum()),
        diverged_pretrained=int(res.diverged[n_r:].sum()),
        threshold=dict(kind=cfg.threshold.kind.value, eps=ft.eps, value=ft.thr, best_error=ft.e_star,
                       zero_map_error=0.5 * float(stats.tr33)),
        steps_run=res.steps_run,
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )


def _write(out: Any, summary: dict, c: Consistency, pre: "Pretrained", ft: FineTune) -> None:
    """Write summary.json and results.npz."""
    res, n_r = ft.res, ft.n_r
    write_results(
        out, summary,
        sigma11_block=c.sigma11_block, rotated_block=c.rotated_block, pixels=c.pixels,
        learning_rates=ft.rates, steps=res.record_steps, loss_random=res.loss[:n_r], loss_pretrained=res.loss[n_r:],
        pretraining_steps=pre.record_steps, **{f"reconstruction_error_layer{i + 1}": e for i, e in enumerate(pre.reconstruction_error)},
    )


def run(cfg: DictConfig) -> dict:
    """Fig. 5: consistency condition, greedy pretraining, and pretrained vs random fine-tuning; the summary."""
    import jax
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax.measure import sweep

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    ds, task = problem.ds, problem.task
    stats = task.stats
    depth, hidden = int(cfg.depth), int(cfg.hidden)
    widths = sweep.widths_for(stats.n_in, stats.n_out, depth, hidden)
    r = task.n_modes
    v_task = np.asarray(task.v[:, :r], np.float64)
    key = jax.random.PRNGKey(cfg.seed)
    k_rand, k_pre, k_top, k_basis = jax.random.split(key, 4)
    prog = Progress("pretraining", 4)

    c = _consistency(stats, v_task, k_basis, int(cfg.random_basis_draws), int(cfg.submatrix))
    prog.update(1, f"consistency: off-diagonal share {c.offdiag:.4f} (random basis {c.offdiag_random:.4f})")
    pre = _greedy_pretrain(k_pre, stats, widths, cfg.pretrain)
    floors = _autoencoder_floors(stats.sigma11, pre.layers)
    prog.update(2, f"pretrained {len(pre.layers)} layers x {pre.steps_per_layer} steps")
    starts = _starts(k_rand, k_top, pre, widths, cfg, stats, v_task)
    ft = _fine_tune(cfg, task, widths, starts, problem.full_width_rotation(cfg))
    prog.update(3, "fine-tuned")
    lt = _learning_times(ft.lt_rand, ft.lt_pre, pre.total_steps)
    figure(out, _figure_result(ds.name, depth, float(cfg.init_std), r, c, pre, floors, ft, lt))
    prog.update(4, "figure written")

    summary = _summary(cfg, ds, stats, r, c, pre, floors, starts, ft, lt, t_start)
    _write(out, summary, c, pre, ft)
    log.info(
        "off-diagonal share %.4f (random basis %.4f); learning time random %s, pretrained %s (incl. %d pretraining steps): "
        "ratio %s at each start's best rate, %s at one rate; wrote %s",
        c.offdiag, c.offdiag_random, lt.t_rand, lt.t_pre, pre.total_steps, lt.ratio, lt.ratio_same, out,
    )
    return summary


def _best_rates(kind: str, rates: np.ndarray, lt: np.ndarray) -> dict:
    """The best rate (centre of the band within 10% of the fastest), that band, and the fastest rate."""
    from dlnjax.measure import robust

    ok = np.isfinite(lt)
    if not ok.any():
        return {f"best_learning_rate_{kind}": None, f"best_rate_band_{kind}": None, f"fastest_rate_{kind}": None}
    _, fastest, lo, hi = robust.band_of(np.asarray(rates)[ok], np.asarray(lt)[ok], robust.BAND)
    return {f"best_learning_rate_{kind}": float(np.sqrt(lo * hi)), f"best_rate_band_{kind}": [lo, hi],
            f"fastest_rate_{kind}": fastest}


main = entry("pretraining", run)


if __name__ == "__main__":
    main()
