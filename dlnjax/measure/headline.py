"""Fig. 4's headline numbers, from per-depth lists, with 90% intervals (docs/fig4.md, "The
headline and its intervals").

The per-depth measurements (:mod:`dlnjax.measure.robust`) are the empirically optimal rate (the centre of
the band of rates within 10% of the fastest crossing), that band, and the learning time (the
fastest crossing). The headline:

``lr_exponent``               least-squares slope of log best rate against log N_l over the late
                              depths (N_l >= ``late_min_depth``, 20 by default): the paper's
                              "optimal rate ~ 1/N_l" is a slope of -1.
``learning_time_growth``      learning time at the deepest depth over the shallowest.
``learning_time_late_slope``  slope of log learning time against log N_l over the late depths:
                              the saturation test (0: flat; 1: linear growth).

**Intervals** (``*_ci``, 90%). Each per-depth value is known only to within what the measurement
resolves, and that is what rounding (float32 vs float64, engine vs engine, machine vs machine)
moves:

* the optimal rate lies anywhere in its band: log-uniform over ``[band_lo, band_hi]``, widened to
  at least one grid step (``grid_ratio``) around the centre, since the band's ends are
  interpolated between grid rates;
* the learning time lies within the band's tolerance of the fastest crossing: log-uniform over
  ``[t / (1 + band), t (1 + band)]``.

The interval is the 5%-95% range of the statistic over ``draws`` independent draws of every
depth's values (a fixed seed: the same lists give the same interval), widened if needed to
contain the point value. Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

__all__ = ["LEVEL", "DRAWS", "headline", "loglog_slope", "late_slope", "interval_method"]

LEVEL = 0.9
DRAWS = 4000
SEED = 0


def _arr(v: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if x is None else float(x) for x in v], np.float64)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Least-squares slope of log y against log x over finite, positive pairs (None if < 2)."""
    x, y = _arr(x), _arr(y)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def late_slope(depths: Sequence[int], values: Sequence[Any], late_min_depth: int) -> float | None:
    """:func:`loglog_slope` of ``values`` against depth over depths >= ``late_min_depth``."""
    pts = [(d, v) for d, v in zip(depths, values) if int(d) >= int(late_min_depth)]
    return loglog_slope([d for d, _ in pts], [v for _, v in pts]) if pts else None


def interval_method(band: float, grid_ratio: float) -> dict:
    """The interval's definition, as stored beside the headline in ``summary.json``."""
    return dict(level=LEVEL, draws=DRAWS, seed=SEED,
                rate="log-uniform over the 10% band, widened to at least one grid step around its centre",
                time=f"log-uniform over [t/(1+{band:g}), t(1+{band:g})]", band=float(band), grid_ratio=float(grid_ratio))


def _slopes(x: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of ``ly`` (draws x points) against ``x`` (log depths)."""
    xc = x - x.mean()
    return (ly - ly.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)


def _interval(samples: np.ndarray, point: float | None) -> list[float] | None:
    if point is None or samples.size == 0:
        return None
    a = (1.0 - LEVEL) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return [float(min(lo, point)), float(max(hi, point))]


def headline(depths: Sequence[int], late_min_depth: int, *, best_rate: Sequence, best_rate_band: Sequence,
             learning_time: Sequence, band: float = 0.1, grid_ratio: float = 10 ** (3 / 19)) -> dict:
    """The headline with its intervals (module docstring) from per-depth lists (None where a
    depth has no measurement), exactly as ``summary.json`` stores them: ``best_rate`` and
    ``learning_time`` per depth, ``best_rate_band`` a ``[lo, hi]`` pair per depth. ``band`` is the
    band's tolerance (``stats.band``), ``grid_ratio`` the grid's log spacing."""
    d = np.asarray([int(x) for x in depths], np.float64)
    rate, time = _arr(best_rate), _arr(learning_time)
    bands = np.asarray([[np.nan, np.nan] if b is None else [np.nan if x is None else x for x in b] for b in best_rate_band],
                       np.float64).reshape(-1, 2)
    rng = np.random.default_rng(SEED)
    half = 0.5 * math.log(max(float(grid_ratio), 1.0))
    lc = np.log(rate)
    r_lo = np.minimum(np.log(bands[:, 0]), lc - half)
    r_hi = np.maximum(np.log(bands[:, 1]), lc + half)
    lr_draws = r_lo + (r_hi - r_lo) * rng.random((DRAWS, len(d)))
    w = math.log1p(float(band))
    lt_draws = np.log(time) - w + 2.0 * w * rng.random((DRAWS, len(d)))

    late = (d >= int(late_min_depth))
    late_r = late & np.isfinite(lc)
    late_t = late & np.isfinite(np.log(time))
    out: dict[str, Any] = dict(late_depths=[int(x) for x in d[late]])

    def slope_stat(mask: np.ndarray, point_vals: np.ndarray, draws: np.ndarray) -> tuple[float | None, list | None]:
        if mask.sum() < 2:
            return None, None
        x = np.log(d[mask])
        point = float(_slopes(x, np.log(point_vals[mask])[None, :])[0])
        return point, _interval(_slopes(x, draws[:, mask]), point)

    out["lr_exponent"], out["lr_exponent_ci"] = slope_stat(late_r, rate, lr_draws)
    out["learning_time_late_slope"], out["learning_time_late_slope_ci"] = slope_stat(late_t, time, lt_draws)
    if len(d) >= 2 and np.isfinite(time[0]) and np.isfinite(time[-1]) and time[0] > 0:
        g = float(time[-1] / time[0])
        out["learning_time_growth"] = g
        out["learning_time_growth_ci"] = _interval(np.exp(lt_draws[:, -1] - lt_draws[:, 0]), g)
    else:
        out["learning_time_growth"], out["learning_time_growth_ci"] = None, None
    return out
