"""Fig. 4 (the main job): learning time and best learning rate against depth, at the paper's
protocol (depths 3-100, 1000 hidden units, 20 rates, u0 = 0.001) in about a minute on a laptop.

Every network starts decoupled (every mode at strength u0, balanced over the layers) and is
trained by full-batch gradient descent on the sufficient statistics. Such a start is rank-r
aligned, so by default it runs on the exact compressed engine (:mod:`dlnjax.compressed`: inputs
in Sigma11's eigenbasis, cores of width r = 10; the hidden width drops out). ``compress=false``
runs the full-width network on ``engine`` (xla / native / pallas) instead, for checking.

Per depth the statistics of :mod:`dlnjax.robust` replace the arg-min over a flat, noisy curve
(on raw pixels runs near the best rate reach the edge of stability, and where their loss
spikes depends on rounding): the headline is the sharpness-limited best rate ``1/lambda*`` and
the learning time there ``T_ct lambda*``, both properties of the gradient-flow path measured by
a small-rate run (see the README, "Fig. 4 statistics"). The measured finite-rate quantities
(fastest crossing, measured stability edge, the 10% band) are reported and drawn beside them.

Threshold (``threshold.kind``): relative (default) ``E <= E* + eps (E(0) - E*)``, E* the best
error of any product of the network's rank; absolute ``E <= threshold.value`` (the paper: 1.3e4
on 60,000 digits).

    python -m experiments.depth_sweep                                # paper protocol, embedded digits
    python -m experiments.depth_sweep 'depths=[3,10,30,100,300,1000]' learning_rates.min=1e-7
    python -m experiments.depth_sweep compress=false hidden=32 'depths=[3,5,8]'   # full width, checking
    python -m experiments.depth_sweep experiment=paper               # full MNIST, absolute threshold
"""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig

from ._shared import depth_loop
from ._shared.plots import fig4
from ._shared.problem import learning_rate_grid, prepare
from .common import entry, resolved_config, run_dir, write_results

log = logging.getLogger("dlnjax")


def run(cfg: DictConfig) -> dict:
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    depths = sorted(int(d) for d in cfg.depths)
    rates = learning_rate_grid(cfg)
    recs, engine = depth_loop.run_depths(cfg, problem, depths, rates, "depth_sweep")
    summary = dict(experiment="depth_sweep", **depth_loop.summary_fields(cfg, problem, depths, rates, recs, engine))
    arrays = depth_loop.result_arrays(depths, rates, recs)
    fig4.fig4(out, summary)
    fig4.grid_figure(out, arrays)
    fig4.sharpening_figure(out, arrays, summary)
    summary["seconds_total"] = time.time() - t_start
    summary["seconds_per_depth"] = [r.seconds for r in recs]
    summary["config"] = resolved_config(cfg)
    write_results(out, summary, **arrays)
    log.info(
        "lr_exponent %s, learning_time_growth %s (engine %s, %.1fs); wrote %s",
        summary["lr_exponent"], summary["learning_time_growth"], engine.name, time.time() - t_start, out,
    )
    return summary


main = entry("depth_sweep", run)


if __name__ == "__main__":
    main()
