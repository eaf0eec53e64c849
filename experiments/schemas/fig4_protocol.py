"""The protocol shared by Fig. 4's two apps (``depth_sweep``, ``lr_sweep``): decoupled starts
trained by full-batch gradient descent, per rate of a grid, to a loss threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig

from .base import (AppConfig, ENGINE_DEFAULT, EngineName, LearningRates, ThresholdConfig, at_least, check_data, check_learning_rates,
                   check_threshold, multiple_of, positive, require)


class FlowMethod(Enum):
    """How the gradient-flow path (T_ct, lambda*) is followed: ``end_to_end`` integrates the
    balanced flow on the end-to-end map in float64 (dlnjax.theory.end_to_end_flow; cost flat in
    depth, exact for the decoupled start) and checks it with one short small-rate run from its last
    snapshot before the crossing; ``descent`` is the small-rate gradient-descent run all the way,
    at the run's precision; ``auto``: end_to_end with compress=true from depth
    ``end_to_end_from_depth`` on, descent otherwise (docs/fig4.md, "The flow on the end-to-end map")."""

    auto = "auto"
    end_to_end = "end_to_end"
    descent = "descent"


class EndToEndSolver(Enum):
    """The integrator of the end-to-end flow (dlnjax.theory.end_to_end_flow.SOLVERS):
    ``rosenbrock_w`` (ROS34PW2 with the frozen-preconditioner J, steps sized by accuracy, rtol
    1e-5) or ``tsit5`` (diffrax, explicit: steps bounded by stability, about lambda* T_ct / 3.3,
    rtol 1e-8; the reference)."""

    rosenbrock_w = "rosenbrock_w"
    tsit5 = "tsit5"


@dataclass
class RateStatsConfig:
    """How the robust Fig. 4 statistics are measured (see dlnjax.measure.robust)."""

    stop_factor: float = 3.0  # a rate still above the threshold at this x the fastest crossing is stopped
    probe_steps: int = 2000  # before any rate has crossed, a run is parked after this many steps
    edge_bisections: int = 4  # bisection steps of the measured stability edge (grid ratio^(1/2^k))
    edge_patience: float = 5.0  # an edge probe must cross within this x the fastest crossing
    small_rate_factor: float = 16.0  # the gradient-flow run starts at the fastest rate / this
    band: float = 0.1  # the band of rates within this fraction of the fastest time (its centre: the best rate)
    # the grid is extended at its own log spacing until the fastest crossing has a slower or failing
    # rate on each side; at most this many rates per side (a depth that reaches it is flagged)
    extend_max: int = 16
    snapshots: int = 16  # Hessian top-eigenvalue evaluations along the gradient-flow path
    # the small-rate run along the gradient-flow path (T_ct and lambda*, predictions drawn over the
    # measurement). false skips it: on whitened inputs it needs T_ct lambda* steps (over 1e7 at
    # depth 100 on Fashion-MNIST) and Eq. 15 is exact there; T_ct then comes from diffrax
    # (gradient_flow=true) or Eq. 15 alone, and 1/lambda* is not drawn
    flow_run: bool = True
    flow_method: FlowMethod = FlowMethod.auto  # how the flow path is followed (FlowMethod)
    # auto's switch: from here on the float32 small-rate run is off the flow by more than 1e-3
    # (1.4e-3 at depth 300, 1.45% at 1000, where float64 descent agrees with the end-to-end flow
    # to 2e-6; docs/fig4.md); the end-to-end flow costs more CPU than it below depth ~900
    end_to_end_from_depth: int = 200
    end_to_end_solver: EndToEndSolver = EndToEndSolver.rosenbrock_w  # (EndToEndSolver)
    # starts per rate near the optimum: the band (best rate) and the learning time come from each
    # rate's median crossing over the start and ensemble - 1 starts with u0 x (1 + k
    # ensemble_perturbation), k = 1.. (the runs at the optimum are chaotic: one run's band centre
    # moves by up to a quarter between kernels). 1: one run per rate, as the paper did
    ensemble: int = 5
    ensemble_perturbation: float = 1e-4
    spike_rtol: float = 1e-3  # a loss rise E_t > (1 + spike_rtol) E_(t-1) before the crossing is a spike
    # T_ct per depth also by diffrax on the compressed network's gradient flow (compress=true only;
    # Fig. 4 left's flow overlay). Off by default: it adds ~40-50 s to the ~70 s main job
    gradient_flow: bool = False


@dataclass
class Fig4Protocol(AppConfig):
    data: Any = MISSING  # the `data` group: a source of dlnjax.data.DATASETS
    hidden: int = 1000
    u0: float = 1e-3
    learning_rates: LearningRates = field(default_factory=LearningRates)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)  # relative to E(0)
    max_steps: int = 20000
    chunk_steps: int = 500  # full-width runs (compress=false) step in chunks of this many steps
    record_every: int = 10
    hidden_basis: str = "random"
    # compress=true: exact compressed engine (decoupled starts: the hidden width drops out);
    # false: the full-width network on `engine`, for checking
    compress: bool = True
    engine: EngineName = ENGINE_DEFAULT
    stats: RateStatsConfig = field(default_factory=RateStatsConfig)
    # the late depths: lr_exponent and learning_time_late_slope are fitted over depths >= this
    fit_min_depth: int = 20
    # depths run at once, in threads (0: one per CPU core); the numbers do not depend on it
    workers: int = 0


def check_protocol(cfg: DictConfig) -> None:
    check_data(cfg)
    positive(cfg, "u0")
    at_least(cfg, 1, "hidden", "max_steps", "chunk_steps", "record_every")
    multiple_of(cfg, "chunk_steps", "record_every")
    check_learning_rates(cfg)
    check_threshold(cfg)
    require(int(cfg.workers) >= 0, "workers", cfg.workers, "an integer >= 0 (0: one per CPU core)")
    require(cfg.hidden_basis in ("random", "identity"), "hidden_basis", cfg.hidden_basis, "random, identity")
    st = cfg.stats
    require(st.stop_factor > 1.0, "stats.stop_factor", st.stop_factor, "a number > 1")
    require(st.probe_steps >= 1, "stats.probe_steps", st.probe_steps, "an integer >= 1")
    require(st.edge_bisections >= 0, "stats.edge_bisections", st.edge_bisections, "an integer >= 0")
    require(st.edge_patience >= 1.0, "stats.edge_patience", st.edge_patience, "a number >= 1")
    require(st.small_rate_factor >= 1.0, "stats.small_rate_factor", st.small_rate_factor, "a number >= 1")
    require(0.0 < st.band < 1.0, "stats.band", st.band, "a fraction in (0, 1)")
    require(st.extend_max >= 0, "stats.extend_max", st.extend_max, "an integer >= 0")
    require(st.snapshots >= 1, "stats.snapshots", st.snapshots, "an integer >= 1")
    require(st.end_to_end_from_depth >= 2, "stats.end_to_end_from_depth", st.end_to_end_from_depth, "an integer >= 2")
    method = getattr(st.flow_method, "value", st.flow_method)
    require(method != "end_to_end" or bool(cfg.get("compress", True)), "stats.flow_method", method,
            "auto or descent with compress=false (end_to_end integrates the compressed network's flow)")
    require(st.spike_rtol > 0.0, "stats.spike_rtol", st.spike_rtol, "a number > 0")
    require(st.ensemble >= 1, "stats.ensemble", st.ensemble, "an integer >= 1 (1: one run per rate)")
    require(0.0 < st.ensemble_perturbation < 0.1, "stats.ensemble_perturbation", st.ensemble_perturbation,
            "a relative change of u0 in (0, 0.1)")
