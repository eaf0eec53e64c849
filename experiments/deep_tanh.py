"""Deep tanh networks from random orthogonal weights with gain g (the claim from the talk).

30-layer tanh networks (N_l = 30: input, 28 hidden layers of ``width`` units, 10 outputs; no
biases, as in the paper's networks) on MNIST-format digits, trained by minibatch SGD with
momentum (optax) on the softmax cross-entropy; all gains and seeds (and the scaled Gaussian
start) in one vmapped batch that sees the same minibatches. Error = fraction misclassified.
The claims: a gain just above 1 trains faster with slightly better test error; gains of
2-10 fit the training set in a few iterations but generalise worse.

    python -m experiments.deep_tanh                      # embedded digits, ~1 min on 2 cores
    python -m experiments.deep_tanh data=fashion_mnist epochs=5
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from . import schemas
from ._shared.plots.deep_tanh import DeepTanhResult, figure
from .common import Progress, entry, resolved_config, run_dir, write_results

log = logging.getLogger("dlnjax")


def load_data(cfg: DictConfig, dtype: Any) -> tuple[Any, Any, Any, Any, Any]:
    """The data set (it must have a test split) and its inputs and integer labels as JAX arrays."""
    import jax.numpy as jnp

    from dlnjax.data import registry as data_registry

    ds = data_registry.load(cfg.data)
    if ds.x_test is None:
        raise schemas.ConfigError(f"invalid config: data={cfg.data.name.value} (allowed: a data set with a test split: embedded, mnist, fashion_mnist)")
    x, xt = jnp.asarray(ds.x, dtype), jnp.asarray(ds.x_test, dtype)
    lab, labt = jnp.asarray(np.argmax(ds.y, 1)), jnp.asarray(np.argmax(ds.y_test, 1))
    return ds, x, xt, lab, labt


def initialisations(cfg: DictConfig) -> tuple[list[tuple[str, float]], list[str]]:
    """The (kind, gain) of each initialisation (orthogonal per gain, then the scaled Gaussian) and its label."""
    runs = [("orthogonal", float(g)) for g in cfg.gains] + ([("gaussian", 1.0)] if cfg.gaussian else [])
    labels = [f"orthogonal g={g:g}" if k == "orthogonal" else "scaled Gaussian" for k, g in runs]
    return runs, labels


def initial_params(k_init: Any, widths: tuple[int, ...], runs: list[tuple[str, float]], seeds: int, dtype: Any) -> tuple[Any, int]:
    """Every (initialisation, seed) member's parameters stacked on a leading axis, and the member count."""
    import jax
    import jax.numpy as jnp

    from dlnjax.nonlinear import networks as nonlinear

    params = []
    for i, (kind, g) in enumerate(runs):
        for s in range(seeds):
            w = nonlinear.deep_tanh_weights(jax.random.fold_in(k_init, s), widths, kind, g, dtype)
            params.append(nonlinear.params_from_weights(w))
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)
    return stacked, len(params)


def make_train(cfg: DictConfig, widths: tuple[int, ...], data: tuple[Any, Any, Any, Any], k_data: Any) -> Any:
    """The per-member training function: minibatch SGD with momentum on the softmax cross-entropy."""
    import optax

    from dlnjax.nonlinear import networks as nonlinear

    x, lab, xt, labt = data
    model = nonlinear.MLP(tuple(widths[1:]), activation="tanh")
    opt = optax.sgd(float(cfg.lr), momentum=float(cfg.momentum))
    return nonlinear.make_classifier_train(model, opt, x, lab, xt, labt, batch_size=int(cfg.batch_size), epochs=int(cfg.epochs), key=k_data)


def reshape_metrics(metrics: dict, n_runs: int, seeds: int) -> dict[str, np.ndarray]:
    """Each metric as float64 numpy of shape (initialisations, seeds, epochs + 1)."""
    return {k: np.asarray(v, np.float64).reshape(n_runs, seeds, -1) for k, v in metrics.items()}


def finite_means(metrics: dict[str, np.ndarray], n_runs: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which members ended with a finite loss, and each metric's mean over those members per initialisation."""
    # a member whose loss is not finite diverged: report it, keep it out of the means
    finite = np.isfinite(metrics["train_loss"][..., -1])
    mean = {k: np.array([np.nanmean(np.where(finite[i][:, None], v[i], np.nan), axis=0) for i in range(n_runs)]) for k, v in metrics.items()}
    return finite, mean


def epochs_to_threshold(train_error: np.ndarray, epochs: np.ndarray, thr: float) -> list[int | None]:
    """Per initialisation, the first epoch whose mean training error is below ``thr`` (None if never)."""
    to_thr = []
    for i in range(len(train_error)):
        hit = np.nonzero(train_error[i] < thr)[0]
        to_thr.append(int(epochs[hit[0]]) if len(hit) else None)
    return to_thr


def run(cfg: DictConfig) -> dict:
    """Train every initialisation and seed in one batch, draw the figure and write the results."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    from dlnjax.measure import devices, sweep

    out = run_dir()
    t0 = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    ds, x, xt, lab, labt = load_data(cfg, dtype)
    widths = sweep.widths_for(ds.n_in, ds.n_out, int(cfg.depth), int(cfg.width))
    runs, labels = initialisations(cfg)
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_data = jax.random.split(key)
    stacked, n_members = initial_params(k_init, widths, runs, int(cfg.seeds), dtype)
    train = make_train(cfg, widths, (x, lab, xt, labt), k_data)
    prog = Progress("deep_tanh", 1)
    log.info("training %d networks (%d inits x %d seeds) of depth %d, width %d on %s (%d examples) for %d epochs",
             n_members, len(runs), cfg.seeds, cfg.depth, cfg.width, ds.name, ds.n_train, cfg.epochs)
    _, metrics = devices.sharded_vmap(train)(stacked)  # the batch spread over all local devices
    metrics = reshape_metrics(metrics, len(runs), int(cfg.seeds))
    prog.update(1, f"{time.time() - t0:.0f}s")
    finite, mean = finite_means(metrics, len(runs))
    epochs = np.arange(int(cfg.epochs) + 1)
    thr = float(cfg.error_threshold)
    to_thr = epochs_to_threshold(mean["train_error"], epochs, thr)

    figure(out, DeepTanhResult(dataset=ds.name, depth=int(cfg.depth), width=int(cfg.width), labels=labels,
                               gaussian=[k == "gaussian" for k, _ in runs], epochs=epochs,
                               train_error=mean["train_error"], test_error=mean["test_error"], threshold=thr))

    summary = dict(
        experiment="deep_tanh",
        dataset=ds.name,
        n_train=ds.n_train,
        depth=int(cfg.depth),
        width=int(cfg.width),
        initialisations=labels,
        gains=[g for k, g in runs if k == "orthogonal"],
        final_train_error=mean["train_error"][:, -1],
        final_test_error=mean["test_error"][:, -1],
        best_test_error=np.min(mean["test_error"], axis=1),
        epochs_to_train_error=to_thr,
        error_threshold=thr,
        diverged_members=[int((~finite[i]).sum()) for i in range(len(runs))],
        seeds=int(cfg.seeds),
        seconds_total=time.time() - t0,
        config=resolved_config(cfg),
    )
    write_results(out, summary, epochs=epochs, **{f"{k}_per_seed": v for k, v in metrics.items()})
    for lab_, tr, te, e in zip(labels, summary["final_train_error"], summary["final_test_error"], to_thr):
        log.info("%-20s final train error %.4f, test error %.4f, epochs to train error < %g: %s", lab_, tr, te, thr, e)
    return summary


main = entry("deep_tanh", run)


if __name__ == "__main__":
    main()
