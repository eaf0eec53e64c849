"""The optimum-finding code of Fig. 4 (dlnjax.measure.robust: grid, bracketing, band, edge bisection;
dlnjax.measure.headline: the headline's intervals), driven by synthetic learning-time curves whose answer
is known in closed form, and the intervals checked against runs that rounding moved."""

import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dlnjax.measure import headline, robust
from helpers import TOL, TOL_ULPS, approx, assert_close

F64 = "float64"  # the synthetic curves and the statistics are Python / NumPy float64
ROOT = Path(__file__).resolve().parents[1]


class Valley:
    """A synthetic member: learning time ``t(lr) = T/lr (1 + (lr/c)^4)`` steps, whose minimum is
    at ``lr* = c / 3^(1/4)``; rates above ``edge`` diverge at step 5. Resumable like an engine."""

    def __init__(self, c: float, T: float = 1.0, edge_factor: float = 1.5):
        self.c, self.T, self.edge = c, T, edge_factor * c
        self.calls: list[float] = []

    def time(self, lr: float) -> float:
        return self.T / lr * (1.0 + (lr / self.c) ** 4)

    @property
    def optimum(self) -> float:
        return self.c / 3 ** 0.25

    def band(self, frac: float = 0.1, t_min: float | None = None) -> tuple[float, float]:
        """The exact rates where t = (1 + frac) t_min (bisection in log rate); ``t_min`` the
        curve's minimum unless given (a grid's measured minimum)."""
        cut = (1 + frac) * (self.time(self.optimum) if t_min is None else t_min)

        def root(a: float, b: float) -> float:
            for _ in range(200):
                m = math.sqrt(a * b)
                if (self.time(m) > cut) == (self.time(a) > cut):
                    a = m
                else:
                    b = m
            return math.sqrt(a * b)

        return root(self.optimum / 100, self.optimum), root(self.optimum, min(self.edge, self.optimum * 100))

    def __call__(self, lr: float, limit: int, resume=None) -> robust.MemberOutcome:
        self.calls.append(lr)
        empty = np.zeros(0)
        if lr > self.edge:
            return robust.MemberOutcome(lr, limit, min(5, limit), -1, 5 if limit > 5 else -1, None, None, None, empty, empty, empty)
        t = int(math.ceil(self.time(lr)))
        if t < limit:
            return robust.MemberOutcome(lr, limit, t, t, -1, None, None, None, empty, empty, empty)
        return robust.MemberOutcome(lr, limit, limit, -1, -1, None, None, None, empty, empty, empty)


def _stats(member: Valley, grid, **kw) -> robust.RateStats:
    kw = {"max_steps": 10**7, "edge_bisections": 4, **kw}
    return robust.rate_statistics(member, grid, **kw)


def test_band_and_optimum_of_a_known_valley():
    """Optimum inside the grid: the fastest crossing is the grid's best, the band's ends lie within
    the log-log interpolation error of the exact ones, and its centre near the exact optimum."""
    v = Valley(c=1e-3, T=2.0)  # t_min ~ 3500 steps: rounding to whole steps is negligible
    grid = np.geomspace(1e-4, 1e-2, 60)  # ratio 1.08: the log-log interpolation of the band's ends errs < 1%
    rs = _stats(v, grid)
    assert rs.bracketed and rs.extended_up == 0 and rs.extended_down == 0
    on_grid = [(g, v.time(g)) for g in grid if g < v.edge]
    g_best, t_best = min(on_grid, key=lambda x: x[1])
    assert rs.fastest_rate == approx(g_best, F64, table=TOL_ULPS)
    assert abs(rs.t_min - t_best) <= 1
    lo, hi = v.band(t_min=rs.t_min)  # the band is relative to the measured fastest crossing
    assert rs.band_lo == pytest.approx(lo, rel=0.02) and rs.band_hi == pytest.approx(hi, rel=0.02)
    assert rs.best_rate == pytest.approx(math.sqrt(lo * hi), rel=0.02)
    # the band's centre is the optimum of this (log-asymmetric) valley to within the band's own width
    assert lo < v.optimum < hi
    # the stability edge is bracketed by the bisection, to the grid step / 2^4
    assert rs.edge <= v.edge <= rs.edge_hi and rs.edge_hi / rs.edge <= (grid[1] / grid[0]) ** (1 / 16) * (1 + TOL[F64]["rtol"])


def test_optimum_above_the_grid_is_bracketed_by_extending_it():
    """The optimum 20x above the grid's top: the grid grows at its own spacing until a slower (or
    failing) rate lies above the fastest, and the answer is the one a wide grid gives."""
    v = Valley(c=1e-3, T=2.0)
    grid = np.geomspace(v.optimum / 20 / 1e3, v.optimum / 20, 20)
    ratio = robust.grid_ratio(grid)
    rs = _stats(v, grid)
    assert rs.bracketed
    need = math.ceil(math.log(20) / math.log(ratio))  # grid steps from the top to the optimum
    assert need <= rs.extended_up <= need + 4 and rs.extended_down == 0
    ext = sorted(r.lr for r in rs.runs if r.role == robust.EXTENDED)
    k = np.log(np.asarray(ext) / grid[-1]) / math.log(ratio)
    assert_close(k, np.arange(1, len(ext) + 1), F64)  # whole steps of the grid's spacing
    wide = _stats(Valley(c=1e-3, T=2.0), np.concatenate([grid, grid[-1] * ratio ** np.arange(1, 30)]))
    assert rs.t_min == wide.t_min and rs.fastest_rate == approx(wide.fastest_rate, F64)
    assert rs.band_lo == approx(wide.band_lo, F64) and rs.band_hi == approx(wide.band_hi, F64)


def test_optimum_below_a_grid_that_diverges_is_bracketed_downwards():
    v = Valley(c=1e-3, T=2.0)
    grid = np.geomspace(3 * v.edge, 300 * v.edge, 10)  # every grid rate diverges
    rs = _stats(v, grid)
    assert rs.bracketed and rs.extended_down > 0 and rs.extended_up == 0
    lo, hi = v.band()
    assert lo * 0.97 <= rs.fastest_rate <= hi * 1.03


def test_cap_on_the_extension_is_flagged():
    v = Valley(c=1e-3, T=2.0)
    grid = np.geomspace(v.optimum / 1e5, v.optimum / 1e3, 10)
    rs = _stats(v, grid, extend_max=3)
    assert not rs.bracketed and rs.extended_up == 3
    assert rs.fastest_rate == approx(grid[-1] * robust.grid_ratio(grid) ** 3, F64)  # the top of the capped grid


def test_classification_of_runs():
    """Diverged above the edge; stopped (3x the fastest) and then skipped below a slow rate
    (t_min ~ 900 steps, below probe_steps: no run is parked)."""
    v = Valley(c=1e-3, T=0.5)
    grid = np.geomspace(1e-6, 1e-2, 20)
    rs = _stats(v, grid)
    by = {r.lr: r.status for r in rs.runs if r.role == robust.GRID}
    for lr, st in by.items():
        if lr > v.edge:
            assert st == robust.DIVERGED
        elif st == robust.LEARNED:
            assert v.time(lr) < 3 * rs.t_min + 1
    stopped = sorted(lr for lr, st in by.items() if st == robust.STOPPED)
    skipped = sorted(lr for lr, st in by.items() if st == robust.SKIPPED)
    assert len(stopped) == 1 and v.time(stopped[0]) >= 3 * rs.t_min - 1  # the first rate slower than 3x the fastest
    assert skipped and max(skipped) < stopped[0]  # every smaller rate is slower still: not run
    assert not any(c in skipped for c in v.calls)


def test_parked_runs_find_the_first_crossing_in_doubling_rounds():
    """Every rate slower than probe_steps (t_min ~ 9,000 steps): the parked runs advance in rounds
    that double their steps, so no rate is run to max_steps before a crossing is known, and the
    statistics equal those of a run with no parking at all (probe_steps = max_steps)."""
    v = Valley(c=1e-3, T=5.0, edge_factor=3.0)  # rates up to 3 c run on without crossing or diverging
    grid = np.geomspace(1e-5, 2.9e-3, 16)
    steps: dict[float, int] = {}

    def member(lr, limit, resume=None):
        o = v(lr, limit, resume)
        steps[lr] = max(steps.get(lr, 0), int(o.steps))
        return o

    max_steps = 10**6
    rs = _stats(member, grid, max_steps=max_steps, probe_steps=2000, edge_bisections=0)
    ref = _stats(Valley(c=1e-3, T=5.0, edge_factor=3.0), grid, max_steps=max_steps, probe_steps=max_steps,
                 edge_bisections=0)
    assert (rs.t_min, rs.fastest_rate, rs.band_lo, rs.band_hi) == (ref.t_min, ref.fastest_rate, ref.band_lo, ref.band_hi)
    # no grid run went past twice the first crossing's steps before it, or past stop/edge limits after
    assert max(n for lr, n in steps.items() if lr in set(grid)) <= 2 * 3 * rs.t_min + 1
    # the parked rates above the fastest were not run to max_steps (the old behaviour)
    assert all(n < max_steps for n in steps.values())


def test_without_the_flow_run_there_is_no_small_rate_run():
    v = Valley(c=1e-3, T=0.5)
    rs = _stats(v, np.geomspace(1e-5, 1e-2, 20), flow_run=False)
    assert rs.t_ct is None and rs.lam_star is None and rs.t_min is not None
    assert not any(r.role == robust.SMALL for r in rs.runs)
    with_flow = _stats(Valley(c=1e-3, T=0.5), np.geomspace(1e-5, 1e-2, 20))
    assert with_flow.t_ct is not None and (rs.t_min, rs.best_rate) == (with_flow.t_min, with_flow.best_rate)


class NoisyValley(Valley):
    """A :class:`Valley` whose learning times carry the edge of stability's chaos: each run's time
    is multiplied by ``exp(sigma z)``, ``z`` a standard normal fixed by (rate, kernel, start), as
    if rounding (``kernel``) and the start's perturbation (``start``) moved it."""

    def __init__(self, kernel: int, start: int = 0, sigma: float = 0.08, **kw):
        super().__init__(**kw)
        self.kernel, self.start, self.sigma = kernel, start, sigma

    def time(self, lr: float) -> float:
        z = np.random.default_rng([self.kernel, self.start, int(round(math.log(lr) * 1e6)) & 0xFFFFFFFF]).standard_normal()
        return super().time(lr) * math.exp(self.sigma * z)


def test_ensemble_median_moves_the_band_centre_less_than_one_run():
    """Two 'kernels' that move every run's time by ~8% at random: the band centre of one run per
    rate moves between them by more than the band centre of five starts' medians does, averaged
    over 30 kernel pairs; and the ensemble's centre is nearer the noiseless optimum."""
    grid = np.geomspace(1e-4, 1e-2, 30)
    kw = dict(c=1e-3, T=2.0, edge_factor=3.0)
    clean = _stats(Valley(**kw), grid, edge_bisections=0).best_rate

    def centre(kernel: int, k: int) -> float:
        members = [NoisyValley(kernel, j, **kw) for j in range(1, k)]
        return _stats(NoisyValley(kernel, 0, **kw), grid, edge_bisections=0, ensemble=members).best_rate

    single = [abs(math.log(centre(2 * i, 1) / centre(2 * i + 1, 1))) for i in range(30)]
    five = [abs(math.log(centre(2 * i, 5) / centre(2 * i + 1, 5))) for i in range(30)]
    assert np.mean(five) < 0.75 * np.mean(single), (np.mean(five), np.mean(single))
    err1 = np.mean([abs(math.log(centre(i, 1) / clean)) for i in range(30)])
    err5 = np.mean([abs(math.log(centre(i, 5) / clean)) for i in range(30)])
    assert err5 < err1, (err5, err1)


def test_ensemble_runs_only_near_the_optimum_and_is_recorded():
    v = Valley(c=1e-3, T=2.0)
    grid = np.geomspace(1e-5, 1e-2, 20)
    members = [Valley(c=1e-3, T=2.0) for _ in range(4)]
    rs = _stats(v, grid, ensemble=members)
    one = _stats(Valley(c=1e-3, T=2.0), grid)
    # identical starts: the medians are the single run's times, so the statistics do not move
    assert (rs.t_min, rs.band_lo, rs.band_hi) == (one.t_min, one.band_lo, one.band_hi)
    ens = [r for r in rs.runs if r.role == robust.ENSEMBLE]
    rates = sorted(set(r.lr for r in ens))
    assert rates == sorted(rs.extra["ensemble_rates"]) and len(ens) == 4 * len(rates)
    assert rs.extra["ensemble"] == 5
    # only rates within 30% of the fastest and their two neighbours
    times = {r.lr: r.learning_time for r in rs.runs if r.role in robust.MAIN_ROLES and r.status == robust.LEARNED}
    near = [lr for lr, t in times.items() if t <= 1.3 * one.t_min]
    assert set(near) <= set(rates) and len(rates) <= len(near) + 2


class Concurrent(NoisyValley):
    """A :class:`NoisyValley` that counts how many of its members' runs are in flight at once
    (shared by the depth's members; each run sleeps 5 ms, as an engine's call releases the GIL)."""

    def __init__(self, tally: dict, *a, **kw):
        super().__init__(*a, **kw)
        self.tally = tally

    def __call__(self, lr, limit, resume=None):
        with self.tally["lock"]:
            self.tally["now"] += 1
            self.tally["max"] = max(self.tally["max"], self.tally["now"])
        time.sleep(0.005)
        try:
            return super().__call__(lr, limit, resume)
        finally:
            with self.tally["lock"]:
                self.tally["now"] -= 1


@pytest.mark.parametrize("workers", [2, 5])
def test_a_depths_independent_runs_run_at_once_and_give_the_same_numbers(workers):
    """Once the grid is run, the edge bisection, the flow path and the ensemble's members run
    ``workers`` at a time (more than one in flight), and every statistic and every recorded run,
    in order, is the one of the one-at-a-time run."""
    grid = np.geomspace(1e-5, 1e-2, 20)
    kw = dict(c=1e-3, T=2.0, edge_factor=3.0)

    def run(w: int):
        tally = {"lock": threading.Lock(), "now": 0, "max": 0}
        members = [Concurrent(tally, 7, j, **kw) for j in range(1, 5)]
        rs = _stats(Concurrent(tally, 7, 0, **kw), grid, ensemble=members, workers=w)
        runs = [(r.lr, r.role, r.status, r.learning_time, r.steps) for r in rs.runs]
        numbers = (rs.t_min, rs.fastest_rate, rs.band_lo, rs.band_hi, rs.edge, rs.edge_hi, rs.t_ct, rs.t_ct_rate,
                   rs.member_steps, rs.extra["ensemble_rates"])
        return tally["max"], runs, numbers

    one, many = run(1), run(workers)
    assert one[0] == 1 and many[0] >= 2, (one[0], many[0])
    assert {r[1] for r in one[1]} >= {robust.EDGE, robust.ENSEMBLE, robust.SMALL}
    assert many[1] == one[1] and many[2] == one[2]


def test_growth_interval_matches_its_closed_form():
    """Two depths, each learning time log-uniform within +-ln(1.1): the log ratio is triangular on
    [-2w, 2w], whose 5% and 95% quantiles are -+2w (1 - sqrt(0.1))."""
    h = headline.headline([3, 100], 20, best_rate=[1e-4, 1e-5], best_rate_band=[[5e-5, 2e-4], [5e-6, 2e-5]],
                          learning_time=[1000.0, 3000.0], band=0.1)
    w = 2 * math.log(1.1) * (1 - math.sqrt(0.1))
    lo, hi = h["learning_time_growth_ci"]
    assert h["learning_time_growth"] == approx(3.0, F64)
    # the interval's ends are quantiles of random draws: their sampling error, not rounding
    assert math.log(lo / 3.0) == pytest.approx(-w, abs=0.01) and math.log(hi / 3.0) == pytest.approx(w, abs=0.01)


def test_slope_and_its_interval_on_a_power_law():
    """Rates exactly ~ 1/N_l with bands of +-20%: the slope is -1 over the late depths only, its
    interval holds -1, and a per-depth spread comparable to the band gives an interval of the width
    the least-squares formula predicts (sd of a uniform draw / sqrt(Sxx), 90%: +-1.645 sd)."""
    d = np.array([3, 5, 10, 20, 30, 40, 50, 70, 100])
    rate = 1e-3 / d
    rate[:3] *= [3.0, 0.5, 2.0]  # the early depths are off the law: they must not enter the fit
    band = [[r / 1.2, r * 1.2] for r in rate]
    lt = 1000 * d ** 0.3
    h = headline.headline(d.tolist(), 20, best_rate=rate.tolist(), best_rate_band=band, learning_time=lt.tolist(),
                          band=0.1, grid_ratio=1.0)
    assert h["late_depths"] == [20, 30, 40, 50, 70, 100]
    assert h["lr_exponent"] == pytest.approx(-1.0, abs=TOL[F64]["atol"])
    assert h["learning_time_late_slope"] == pytest.approx(0.3, abs=TOL[F64]["atol"])
    x = np.log(d[d >= 20])
    sxx = float(np.sum((x - x.mean()) ** 2))
    sd = 2 * math.log(1.2) / math.sqrt(12) / math.sqrt(sxx)
    lo, hi = h["lr_exponent_ci"]
    assert lo < -1.0 < hi
    assert (hi - lo) / 2 == pytest.approx(1.645 * sd, rel=0.1)  # sampled draws against the formula
    # a grid step wider than the band widens the rate interval (grid resolution)
    h2 = headline.headline(d.tolist(), 20, best_rate=rate.tolist(), best_rate_band=band, learning_time=lt.tolist(),
                           band=0.1, grid_ratio=2.0)
    assert h2["lr_exponent_ci"][1] - h2["lr_exponent_ci"][0] > hi - lo
    # the same lists give the same interval (a fixed seed)
    assert headline.headline(d.tolist(), 20, best_rate=rate.tolist(), best_rate_band=band, learning_time=lt.tolist(),
                             band=0.1, grid_ratio=1.0) == h


def _v1_lists(name: str) -> dict:
    """The per-depth measurements of a committed (summary_version 1) run under their new names."""
    s = json.loads((ROOT / "docs" / "runs" / name).read_text())
    return dict(depths=s["depths"], best_rate=s["band_centre"], best_rate_band=s["band_10pct"],
                learning_time=s["fastest_learning_time"], grid_ratio=robust.grid_ratio(s["learning_rates"]))


@pytest.mark.parametrize("a,b", [("depth_sweep_embedded_f32.json", "depth_sweep_embedded_f64.json")])
def test_intervals_cover_what_rounding_moved_in_committed_runs(a, b):
    """The default main job run in float32 and in float64 (committed before this statistic was the
    headline, so nothing here was tuned to it): each run's 90% interval holds the other's point
    value, for every headline number, over the late depths (N_l >= 20) and over N_l >= 5."""
    ra, rb = _v1_lists(a), _v1_lists(b)
    for late in (20, 5):
        ha = headline.headline(ra["depths"], late, **{k: v for k, v in ra.items() if k != "depths"})
        hb = headline.headline(rb["depths"], late, **{k: v for k, v in rb.items() if k != "depths"})
        for k in ("lr_exponent", "learning_time_growth", "learning_time_late_slope"):
            assert ha[k + "_ci"][0] <= hb[k] <= ha[k + "_ci"][1], (late, k, ha[k + "_ci"], hb[k])
            assert hb[k + "_ci"][0] <= ha[k] <= hb[k + "_ci"][1], (late, k, hb[k + "_ci"], ha[k])
