"""Learning-rate statistics that rounding cannot move (Fig. 4 at the paper's protocol).

On raw pixels, learning time against rate is almost flat near its minimum, and runs near the
best rate reach the edge of stability, where loss spikes grow out of rounding noise: the
arg-min over a grid of rates then jumps between grid points from one machine (or precision, or
engine) to another. This module replaces it by statistics defined so that rounding cannot
move them more than a few percent (see docs and README for the definitions):

``t_ct``       the continuous-time learning time: the flow time (sum of rate x steps) of a
               run that follows the gradient-flow path to the threshold, starting at the fastest
               grid rate / ``small_rate_factor`` (16) and lowering its rate whenever rate x
               lambda_max passes 0.9 (to 0.75 / lambda_max), so it never enters the edge of
               stability. Learning time is ``~ T_ct / lr`` at small rates: a property of
               gradient flow, not of the step.
``lam_star``   the largest top eigenvalue of the loss Hessian met along that small-rate
               (gradient-flow) path up to its crossing (``sharpness``, power iteration on
               Hessian-vector products at ``snapshots`` points): progressive sharpening.
``edge``       the stability edge: the largest rate at which the run crosses the threshold
               without diverging within ``edge_patience x`` (5x) the fastest crossing of its
               depth (and ``max_steps``), located by bisection between the grid's last learning rate
               and the first failing one above it, to ``(hi/lo) - 1`` (a few percent).
``best_rate``  ``1 / lam_star``: the supplement's optimal rate ``1/lambda_1`` (Eqs. 19-20, half
               the stability edge ``2/lambda_1``), with ``lambda_1`` measured on the real
               statistics along the path instead of the diagonal approximation at ``a_opt``.
               ``edge_predicted = 2 / lam_star`` is drawn beside the measured ``edge``.
``learning_time`` at the best rate: ``t_ct * lam_star = T_ct / best_rate``, the small-rate law
               ``t = T_ct / lr`` that the paper's own argument uses (Eqs. 15, 21-23).
``band``       (diagnostic) the rates whose learning time is within ``band`` (10%) of the
               fastest, ends interpolated log-log; its geometric centre is ``band_centre``. On
               raw pixels it moves with rounding (the valley is flat and its runs spike), which
               is why it is not the headline: the robustness table shows both.

Every run also reports whether loss spikes (edge-of-stability events: ``E_t > (1 + rtol)
E_{t-1}`` before the crossing) happened, detected inside the training loop.

No wasted steps: rates are run from the largest down. Once one has crossed at ``t_fast``, a
smaller rate still above the threshold at ``stop_factor x t_fast`` is stopped and marked, and
the rates below it (slower still, since ``t ~ T_ct / lr`` there) are skipped and marked,
unless the stopped run's loss rose on the way (the chaotic window above a mode's edge, where a
smaller rate can still learn). A rate
run before any crossing is known is parked after ``probe_steps`` and continued later (runs are
resumable, so no step is repeated). The small-rate run of ``t_ct`` is exempt.

The engine is abstract: ``member(lr, limit, resume) -> MemberOutcome`` (see
:mod:`dlnjax.compressed` for the compressed engine and :func:`full_width_member` for the
full-width engines), so the same statistics are computed for every engine and precision.
No I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .sweep import loglog_slope

Array = Any

# run status
LEARNED, DIVERGED, STOPPED, UNSETTLED, SKIPPED = "learned", "diverged", "stopped", "unsettled", "skipped"


@dataclass
class MemberOutcome:
    """One network at one rate, run until it crossed, diverged or reached ``limit`` steps."""

    lr: float
    limit: int
    steps: int  # steps taken
    cross_step: int  # -1: not crossed
    diverge_step: int  # -1: not diverged
    spikes: int | None  # loss rises before the crossing (None: engine does not detect them)
    first_spike: int | None
    max_rise: float | None
    record_steps: np.ndarray
    loss: np.ndarray  # loss at record_steps (nan where not reached)
    modes: np.ndarray  # (T, k) mode strengths in the original basis
    state: Any = None  # the engine's state, to continue the run to a longer limit

    @property
    def crossed(self) -> bool:
        return self.cross_step >= 0

    @property
    def diverged(self) -> bool:
        return self.diverge_step >= 0


MemberFn = Callable[[float, int, Any], MemberOutcome]


@dataclass
class RateRun:
    lr: float
    role: str  # 'grid' | 'edge' (bisection probe) | 'small' (t_ct)
    status: str
    learning_time: float  # nan unless learned
    steps: int
    spikes: int | None
    first_spike: int | None
    max_rise: float | None
    outcome: MemberOutcome | None = None


@dataclass
class RateStats:
    """The robust statistics of one depth (see the module docstring)."""

    runs: list[RateRun]
    t_min: float | None
    fastest_rate: float | None
    edge: float | None  # largest rate that learned (lower end of the bracket)
    edge_hi: float | None  # smallest failing rate above it (None: not bracketed)
    band_lo: float | None
    band_hi: float | None
    best_rate: float | None
    learning_time: float | None  # at best_rate (log-log interpolation)
    t_ct: float | None  # lr * t(lr) at the small rate
    t_ct_rate: float | None
    spikes_before_crossing: int  # number of learned runs with spikes before their crossing
    member_steps: int  # steps taken by all runs together (the cost)
    extra: dict = field(default_factory=dict)

    def grid(self) -> list[RateRun]:
        return [r for r in self.runs if r.role == "grid"]


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
    band: float = 0.1,
    sharpness: Callable[[MemberOutcome, Any], tuple[float, Any]] | None = None,
    snapshots: int = 16,
    progress: Callable[[str], None] | None = None,
) -> RateStats:
    """Run ``member`` over ``grid`` and the refinements, and compute the statistics.

    Deterministic given the outcomes: ``member`` may be memoised (resume after a kill replays
    the same decisions and finds every finished run)."""
    grid = sorted((float(x) for x in grid), reverse=True)
    max_steps = int(max_steps)
    runs: list[RateRun] = []
    cost = 0
    t_fast: float | None = None
    fast_lr: float | None = None

    def record(lr: float, role: str, status: str, o: MemberOutcome | None) -> RateRun:
        nonlocal t_fast, fast_lr
        t = float(o.cross_step) if (o is not None and status == LEARNED) else math.nan
        if status == LEARNED and (t_fast is None or t < t_fast):
            t_fast, fast_lr = t, lr
        rr = RateRun(lr, role, status, t, 0 if o is None else int(o.steps),
                     None if o is None else o.spikes, None if o is None else o.first_spike,
                     None if o is None else o.max_rise, o)
        runs.append(rr)
        return rr

    def call(lr: float, limit: int, resume: Any = None) -> MemberOutcome:
        nonlocal cost
        o = member(lr, int(limit), resume)
        cost += int(o.steps) - (0 if resume is None else int(resume.steps))
        if progress is not None:
            progress(f"rate {lr:.3g}: {o.steps} steps, " + ("crossed" if o.crossed else "diverged" if o.diverged else "limit"))
        return o

    # 1. the grid, largest rate first
    pending: list[MemberOutcome] = []
    skip = False
    for lr in grid:
        if skip:
            record(lr, "grid", SKIPPED, None)
            continue
        limit = min(max_steps, int(math.ceil(stop_factor * t_fast))) if t_fast is not None else min(max_steps, probe_steps)
        o = call(lr, limit)
        if not o.crossed and not o.diverged and t_fast is None and limit < max_steps:
            pending.append(o)
            continue
        st = _classify(o, limit >= max_steps, above_fastest=False)
        if st == STOPPED and not o.spikes:
            # still falling without a single rise: the slow branch t ~ T_ct / lr, where every
            # smaller rate is slower still. A run that stalled while oscillating (the chaotic
            # window above a mode's edge) says nothing about smaller rates: they are run.
            skip = True
        record(lr, "grid", st, o)
    for o in pending:  # continue the parked runs now that t_fast may be known
        limit = min(max_steps, int(math.ceil(stop_factor * t_fast))) if t_fast is not None else max_steps
        limit = max(limit, o.limit)
        o2 = call(o.lr, limit, o) if limit > o.limit else o
        above = fast_lr is not None and o.lr > fast_lr
        record(o.lr, "grid", _classify(o2, limit >= max_steps, above), o2)

    learned = [r for r in runs if r.status == LEARNED]
    if not learned:
        return RateStats(runs, None, None, None, None, None, None, None, None, None, None, 0, cost)

    # 2. the stability edge, by bisection above the largest rate that learned
    lo = max(r.lr for r in learned)
    above = [r.lr for r in runs if r.lr > lo and r.status in (DIVERGED, UNSETTLED, STOPPED)]
    hi = min(above) if above else None
    if hi is not None:
        for _ in range(int(edge_bisections)):
            mid = math.sqrt(lo * hi)
            limit = min(max_steps, int(math.ceil(edge_patience * t_fast)))
            o = call(mid, limit)
            st = _classify(o, True, above_fastest=True)
            record(mid, "edge", st, o)
            if st == LEARNED:
                lo = mid
            else:
                hi = mid

    # 3. the band within (1 + band) of the fastest (a diagnostic: its ends move with rounding
    #    on raw pixels, where the valley of t(lr) is flat and runs in it spike)
    learned = sorted([r for r in runs if r.status == LEARNED], key=lambda r: r.lr)
    xs = np.array([r.lr for r in learned])
    ts = np.array([r.learning_time for r in learned])
    t_min = float(ts.min())
    cut = (1.0 + band) * t_min
    inside = np.nonzero(ts <= cut)[0]
    k = int(inside.max())
    band_hi = _cross_loglog(cut, xs[k], ts[k], xs[k + 1], ts[k + 1]) if k + 1 < len(xs) else float(xs[k])
    j = int(inside.min())
    band_lo = _cross_loglog(cut, xs[j - 1], ts[j - 1], xs[j], ts[j]) if j > 0 else float(xs[j])

    # 4. gradient flow: one run that follows the gradient-flow path to the crossing, in segments,
    #    with the Hessian's top eigenvalue at every segment end (progressive sharpening). Its rate
    #    adapts to stay off the edge of stability: whenever rate x lambda_max exceeds 0.9 the next
    #    segment runs at 0.75 / lambda_max (any rate schedule with rate x lambda < 2 follows the
    #    same path to O(rate)). T_ct is the flow time, sum of rate x steps, to the crossing.
    fastest = float(xs[int(np.argmin(ts))])
    t_est = fastest * t_min  # >= T_ct (edge-of-stability events only slow runs down)
    lr_s = fastest / float(small_rate_factor)
    seg_flow = 1.1 * t_est / max(int(snapshots), 1)
    path_steps: list[int] = []
    path_sharp: list[float] = []
    path_rate: list[float] = []
    flow, o = 0.0, None
    budget = max(max_steps, int(math.ceil(4.0 * small_rate_factor * t_min)))
    while True:
        start = 0 if o is None else o.steps
        lim = start + max(1, int(math.ceil(seg_flow / lr_s)))
        o = call(lr_s, lim, o)
        flow += lr_s * ((o.cross_step if o.crossed else o.steps) - start)
        lam = None
        if sharpness is not None:
            lam, _ = sharpness(o, None)
            path_steps.append(int(o.steps))
            path_sharp.append(float(lam))
            path_rate.append(lr_s)
        if o.crossed or o.diverged or o.steps - start <= 0:
            break
        if lam is None and o.steps >= budget:
            break
        if lam is not None and lr_s * lam > 0.9:
            lr_s = 0.75 / lam
        if o.steps >= 50 * budget:  # a path that never reaches the threshold
            break
    rs = record(lr_s, "small", LEARNED if o.crossed else (DIVERGED if o.diverged else UNSETTLED), o)
    rs.learning_time = float(o.cross_step) if o.crossed else math.nan
    t_ct = flow if o.crossed else None
    lam_star = max(path_sharp) if path_sharp else None
    rate_sharp = max(r * l for r, l in zip(path_rate, path_sharp)) if path_sharp else None

    # 5. the headline: the sharpness-limited optimal rate 1/lambda* (the supplement's 1/lambda_1,
    #    Eqs. 19-20, with lambda_1 the largest Hessian eigenvalue met along the gradient-flow path to
    #    the threshold on the real statistics) and the learning time there, T_ct * lambda*
    best = (1.0 / lam_star) if lam_star else None
    spiky = sum(1 for r in runs if r.status == LEARNED and (r.spikes or 0) > 0)
    return RateStats(
        runs=runs, t_min=t_min, fastest_rate=float(xs[int(np.argmin(ts))]), edge=lo, edge_hi=hi,
        band_lo=band_lo, band_hi=band_hi, best_rate=best,
        learning_time=(t_ct * lam_star) if (t_ct is not None and lam_star) else None, t_ct=t_ct, t_ct_rate=lr_s,
        spikes_before_crossing=spiky, member_steps=cost,
        extra=dict(
            band_centre=math.sqrt(band_lo * band_hi), lam_star=lam_star,
            edge_predicted=(2.0 / lam_star) if lam_star else None,
            sharpness_steps=path_steps, sharpness=path_sharp,
            small_rate_stable=(rate_sharp < 2.0) if rate_sharp is not None else None,
            max_rate_times_sharpness=rate_sharp, flow_rates=path_rate,
            small_rate_spikes=rs.spikes,
        ),
    )


def memoised(member: MemberFn, cache: dict | None = None, on_new: Callable[[dict], None] | None = None) -> MemberFn:
    """``member`` with its outcomes kept in ``cache`` (keyed by rate and limit): a resumed run
    replays :func:`rate_statistics`'s decisions and recomputes nothing it finished.
    ``on_new(cache)`` is called after each new outcome (to save a checkpoint)."""
    cache = {} if cache is None else cache

    def wrapped(lr: float, limit: int, resume: Any = None) -> MemberOutcome:
        k = (float(lr).hex(), int(limit))
        if k not in cache:
            cache[k] = member(lr, limit, resume)
            if on_new is not None:
                on_new(cache)
        return cache[k]

    return wrapped


def headline(depths: Sequence[int], fit_min_depth: int, *, best_rate: Sequence, edge: Sequence,
             learning_time: Sequence, t_ct: Sequence, t_min: Sequence, band_centre: Sequence) -> dict:
    """The sweep's headline numbers (see the module docstring) from per-depth lists (None where
    not measured), as :class:`RateStats` hold them and a run's ``summary.json`` stores them:
    ``lr_exponent`` (slope of log best rate against log depth, depths >=
    fit_min_depth), ``learning_time_growth`` (learning time at the best rate, deepest over
    shallowest), ``t_ct_growth`` (the same for T_ct); and, as measured diagnostics that rounding
    moves on raw pixels, ``edge_exponent`` (measured edge), ``band_centre_exponent`` and
    ``fastest_time_growth`` (the fastest measured crossing ``t_min``)."""
    d = [int(x) for x in depths]
    fit = [i for i, x in enumerate(d) if x >= fit_min_depth]

    def ratio(v):
        return (v[-1] / v[0]) if (v and v[0] and v[-1]) else None

    def slope(v):
        return loglog_slope([d[i] for i in fit], [v[i] for i in fit])

    return dict(
        lr_exponent=slope(best_rate),
        edge_exponent=slope(edge),
        band_centre_exponent=slope(band_centre),
        fastest_time_growth=ratio(list(t_min)),
        learning_time_growth=ratio(list(learning_time)),
        t_ct_growth=ratio(list(t_ct)),
        lr_exponent_fit_depths=[d[i] for i in fit],
    )


def full_width_member(
    stats: Any, weights: Sequence[Array], threshold: float, *, record_every: int, chunk_steps: int,
    engine: str | None = None, u: Array | None = None, v: Array | None = None, diverge_factor: float = 1e4,
) -> MemberFn:
    """A :data:`MemberFn` on the full-width network (:func:`dlnjax.linear.make_runner`, any
    engine: xla, native, pallas) from ``weights``: steps in chunks of ``chunk_steps``; a crossing
    or divergence after ``limit`` (inside the last chunk) counts as not reached, so the outcome
    is the same as a run stopped at ``limit``. Loss spikes are not detected at full width
    (``spikes`` is None)."""
    import jax
    import jax.numpy as jnp

    from . import linear

    dtype = stats.sigma11.dtype
    runner = jax.jit(linear.make_runner(stats, record_every=record_every, n_records=chunk_steps // record_every,
                                        u=u, v=v, diverge_factor=diverge_factor, engine=engine))
    w0 = tuple(jnp.asarray(w, dtype) for w in weights)
    thr = jnp.asarray(threshold, dtype)

    def member(lr: float, limit: int, resume: Any = None) -> MemberOutcome:
        if resume is None or resume.state is None:  # a replayed outcome keeps no state: run again
            st, steps, losses, modes = linear.init_state(w0, stats), [], [], []
        else:
            st, steps, losses, modes = resume.state
            steps, losses, modes = list(steps), list(losses), list(modes)
        lr_a = jnp.asarray(lr, dtype)
        while True:
            done = int(st.cross_step) >= 0 or bool(st.diverged) or int(st.step) >= limit
            if done:
                break
            st, rec = runner(st, lr_a, thr)
            steps.append(np.asarray(rec.step))
            losses.append(np.asarray(rec.loss))
            modes.append(np.asarray(rec.modes))
        cross = int(st.cross_step)
        div = int(st.diverge_step) if bool(st.diverged) else -1
        cross = cross if 0 <= cross < limit else -1
        div = div if 0 <= div < limit else -1
        taken = cross if cross >= 0 else (div if div >= 0 else min(int(st.step), limit))
        rs = np.concatenate(steps) if steps else np.zeros((0,), np.int64)
        ls = np.concatenate(losses) if losses else np.zeros((0,))
        ms = np.concatenate(modes) if modes else np.zeros((0, 0))
        return MemberOutcome(float(lr), int(limit), int(taken), cross, div, None, None, None, rs, ls, ms,
                             state=(st, steps, losses, modes))

    return member


def full_width_sharpness(stats: Any, iters: int = 40) -> Callable[[MemberOutcome, Any], tuple[float, Any]]:
    """Top Hessian eigenvalue of a full-width run's current weights (power iteration on
    Hessian-vector products: ``jax.jvp`` of the hand-written gradient of Eq. 13), warm-started
    from the previous eigenvector; for outcomes of :func:`full_width_member`."""
    import jax
    import jax.numpy as jnp

    from . import linear

    def grads(ws):
        return linear.loss_and_grad(ws, stats)[1]

    @jax.jit
    def power(ws, v0):
        def body(_, carry):
            v, _lam = carry
            nrm = jnp.sqrt(sum(jnp.sum(x * x) for x in v))
            v = tuple(x / nrm for x in v)
            hv = jax.jvp(grads, (ws,), (v,))[1]
            return hv, sum(jnp.sum(a * b) for a, b in zip(v, hv))

        hv, lam = jax.lax.fori_loop(0, iters, body, (v0, jnp.asarray(0.0, ws[0].dtype)))
        nrm = jnp.sqrt(sum(jnp.sum(x * x) for x in hv))
        return lam, tuple(x / nrm for x in hv)

    def sharp(o: MemberOutcome, v0: Any = None) -> tuple[float, Any]:
        ws = tuple(o.state[0].weights)
        if v0 is None:
            keys = jax.random.split(jax.random.PRNGKey(0), len(ws))
            v0 = tuple(jax.random.normal(k, w.shape, w.dtype) for k, w in zip(keys, ws))
        lam, vec = power(ws, v0)
        return float(lam), vec

    return sharp
