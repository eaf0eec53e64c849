"""Fig. 4 (the main job): learning time and best learning rate against depth, at the paper's
protocol (depths 3-100, 1000 hidden units, 20 rates, u0 = 0.001) in about a minute on a laptop.

Every network starts decoupled (every mode at strength u0, balanced over the layers) and is
trained by full-batch gradient descent on the sufficient statistics. Such a start is rank-r
aligned, so by default it runs on the exact compressed engine (:mod:`dlnjax.networks.compressed`: inputs
in Sigma11's eigenbasis, cores of width r = 10; the hidden width drops out). ``compress=false``
runs the full-width network on ``engine`` (xla / native / pallas) instead, for checking.

Per depth, as the paper measured it (:mod:`dlnjax.measure.robust`): the learning time is the fastest
measured crossing and the optimal rate the centre of the band of rates within 10% of it (the
paper's raw arg-min moves with rounding on raw pixels, where runs near the optimum ride the edge
of stability; the band's centre barely does). The grid is extended at its own spacing until the
optimum is bracketed. The headline (:mod:`dlnjax.measure.headline`) is the slope of the optimal rate and
of the learning time over the late depths and the learning time's growth, each with a 90%
interval. The predictions are drawn over them: the paper's (supplement Eqs. 19-20, Eq. 15), the
gradient-flow path's 1/lambda* and T_ct lambda*, and the flow time at the predicted rate
(docs/fig4.md).

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
        "lr_exponent %s %s, learning_time_growth %s %s, learning_time_late_slope %s %s (Eq. 15: %s); "
        "unbracketed depths %s (engine %s, %.1fs); wrote %s",
        _g(summary["lr_exponent"]), summary["lr_exponent_ci"], _g(summary["learning_time_growth"]),
        summary["learning_time_growth_ci"], _g(summary["learning_time_late_slope"]), summary["learning_time_late_slope_ci"],
        _g(summary["theory_learning_time_late_slope"]), summary["unbracketed_depths"], engine.name, time.time() - t_start, out,
    )
    return summary


def _g(x) -> str:
    return "None" if x is None else f"{x:.4g}"


main = entry("depth_sweep", run)


if __name__ == "__main__":
    main()
