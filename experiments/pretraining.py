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

import numpy as np
from omegaconf import DictConfig

from .common import Progress, entry, resolved_config, run_dir, write_results
from ._shared.plots.pretraining import PretrainingResult, figure
from ._shared.problem import learning_rate_grid, prepare

log = logging.getLogger("dlnjax")


def best_member(lt: np.ndarray) -> int | None:
    return None if np.all(np.isnan(lt)) else int(np.nanargmin(lt))


def run(cfg: DictConfig) -> dict:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax.init import functions as init_fns
    from dlnjax.init import pretrain
    from dlnjax.measure import sweep
    from dlnjax.measure.thresholds import Threshold

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    ds, task = problem.ds, problem.task
    stats = task.stats
    dtype = stats.sigma11.dtype
    depth, hidden = int(cfg.depth), int(cfg.hidden)
    widths = sweep.widths_for(stats.n_in, stats.n_out, depth, hidden)
    r = task.n_modes
    v_task = np.asarray(task.v[:, :r], np.float64)
    key = jax.random.PRNGKey(cfg.seed)
    k_rand, k_pre, k_top, k_basis = jax.random.split(key, 4)
    prog = Progress("pretraining", 4)

    # --- consistency condition (Eq. 18)
    s11 = np.asarray(stats.sigma11, np.float64)
    offdiag = pretrain.offdiag_fraction(s11, v_task)
    per_mode = [pretrain.offdiag_fraction(s11, v_task[:, a : a + 1]) for a in range(r)]
    off_rand, off_rand_std = pretrain.offdiag_fraction_random(s11, r, k_basis, int(cfg.random_basis_draws))
    basis = pretrain.completed_basis(s11, v_task)
    rotated = basis.T @ s11 @ basis
    k = min(int(cfg.submatrix), s11.shape[0])
    pixels = np.sort(np.argsort(np.diagonal(s11))[::-1][:k])
    prog.update(1, f"consistency: off-diagonal share {offdiag:.4f} (random basis {off_rand:.4f})")

    # --- greedy pretraining of the hidden layers
    p = cfg.pretrain
    pre = pretrain.greedy_pretrain(
        k_pre, stats.sigma11, widths[1:-1], std=float(p.std), lr_scale=float(p.lr_scale),
        steps=int(p.steps), record_every=int(p.record_every),
    )
    floors = []
    cov = np.asarray(stats.sigma11, np.float64)
    for w in pre.layers:
        lam = np.sort(np.linalg.eigvalsh(cov))[::-1]
        floors.append(0.5 * float(np.sum(lam[w.shape[0] :])))
        w64 = np.asarray(w, np.float64)
        cov = w64 @ cov @ w64.T
    prog.update(2, f"pretrained {len(pre.layers)} layers x {pre.steps_per_layer} steps")

    w_pre = pretrain.pretrained_network(k_top, pre, depth, stats.n_out, float(p.top_std))
    w_rand = init_fns.small_gaussian(k_rand, widths, float(cfg.init_std), dtype=dtype)
    dec_pre = pretrain.decoupling_offdiag(w_pre[0], v_task)
    dec_rand = pretrain.decoupling_offdiag(w_rand[0], v_task)
    lower = np.asarray(w_pre[0], np.float64)
    for w in w_pre[1:-1]:
        lower = np.asarray(w, np.float64) @ lower
    mode_gain = np.linalg.norm(lower @ v_task, axis=0)  # how strongly the pretrained stack passes each task direction

    # --- fine-tuning: both starts x every rate, one vmapped batch
    rates = learning_rate_grid(cfg)
    n_r = len(rates)
    batch = tuple(jnp.concatenate([jnp.broadcast_to(a, (n_r,) + a.shape), jnp.broadcast_to(b, (n_r,) + b.shape)]) for a, b in zip(w_rand, w_pre))
    eps = float(cfg.threshold.eps)
    # one threshold for both starts: by default relative to the zero map's error
    thr, e_star = Threshold.from_config(cfg.threshold).resolve_for(task, widths)
    max_chunks = -(-int(cfg.max_steps) // int(cfg.chunk_steps))
    ft_prog = Progress("fine-tuning", max_chunks)
    res = sweep.run_batch(
        stats, batch, np.concatenate([rates, rates]), threshold=thr, max_steps=int(cfg.max_steps),
        chunk_steps=int(cfg.chunk_steps), record_every=int(cfg.record_every),
        progress=lambda s, done, tot: ft_prog.update(s // int(cfg.chunk_steps), f"step {s}: {done}/{tot} crossed or diverged"),
        engine=cfg.engine.value,
    )
    prog.update(3, "fine-tuned")
    lt_rand, lt_pre = res.learning_time[:n_r], res.learning_time[n_r:]
    i_rand, i_pre = best_member(lt_rand), best_member(lt_pre)
    t_rand = None if i_rand is None else float(lt_rand[i_rand])
    t_pre_ft = None if i_pre is None else float(lt_pre[i_pre])
    t_pre = None if t_pre_ft is None else t_pre_ft + pre.total_steps
    ratio = t_rand / t_pre if (t_rand is not None and t_pre) else None
    # the same comparison at one common rate (the pretrained start's best): the paper's curves
    t_rand_same = None if i_pre is None or np.isnan(lt_rand[i_pre]) else float(lt_rand[i_pre])
    ratio_same = t_rand_same / t_pre if (t_rand_same is not None and t_pre) else None

    figure(out, PretrainingResult(
        dataset=ds.name, depth=depth, init_std=float(cfg.init_std), sigma11_block=s11[np.ix_(pixels, pixels)],
        rotated_block=rotated[:k, :k], task_modes=r, offdiag=offdiag, offdiag_random=off_rand, pretrained=pre,
        best_errors=floors, learning_rates=rates, steps=res.record_steps, loss_random=res.loss[:n_r],
        loss_pretrained=res.loss[n_r:], learning_time_random=lt_rand, learning_time_pretrained=lt_pre,
        best_random=i_rand, best_pretrained=i_pre, threshold=thr, best_error=e_star,
    ))
    prog.update(4, "figure written")

    summary = dict(
        experiment="pretraining",
        dataset=ds.name,
        n_train=ds.n_train,
        preprocessing=ds.info.get("preprocessing", "none"),
        depth=depth,
        hidden=hidden,
        task_modes=r,
        offdiag_fraction=offdiag,
        offdiag_fraction_per_mode=per_mode,
        offdiag_fraction_random_basis=off_rand,
        offdiag_fraction_random_basis_std=off_rand_std,
        decoupling_offdiag_pretrained=dec_pre,
        decoupling_offdiag_random=dec_rand,
        pretrained_task_mode_gain=mode_gain,
        learning_time_random=t_rand,
        learning_time_pretrained=t_pre,
        learning_time_pretrained_finetune=t_pre_ft,
        learning_time_ratio=ratio,
        learning_time_random_same_rate=t_rand_same,
        learning_time_ratio_same_rate=ratio_same,
        pretraining_steps=pre.total_steps,
        pretraining_learning_rates=pre.learning_rates,
        pretraining_diverged=pre.diverged,
        pretraining_final_error=[float(e[-1]) for e in pre.reconstruction_error],
        pretraining_best_error=floors,
        # one meaning across apps (dlnjax.measure.robust.band_of): the best rate is the centre of the band of
        # rates within 10% of the fastest; the fastest rate is the raw arg-min on the grid
        **_best_rates("random", rates, lt_rand),
        **_best_rates("pretrained", rates, lt_pre),
        best_rate_at_grid_edge=[i in (0, n_r - 1) for i in (i_rand, i_pre) if i is not None],
        learning_rates=rates,
        learning_time_per_rate_random=lt_rand,
        learning_time_per_rate_pretrained=lt_pre,
        diverged_random=int(res.diverged[:n_r].sum()),
        diverged_pretrained=int(res.diverged[n_r:].sum()),
        threshold=dict(kind=cfg.threshold.kind.value, eps=eps, value=thr, best_error=e_star, zero_map_error=0.5 * float(stats.tr33)),
        steps_run=res.steps_run,
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )
    write_results(
        out, summary,
        sigma11_block=s11[np.ix_(pixels, pixels)], rotated_block=rotated[:k, :k], pixels=pixels,
        learning_rates=rates, steps=res.record_steps, loss_random=res.loss[:n_r], loss_pretrained=res.loss[n_r:],
        pretraining_steps=pre.record_steps, **{f"reconstruction_error_layer{i + 1}": e for i, e in enumerate(pre.reconstruction_error)},
    )
    log.info(
        "off-diagonal share %.4f (random basis %.4f); learning time random %s, pretrained %s (incl. %d pretraining steps): "
        "ratio %s at each start's best rate, %s at one rate; wrote %s",
        offdiag, off_rand, t_rand, t_pre, pre.total_steps, ratio, ratio_same, out,
    )
    return summary


def _best_rates(kind: str, rates: np.ndarray, lt: np.ndarray) -> dict:
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
