"""Fig. 4's statistics of one depth, as the paper measured them, located so that rounding
cannot move them far (see docs/fig4.md).

The paper (Section 2) trains each depth at twenty log-spaced rates and picks the fastest: its
Fig. 4 plots that empirical optimum and its learning time. On raw pixels the valley of
learning time against rate is flat near its minimum and runs there ride the edge of stability
(EoS), where loss spikes grow out of rounding noise, so the raw arg-min on the grid jumps between
grid points from one precision (or engine, or machine) to another. Per depth this module measures:

``t_min``         the learning time: the fastest measured crossing, in steps (any rate run);
                  with an ensemble (``ensemble``: members from perturbed starts), the fastest
                  of the grid rates' median crossings over the starts.
``fastest_rate``  the paper's raw arg-min (the rate of ``t_min``).
``band``          the rates whose learning time is within ``band`` (10%) of ``t_min``, ends
                  interpolated log-log between the runs that bracket them.
``band_centre``   the empirically optimal rate: the band's geometric centre. It moves with
                  rounding far less than the arg-min (the band's ends are set by the valley's
                  walls, not its noisy floor); the band is its interval. With an ensemble the
                  band is that of the median learning times (:func:`_ensemble_band`): one run's
                  band centre still moves by up to a quarter between kernels, since the runs at
                  the optimum are chaotic; the median over five starts moves a few per cent.
``bracketed``     whether the fastest crossing has a slower (or failing) rate on each side. The
                  grid is extended at its own log spacing, above or below, until it is (at most
                  ``extend_max`` rates on each side; a depth that reaches the cap is flagged).
``edge``          the measured stability edge: the largest rate that crosses without diverging
                  within ``edge_patience x`` (5x) the fastest crossing (and ``max_steps``),
                  bisected between the largest learned rate and the first failing one above it.
``t_ct``          the gradient-flow learning time (flow time, sum of rate x steps) of one run that
                  follows the flow path to the threshold: it starts at the grid's fastest rate
                  (before the edge bisection and the ensemble, so that it runs beside them) /
                  ``small_rate_factor`` (16) and lowers its rate whenever rate x lambda_max passes
                  0.9 (to 0.75 / lambda_max), so it never enters the EoS.
``lam_star``      the largest top Hessian eigenvalue met along that path (progressive
                  sharpening; ``sharpness`` at ``snapshots`` points). ``1/lam_star`` is the
                  supplement's optimal rate ``1/lambda_1`` (Eqs. 19-20) measured on the real
                  statistics, and ``t_ct * lam_star`` the steps a run at that rate would need: a
                  prediction, drawn over the measurement, never in its place.

Every run also reports whether loss spikes (``E_t > (1 + rtol) E_{t-1}`` before the crossing)
happened, detected inside the training loop.

No wasted steps: rates are run from the largest down. Once one has crossed at ``t_fast``, a
smaller rate still above the threshold at ``stop_factor x t_fast`` is stopped and marked, and
the rates below it (slower still, since ``t ~ T_ct / lr`` there) are skipped and marked,
unless the stopped run's loss rose on the way (the chaotic window above a mode's edge, where a
smaller rate can still learn). A rate run before any crossing is known is parked after
``probe_steps`` and continued later (runs are resumable, so no step is repeated). The
small-rate run of ``t_ct`` is exempt.

Both cores: once the grid is run (and extended), the edge bisection, the flow path and the
ensemble's members depend on the grid's runs alone, not on each other; they run ``workers`` at a
time in threads (:func:`in_threads`; the two chains on forks of the runner) and are recorded in a
fixed order, so the statistics are the same for any ``workers``. At depth 1000 the flow path
alone is 40% of the steps: beside it, the other runs cost no wall-clock time.

The engine is abstract: ``member(lr, limit, resume) -> MemberOutcome``, each engine's
:class:`~dlnjax.networks.outcome.Member` (:meth:`dlnjax.networks.engines.compressed.Compressed.member`,
:meth:`dlnjax.networks.engines.base.FullWidthBase.member`), so the same statistics are computed for
every engine and precision.
No I/O here.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from dlnjax.networks.outcome import FlowPath, MemberFn, MemberOutcome

Array = Any

# run status
LEARNED, DIVERGED, STOPPED, UNSETTLED, SKIPPED = "learned", "diverged", "stopped", "unsettled", "skipped"
# run roles: a grid rate, a rate added to bracket the optimum, an edge probe, the small-rate run
GRID, EXTENDED, EDGE, SMALL, ENSEMBLE = "grid", "extended", "edge", "small", "ensemble"
MAIN_ROLES = (GRID, EXTENDED)
BAND = 0.1  # the band of rates within this fraction of the fastest crossing (default)




@dataclass
class RateRun:
    lr: float
    role: str  # GRID | EXTENDED (added to bracket the optimum) | EDGE (bisection probe) | SMALL (t_ct) | ENSEMBLE
    status: str
    learning_time: float  # nan unless learned
    steps: int
    spikes: int | None
    first_spike: int | None
    max_rise: float | None
    outcome: MemberOutcome | None = None


@dataclass
class RateStats:
    """The statistics of one depth (see the module docstring)."""

    runs: list[RateRun]
    t_min: float | None  # the learning time: fastest measured crossing (steps; with an ensemble, fastest median)
    fastest_rate: float | None  # its rate (the paper's raw arg-min)
    edge: float | None  # largest rate that learned (lower end of the edge bracket)
    edge_hi: float | None  # smallest failing rate above it (None: not bracketed)
    band_lo: float | None
    band_hi: float | None
    band_centre: float | None  # the empirically optimal rate
    t_ct: float | None  # flow time of the small-rate run to the crossing
    t_ct_rate: float | None
    lam_star: float | None  # largest top Hessian eigenvalue along the flow path
    spikes_before_crossing: int  # number of learned runs with spikes before their crossing
    member_steps: int  # steps taken by all runs together (the cost)
    bracketed: bool = False  # a slower or failing rate on each side of the fastest crossing
    extended_up: int = 0  # rates added above the grid to bracket the optimum
    extended_down: int = 0  # rates added below it
    extra: dict = field(default_factory=dict)

    @property
    def best_rate(self) -> float | None:
        """The empirically optimal rate: the centre of the 10% band."""
        return self.band_centre

    @property
    def learning_time(self) -> float | None:
        """The learning time at the optimum: the fastest measured crossing (steps)."""
        return self.t_min

    @property
    def inv_lambda_star(self) -> float | None:
        """The prediction 1/lambda* (supplement Eqs. 19-20 on the real statistics)."""
        return (1.0 / self.lam_star) if self.lam_star else None

    @property
    def steps_at_inv_lambda_star(self) -> float | None:
        """The prediction T_ct lambda*: steps a run at 1/lambda* would need on the flow path."""
        return (self.t_ct * self.lam_star) if (self.t_ct is not None and self.lam_star) else None

    def grid(self) -> list[RateRun]:
        return [r for r in self.runs if r.role in MAIN_ROLES]


def _classify(o: MemberOutcome, limit_is_final: bool, above_fastest: bool) -> str:
    if o.crossed and o.cross_step < o.limit:
        return LEARNED
    if o.diverged:
        return DIVERGED
    if above_fastest or limit_is_final:
        return UNSETTLED
    return STOPPED


def _cross_loglog(level: float, x0: float, y0: float, x1: float, y1: float) -> float:
    """Where the log-log line through (x0, y0), (x1, y1) reaches ``level`` (clipped to [x0, x1])."""
    if y1 == y0:
        return float(x0)
    f = (math.log(level) - math.log(y0)) / (math.log(y1) - math.log(y0))
    f = min(max(f, 0.0), 1.0)
    return float(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))


def grid_ratio(grid: Sequence[float]) -> float:
    """The grid's log spacing (geometric mean of neighbouring ratios; 2 for a single rate): the
    step by which :func:`rate_statistics` extends it."""
    g = np.sort(np.asarray(list(grid), np.float64))
    if len(g) < 2:
        return 2.0
    return float(np.exp(np.mean(np.diff(np.log(g)))))


def band_of(lrs: Sequence[float], times: Sequence[float], band: float) -> tuple[float, float, float, float]:
    """(t_min, fastest rate, band_lo, band_hi) over the runs that learned (``times`` finite):
    the band is the range of rates whose learning time is within ``(1 + band) t_min``, its ends
    interpolated log-log between the last rate inside and the first outside (an end with no
    rate outside stays at the last rate inside)."""
    order = np.argsort(np.asarray(lrs, np.float64))
    xs = np.asarray(lrs, np.float64)[order]
    ts = np.asarray(times, np.float64)[order]
    i_min = int(np.argmin(ts))
    t_min = float(ts[i_min])
    cut = (1.0 + band) * t_min
    inside = np.nonzero(ts <= cut)[0]
    k, j = int(inside.max()), int(inside.min())
    hi = _cross_loglog(cut, xs[k], ts[k], xs[k + 1], ts[k + 1]) if k + 1 < len(xs) else float(xs[k])
    lo = _cross_loglog(cut, xs[j - 1], ts[j - 1], xs[j], ts[j]) if j > 0 else float(xs[j])
    return t_min, float(xs[i_min]), lo, hi


def bracket_sides(runs: Sequence[RateRun]) -> tuple[bool, bool]:
    """(below, above): whether the fastest learned run among the grid and extension rates has a
    slower or failing (diverged, stopped, unsettled, skipped) rate below it and above it."""
    main = [r for r in runs if r.role in MAIN_ROLES]
    learned = [r for r in main if r.status == LEARNED]
    if not learned:
        return False, False
    f = min(learned, key=lambda r: (r.learning_time, r.lr))

    def worse(r: RateRun) -> bool:
        return r.status != LEARNED or r.learning_time >= f.learning_time

    return (any(worse(r) for r in main if r.lr < f.lr), any(worse(r) for r in main if r.lr > f.lr))


class _Runner:
    """The bookkeeping shared by the steps of :func:`rate_statistics`: the member calls (and
    their cost in steps), the runs recorded, and the fastest crossing so far."""

    def __init__(self, member: MemberFn, progress: Callable[[str], None] | None, lock: Any = None):
        self.member, self.progress = member, progress
        self.runs: list[RateRun] = []
        self.cost = 0
        self.t_fast: float | None = None
        self.fast_lr: float | None = None
        self.lock = lock if lock is not None else threading.Lock()  # the cost, shared by forks in threads
        self.n_inherited = 0  # runs a fork took from its parent (not its own)

    def call(self, lr: float, limit: int, resume: Any = None, member: MemberFn | None = None) -> MemberOutcome:
        """Run ``member`` (default: the depth's own; an ensemble's perturbed start otherwise) and count its steps."""
        o = (member or self.member)(lr, int(limit), resume)
        with self.lock:
            self.cost += int(o.steps) - (0 if resume is None else int(resume.steps))
        if self.progress is not None:
            self.progress(f"rate {lr:.3g}: {o.steps} steps, " + ("crossed" if o.crossed else "diverged" if o.diverged else "limit"))
        return o

    def fork(self) -> "_Runner":
        """A runner for one independent chain of runs (the edge bisection, the flow path), run in
        its own thread: it starts from this runner's fastest crossing, records into its own list
        (:meth:`merge` appends it in a fixed order, so the record does not depend on which thread
        finished first) and adds its steps to the shared cost."""
        sub = _Runner(self.member, self.progress, self.lock)
        sub.t_fast, sub.fast_lr = self.t_fast, self.fast_lr
        sub.runs = list(self.runs)  # it reads the runs so far, and appends its own after them
        sub.n_inherited = len(sub.runs)
        return sub

    def merge(self, sub: "_Runner") -> None:
        """Take a fork's runs, cost and fastest crossing (after its thread finished)."""
        self.runs.extend(sub.runs[sub.n_inherited:])
        self.cost += sub.cost
        if sub.t_fast is not None and (self.t_fast is None or sub.t_fast < self.t_fast):
            self.t_fast, self.fast_lr = sub.t_fast, sub.fast_lr

    def record(self, lr: float, role: str, status: str, o: MemberOutcome | None, sets_fastest: bool = True) -> RateRun:
        """Record a run; ``sets_fastest=False`` for an ensemble member, which must not move the
        fastest crossing that the grid's limits are based on."""
        t = float(o.cross_step) if (o is not None and status == LEARNED) else math.nan
        if sets_fastest and status == LEARNED and (self.t_fast is None or t < self.t_fast):
            self.t_fast, self.fast_lr = t, lr
        rr = RateRun(lr, role, status, t, 0 if o is None else int(o.steps),
                     None if o is None else o.spikes, None if o is None else o.first_spike,
                     None if o is None else o.max_rise, o)
        self.runs.append(rr)
        return rr

    def limit(self, max_steps: int, stop_factor: float) -> int:
        return min(max_steps, int(math.ceil(stop_factor * self.t_fast))) if self.t_fast is not None else max_steps


def _run_grid(rn: _Runner, grid: Sequence[float], max_steps: int, stop_factor: float, probe_steps: int) -> None:
    """Step 1: the grid, largest rate first; parked runs continued once a crossing is known."""
    pending: list[MemberOutcome] = []
    skip = False
    for lr in grid:
        if skip:
            rn.record(lr, GRID, SKIPPED, None)
            continue
        limit = rn.limit(max_steps, stop_factor) if rn.t_fast is not None else min(max_steps, probe_steps)
        o = rn.call(lr, limit)
        if not o.crossed and not o.diverged and rn.t_fast is None and limit < max_steps:
            pending.append(o)
            continue
        st = _classify(o, limit >= max_steps, above_fastest=False)
        if st == STOPPED and not o.spikes:
            # still falling without a single rise: the slow branch t ~ T_ct / lr, where every
            # smaller rate is slower still. A run that stalled while oscillating (the chaotic
            # window above a mode's edge) says nothing about smaller rates: they are run.
            skip = True
        rn.record(lr, GRID, st, o)
    _continue_parked(rn, pending, max_steps, stop_factor)


def _continue_parked(rn: _Runner, pending: list[MemberOutcome], max_steps: int, stop_factor: float) -> None:
    """Continue the parked runs. While no rate has crossed, every parked run advances in rounds
    that double its steps (no step is repeated: runs resume), so the first crossing is found
    after at most twice its steps of every parked run, not after ``max_steps`` of the largest
    rates. The runs that crossed or diverged are then recorded; the rest run on to
    ``stop_factor x t_fast`` (or ``max_steps``), as every other grid run does."""
    if rn.t_fast is None:
        while pending and not any(o.crossed for o in pending):
            live = [o for o in pending if not o.diverged and o.limit < max_steps]
            if not live:
                break
            for i, o in enumerate(pending):
                if not o.diverged and o.limit < max_steps:
                    pending[i] = rn.call(o.lr, min(max_steps, 2 * o.limit), o)
    finished = [o for o in pending if o.crossed or o.diverged]
    for o in finished:  # their status does not depend on a limit
        rn.record(o.lr, GRID, _classify(o, o.limit >= max_steps, False), o)
    for o in pending:
        if o.crossed or o.diverged:
            continue
        limit = max(rn.limit(max_steps, stop_factor), o.limit)
        o2 = rn.call(o.lr, limit, o) if limit > o.limit else o
        above = rn.fast_lr is not None and o.lr > rn.fast_lr
        rn.record(o.lr, GRID, _classify(o2, limit >= max_steps, above), o2)


def _extend(rn: _Runner, ratio: float, max_steps: int, stop_factor: float, extend_max: int) -> tuple[bool, int, int]:
    """Step 2: extend the grid at its own log spacing until the fastest crossing has a slower or
    failing rate on each side (at most ``extend_max`` rates per side). Returns (bracketed, up,
    down). With no crossing at all, the grid moves down when every rate diverged and up when
    none did (rates too small to cross within ``max_steps``); otherwise nothing can bracket."""
    up = down = 0
    while True:
        main = [r for r in rn.runs if r.role in MAIN_ROLES]
        learned = [r for r in main if r.status == LEARNED]
        if learned:
            below, above = bracket_sides(rn.runs)
            go_up, go_down = not above, (above and not below)
        else:
            all_div = all(r.status == DIVERGED for r in main)
            none_div = not any(r.status == DIVERGED for r in main)
            go_up, go_down = none_div, all_div
            below = above = False
        if learned and below and above:
            return True, up, down
        if go_up and up < extend_max:
            lr = max(r.lr for r in main) * ratio
            o = rn.call(lr, rn.limit(max_steps, stop_factor))
            rn.record(lr, EXTENDED, _classify(o, True, above_fastest=rn.t_fast is not None), o)
            up += 1
        elif go_down and down < extend_max:
            lr = min(r.lr for r in main) / ratio
            limit = rn.limit(max_steps, stop_factor)
            o = rn.call(lr, limit)
            rn.record(lr, EXTENDED, _classify(o, limit >= max_steps, above_fastest=False), o)
            down += 1
        else:
            return False, up, down


def _bisect_edge(rn: _Runner, max_steps: int, edge_bisections: int, edge_patience: float) -> tuple[float, float | None]:
    """Step 3: the stability edge, by bisection above the largest rate that learned."""
    lo = max(r.lr for r in rn.runs if r.status == LEARNED)
    above = [r.lr for r in rn.runs if r.lr > lo and r.status in (DIVERGED, UNSETTLED, STOPPED)]
    hi = min(above) if above else None
    if hi is not None:
        for _ in range(int(edge_bisections)):
            mid = math.sqrt(lo * hi)
            o = rn.call(mid, min(max_steps, int(math.ceil(edge_patience * rn.t_fast))))
            st = _classify(o, True, above_fastest=True)
            rn.record(mid, EDGE, st, o)
            if st == LEARNED:
                lo = mid
            else:
                hi = mid
    return lo, hi


def _ensemble_plan(rn: _Runner, band: float, max_steps: int, edge_patience: float) -> tuple[list[float], list[float], list[int], int]:
    """Which grid and extension rates get the ensemble (:func:`_ensemble_band`), from the grid's
    runs alone: ``(rates, one-run times, picked indices, step limit)``."""
    main = sorted((r for r in rn.runs if r.role in MAIN_ROLES), key=lambda r: r.lr)
    lrs = [r.lr for r in main]
    base = [r.learning_time if r.status == LEARNED else math.inf for r in main]
    t0 = min(base)
    near = [i for i, t in enumerate(base) if t <= (1.0 + 3.0 * band) * t0]
    pick = sorted(set(near) | {max(min(near) - 1, 0), min(max(near) + 1, len(main) - 1)})
    return lrs, base, pick, min(max_steps, int(math.ceil(edge_patience * t0)))


def _ensemble_band(rn: _Runner, plan: tuple, outcomes: Sequence[Sequence[MemberOutcome]], band: float
                   ) -> tuple[float, float, float, float, list[float]]:
    """Step 4 with an ensemble: the band from each rate's median learning time over the start and
    the perturbed starts (``outcomes[j][k]``: picked rate ``j``, start ``k``: the same network from
    a start perturbed at a rounding-like scale). At the optimum the runs ride the edge of
    stability, where any perturbation grows until it moves their learning times by a few per
    cent, so one run's band centre moves by up to a quarter from kernel to kernel
    (docs/fig4.md, "Robustness"); the median of five moves far less. The perturbed starts run at
    the grid and extension rates within 30% of the fastest crossing and at the nearest such rate
    on each side (the band's ends are interpolated between them); every other rate keeps its one
    run (slower than 1.3x, it cannot enter the band). A run slower than ``edge_patience x`` the
    fastest, or failing, counts as not learned (infinitely slow). Records the members' runs (in a
    fixed order). Returns ``(t_min, fastest, band_lo, band_hi, rates)``: the fastest median, its
    rate, the band of the medians, and the rates that got the ensemble."""
    lrs, base, pick, _ = plan
    times = list(base)
    for i, outs in zip(pick, outcomes):
        ts = [base[i]]
        for o in outs:
            st = _classify(o, True, above_fastest=True)
            rr = rn.record(lrs[i], ENSEMBLE, st, o, sets_fastest=False)
            ts.append(rr.learning_time if st == LEARNED else math.inf)
        times[i] = float(np.median(ts))
    ok = [i for i, t in enumerate(times) if math.isfinite(t)]
    t_min, fastest, lo, hi = band_of([lrs[i] for i in ok], [times[i] for i in ok], band)
    return t_min, fastest, lo, hi, [lrs[i] for i in pick]


def in_threads(tasks: Sequence[Callable[[], Any]], workers: int) -> list[Any]:
    """Run independent ``tasks`` (the longest first), ``workers`` at a time in threads (XLA and
    the native kernels release the GIL while they run); their results in ``tasks``' order. With
    ``workers <= 1`` they run one after the other, in that order. Every task's numbers depend on
    its own inputs alone, so the results are the same for any ``workers``."""
    if workers <= 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(min(int(workers), len(tasks))) as ex:
        futures = [ex.submit(t) for t in tasks]
        return [f.result() for f in futures]


def _flow_path(rn: _Runner, fastest: float, t_min: float, *, max_steps: int, small_rate_factor: float, snapshots: int,
               sharpness: Callable[[MemberOutcome, Any], tuple[float, Any]] | None) -> dict:
    """Step 5: one run that follows the gradient-flow path to the crossing, in segments, with the
    Hessian's top eigenvalue at every segment end (progressive sharpening). Its rate adapts to
    stay off the edge of stability: whenever rate x lambda_max exceeds 0.9 the next segment runs
    at 0.75 / lambda_max (any rate schedule with rate x lambda < 2 follows the same path to
    O(rate)). T_ct is the flow time, sum of rate x steps, to the crossing."""
    t_est = fastest * t_min  # >= T_ct (edge-of-stability events only slow runs down)
    lr_s = fastest / float(small_rate_factor)
    seg_flow = 1.1 * t_est / max(int(snapshots), 1)
    path_steps: list[int] = []
    path_sharp: list[float] = []
    path_rate: list[float] = []
    path_time: list[float] = []  # flow time (sum of rate x steps) at each snapshot
    flow, o = 0.0, None
    budget = max(max_steps, int(math.ceil(4.0 * small_rate_factor * t_min)))
    while True:
        start = 0 if o is None else o.steps
        lim = start + max(1, int(math.ceil(seg_flow / lr_s)))
        o = rn.call(lr_s, lim, o)
        flow += lr_s * ((o.cross_step if o.crossed else o.steps) - start)
        lam = None
        if sharpness is not None:
            lam, _ = sharpness(o, None)
            path_steps.append(int(o.steps))
            path_sharp.append(float(lam))
            path_rate.append(lr_s)
            path_time.append(flow)
        if o.crossed or o.diverged or o.steps - start <= 0:
            break
        if lam is None and o.steps >= budget:
            break
        if lam is not None and lr_s * lam > 0.9:
            lr_s = 0.75 / lam
        if o.steps >= 50 * budget:  # a path that never reaches the threshold
            break
    rs = rn.record(lr_s, SMALL, LEARNED if o.crossed else (DIVERGED if o.diverged else UNSETTLED), o)
    rs.learning_time = float(o.cross_step) if o.crossed else math.nan
    rate_sharp = max(r * l for r, l in zip(path_rate, path_sharp)) if path_sharp else None
    return dict(
        t_ct=flow if o.crossed else None, t_ct_rate=lr_s, lam_star=max(path_sharp) if path_sharp else None,
        sharpness_steps=path_steps, sharpness=path_sharp, sharpness_times=path_time, flow_rates=path_rate,
        small_rate_stable=(rate_sharp < 2.0) if rate_sharp is not None else None,
        max_rate_times_sharpness=rate_sharp, small_rate_spikes=rs.spikes, flow_method="descent",
    )


def _integrated_path(rn: _Runner, fp: FlowPath, fastest: float, t_min: float, *, max_steps: int,
                     small_rate_factor: float, snapshots: int, cache: dict | None = None) -> dict:
    """Step 5 with the member's own flow integrator (``fp``, :class:`~dlnjax.networks.outcome.FlowPath`):
    the flow from the start to the crossing, with the Hessian's top eigenvalue every ``1.1 x``
    (the fastest crossing's flow time) / ``snapshots`` and at the crossing (the small-rate run's
    snapshot times), up to ``50 x`` that time.

    The check against simulation: gradient descent at the run's precision from the flow's state at
    the last snapshot before the crossing, at ``min(fastest / small_rate_factor, 0.75 / lambda)``
    (lambda: the larger of the eigenvalues at that snapshot and at the crossing), to its own
    crossing. ``flow_check_t_ct`` (that snapshot's time plus rate x steps) minus ``t_ct``, over
    ``t_ct``, is ``flow_check_rel``: the flow against the network on the part where sharpening is
    steepest, to O(rate). Its run is the depth's ``small-rate`` run. ``cache`` (the depth's
    checkpoint) keeps the result, so a resumed sweep does not integrate the flow again; the check
    run is then replayed from the member's own memo (``fp.member_at(None)``), so the runs
    recorded are the same."""
    if cache is not None and "result" in cache:
        out = dict(cache["result"])
        if out.get("flow_check_limit"):
            _check_run(rn, fp.member_at(None), out["t_ct_rate"], out["flow_check_limit"])
        return out
    t_est = fastest * t_min  # >= T_ct (edge-of-stability events only slow runs down)
    seg = 1.1 * t_est / max(int(snapshots), 1)
    n_seg = 50 * max(int(snapshots), 1)
    t_ct, times, states, solver_steps = fp.solve(seg * np.arange(0, n_seg), seg * n_seg)
    # the eigenvalue after the start (the small-rate run's snapshots; at the start, a saddle, it is
    # negative); the start's state is kept for a check from there
    sharp = [float(fp.sharpness(st)) for st in states[1:]]
    out = dict(t_ct=t_ct, lam_star=max(sharp) if sharp else None, sharpness_times=[float(t) for t in times[1:]],
               sharpness=sharp, sharpness_steps=[], flow_rates=[], flow_method="end_to_end", flow_solver_steps=int(solver_steps),
               t_ct_rate=None, small_rate_stable=None, max_rate_times_sharpness=None, small_rate_spikes=None,
               flow_check_t_ct=None, flow_check_rel=None, flow_check_from=None, flow_check_limit=None)
    if t_ct is not None and len(states) >= 2:
        k = len(states) - 2  # the last snapshot before the crossing (0: the start)
        lam = max(abs(sharp[k - 1]), abs(sharp[-1])) if k >= 1 else abs(sharp[-1])
        lr_c = min(fastest / float(small_rate_factor), 0.75 / max(lam, 1e-300))
        limit = max(int(max_steps), int(math.ceil(4.0 * (t_ct - times[k]) / lr_c)))
        o, rs = _check_run(rn, fp.member_at(states[k]), lr_c, limit)
        out.update(t_ct_rate=lr_c, flow_check_from=float(times[k]), flow_check_limit=limit, small_rate_spikes=rs.spikes,
                   max_rate_times_sharpness=lr_c * lam, small_rate_stable=lr_c * lam < 2.0)
        if o.crossed:
            out["flow_check_t_ct"] = float(times[k]) + lr_c * o.cross_step
            out["flow_check_rel"] = out["flow_check_t_ct"] / t_ct - 1.0
    if cache is not None:
        cache["result"] = dict(out)
    return out


def _check_run(rn: _Runner, member: MemberFn, lr: float, limit: int) -> tuple[MemberOutcome, RateRun]:
    """The flow path's check run (the depth's small-rate run), recorded."""
    o = rn.call(lr, int(limit), member=member)
    rs = rn.record(lr, SMALL, LEARNED if o.crossed else (DIVERGED if o.diverged else UNSETTLED), o)
    rs.learning_time = float(o.cross_step) if o.crossed else math.nan
    return o, rs


# what rate_statistics reports without the gradient-flow path (flow_run=False)
_NO_FLOW_PATH: dict = dict(t_ct=None, t_ct_rate=None, lam_star=None, sharpness_steps=[], sharpness=[], sharpness_times=[], flow_rates=[],
                           small_rate_stable=None, max_rate_times_sharpness=None, small_rate_spikes=None, flow_method=None)


def rate_statistics(
    member: MemberFn,
    grid: Sequence[float],
    *,
    max_steps: int,
    stop_factor: float = 3.0,
    probe_steps: int = 2000,
    edge_bisections: int = 4,
    edge_patience: float = 5.0,
    small_rate_factor: float = 16.0,
    band: float = BAND,
    extend_max: int = 16,
    sharpness: Callable[[MemberOutcome, Any], tuple[float, Any]] | None = None,
    snapshots: int = 16,
    flow_run: bool = True,
    flow_path: FlowPath | None = None,
    flow_cache: dict | None = None,
    ensemble: Sequence[MemberFn] = (),
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> RateStats:
    """Run ``member`` over ``grid``, its extensions and the refinements, and compute the
    statistics (module docstring): 1. the grid; 2. its extension until the optimum is bracketed;
    3. the edge bisection; 4. the band; 5. the gradient-flow path (``flow_run=False`` skips it:
    ``t_ct`` and ``lam_star`` are then None; they are predictions, not the measurement, and on
    whitened inputs the path needs ``T_ct lambda*`` steps, over 10^7 at depth 100 on
    Fashion-MNIST, where Eq. 15 is exact anyway). With ``flow_path`` (the member's flow
    integrator) step 5 integrates the flow and checks it with one short small-rate run
    (:func:`_integrated_path`; its result kept in ``flow_cache``); without it, step 5 is the
    small-rate run all the way (:func:`_flow_path`).

    Deterministic given the outcomes: ``member`` may be memoised (resume after a kill replays
    the same decisions and finds every finished run)."""
    ratio = grid_ratio(grid)
    grid = sorted((float(x) for x in grid), reverse=True)
    max_steps = int(max_steps)
    rn = _Runner(member, progress)
    _run_grid(rn, grid, max_steps, stop_factor, probe_steps)
    bracketed, up, down = _extend(rn, ratio, max_steps, stop_factor, int(extend_max))
    learned = [r for r in rn.runs if r.status == LEARNED]
    if not learned:
        return RateStats(rn.runs, None, None, None, None, None, None, None, None, None, None, 0, rn.cost,
                         bracketed=False, extended_up=up, extended_down=down)
    # steps 3-5 depend on the grid's runs alone, not on each other: the flow path and the edge
    # bisection (two chains, each on its own fork of the runner) and the ensemble's members (one
    # run each) run at once, ``workers`` at a time; their runs are recorded in a fixed order
    t_grid, lr_grid = rn.t_fast, rn.fast_lr
    edge_rn, flow_rn = rn.fork(), rn.fork()
    plan = _ensemble_plan(rn, band, max_steps, edge_patience) if ensemble else None
    jobs = [(i, m) for i in plan[2] for m in ensemble] if plan else []
    tasks: list[Callable[[], Any]] = [lambda: _bisect_edge(edge_rn, max_steps, edge_bisections, edge_patience)]
    if flow_run and flow_path is not None:  # the member's own flow integrator, checked by one short run
        tasks.insert(0, lambda: _integrated_path(flow_rn, flow_path, lr_grid, t_grid, max_steps=max_steps,
                                                 small_rate_factor=small_rate_factor, snapshots=snapshots,
                                                 cache=flow_cache))
    elif flow_run:  # the longest chain first
        tasks.insert(0, lambda: _flow_path(flow_rn, lr_grid, t_grid, max_steps=max_steps,
                                           small_rate_factor=small_rate_factor, snapshots=snapshots,
                                           sharpness=sharpness))
    tasks += [lambda i=i, m=m: rn.call(plan[0][i], plan[3], member=m) for i, m in jobs]
    done = in_threads(tasks, workers)
    flow = done.pop(0) if flow_run else _NO_FLOW_PATH
    edge, edge_hi = done.pop(0)
    rn.merge(edge_rn)
    learned = [r for r in rn.runs if r.status == LEARNED]
    t_min, fastest, band_lo, band_hi = band_of([r.lr for r in learned], [r.learning_time for r in learned], band)
    ens_rates: list[float] = []
    if ensemble:
        n = len(ensemble)
        outcomes = [done[j * n:(j + 1) * n] for j in range(len(plan[2]))]
        t_min, fastest, band_lo, band_hi, ens_rates = _ensemble_band(rn, plan, outcomes, band)
    rn.merge(flow_rn)
    spiky = sum(1 for r in rn.runs if r.status == LEARNED and (r.spikes or 0) > 0)
    flow = dict(flow)
    lam_star = flow.pop("lam_star")
    return RateStats(
        runs=rn.runs, t_min=t_min, fastest_rate=fastest, edge=edge, edge_hi=edge_hi, band_lo=band_lo, band_hi=band_hi,
        band_centre=math.sqrt(band_lo * band_hi), t_ct=flow.pop("t_ct"), t_ct_rate=flow.pop("t_ct_rate"),
        lam_star=lam_star, spikes_before_crossing=spiky, member_steps=rn.cost, bracketed=bracketed,
        extended_up=up, extended_down=down,
        extra=dict(edge_predicted=(2.0 / lam_star) if lam_star else None, ensemble=len(ensemble) + 1,
                   ensemble_rates=ens_rates, **flow),
    )


def memoised(member: MemberFn, cache: dict | None = None, on_new: Callable[[dict], None] | None = None,
             tag: str = "") -> MemberFn:
    """``member`` with its outcomes kept in ``cache`` (keyed by rate and limit, and ``tag``, which
    tells members sharing a cache apart, e.g. an ensemble's perturbed starts): a resumed run
    replays :func:`rate_statistics`'s decisions and recomputes nothing it finished.
    ``on_new(cache)`` is called after each new outcome (to save a checkpoint)."""
    cache = {} if cache is None else cache

    def wrapped(lr: float, limit: int, resume: Any = None) -> MemberOutcome:
        k = (float(lr).hex() + tag, int(limit))
        if k not in cache:
            cache[k] = member(lr, limit, resume)
            if on_new is not None:
                on_new(cache)
        return cache[k]

    return wrapped
