"""Fig. 4 per depth: robust learning-rate statistics of decoupled networks (shared by the
``depth_sweep`` and ``lr_sweep`` apps).

For every depth, :func:`dlnjax.robust.rate_statistics` runs one decoupled network per rate
(largest first, stopping the ones that can no longer matter), bisects the stability edge,
and follows a small-rate (gradient-flow) run with the Hessian's top eigenvalue along its path.
With ``compress=true`` (default) the networks run on :mod:`dlnjax.compressed` (exact: the hidden
width drops out); with ``compress=false`` at full width on ``engine`` (xla, native, pallas), for
checking. Every finished run is checkpointed (tagged with the config) so a killed run resumes.

With ``stats.gradient_flow=true`` (off by default: it adds ~40-50 s to the main job; see
docs/fig4.md) and
``compress=true``, each depth also gets ``T_ct`` of the continuous gradient flow on the real
statistics, integrated by diffrax on the compressed network (:func:`flow_t_ct`), checkpointed
with the runs and written as ``t_ct_diffrax``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig

from .. import schemas
from ..common import Progress, run_dir
from .checkpoint import load_tagged, save_tagged
from .plots import depth_ticks
from .problem import Problem, theory_optimal_rate

log = logging.getLogger("dlnjax")

@dataclass
class DepthRecord:
    """Everything measured at one depth (plain numbers and numpy arrays)."""

    depth: int
    widths: list[int]
    threshold: float
    e_star: float
    loss0: float
    runs: list[dict]  # per run: lr, role, status, learning_time, steps, spikes, first_spike, max_rise
    stats: dict  # t_min, fastest_rate, edge, edge_hi, band_lo, band_hi, best_rate, learning_time, t_ct, ...
    record_steps: np.ndarray
    grid_loss: np.ndarray  # (R, T) loss curves of the grid rates (nan where not run / not reached)
    small_loss: np.ndarray  # (T,) the small-rate run's curve
    small_modes: np.ndarray  # (T, k) its mode strengths (original basis)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def grid_status(self, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(learning time, status, spikes) for each grid rate."""
        lt = np.full(len(rates), np.nan)
        st = np.array(["skipped"] * len(rates), dtype=object)
        sp = np.zeros(len(rates), int)
        for r in self.runs:
            if r["role"] != "grid":
                continue
            i = int(np.argmin(np.abs(np.log(rates) - math.log(r["lr"]))))
            lt[i], st[i], sp[i] = r["learning_time"], r["status"], (r["spikes"] or 0)
        return lt, st, sp


# ----------------------------------------------------------------------------------------
# memoised outcomes <-> arrays (the checkpoint of a depth)
# ----------------------------------------------------------------------------------------
def _pack(cache: dict, sharp: dict) -> dict:
    out: dict[str, Any] = {"n": np.asarray(len(cache)), "n_sharp": np.asarray(len(sharp))}
    for i, (k, o) in enumerate(cache.items()):
        out[f"o{i}_key"] = np.asarray(f"{k[0]}|{k[1]}")
        out[f"o{i}_num"] = np.asarray([
            o.lr, o.limit, o.steps, o.cross_step, o.diverge_step,
            -2 if o.spikes is None else o.spikes, -2 if o.first_spike is None else o.first_spike,
            np.nan if o.max_rise is None else o.max_rise,
        ], np.float64)
        out[f"o{i}_rs"], out[f"o{i}_loss"], out[f"o{i}_modes"] = o.record_steps, o.loss, o.modes
    for i, (k, v) in enumerate(sharp.items()):
        out[f"s{i}_key"] = np.asarray(f"{k[0]}|{k[1]}")
        out[f"s{i}_val"] = np.asarray(v)
    return out


def _unpack(z: dict) -> tuple[dict, dict]:
    from dlnjax.robust import MemberOutcome

    cache, sharp = {}, {}
    for i in range(int(z["n"])):
        a, b = str(z[f"o{i}_key"]).split("|")
        num = z[f"o{i}_num"]
        sp = None if num[5] == -2 else int(num[5])
        cache[(a, int(b))] = MemberOutcome(
            float(num[0]), int(num[1]), int(num[2]), int(num[3]), int(num[4]), sp,
            None if num[6] == -2 else int(num[6]), None if np.isnan(num[7]) else float(num[7]),
            z[f"o{i}_rs"], z[f"o{i}_loss"], z[f"o{i}_modes"], state=None,
        )
    for i in range(int(z["n_sharp"])):
        a, b = str(z[f"s{i}_key"]).split("|")
        sharp[(a, int(b))] = float(z[f"s{i}_val"])
    return cache, sharp


# ----------------------------------------------------------------------------------------
# engines
# ----------------------------------------------------------------------------------------
def full_width_bytes(widths: Sequence[int], itemsize: int) -> int:
    return int(sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))) * int(itemsize)


def check_full_width_fits(depths: Sequence[int], n_in: int, n_out: int, hidden: int, itemsize: int) -> None:
    """Refuse up front a full-width run that cannot fit in memory (about 4 copies of the weights
    are alive during a step: weights, gradient factors, the update, the recorded state)."""
    widest = max(depths)
    widths = [n_in] + [hidden] * (widest - 2) + [n_out]
    need = 4 * full_width_bytes(widths, itemsize)
    try:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        avail = None
    if avail is not None and need > 0.8 * avail:
        raise schemas.ConfigError(
            f"invalid config: compress=false at depth {widest} x hidden {hidden} needs about {need / 2**30:.1f} GiB "
            f"(4 copies of {full_width_bytes(widths, itemsize) / 2**30:.2f} GiB of weights) but {avail / 2**30:.1f} GiB "
            "is available (allowed: compress=true, which is exact for these decoupled starts, or fewer/smaller layers)"
        )


@dataclass
class Engine:
    name: str  # what actually ran: 'compressed-xla', 'compressed-native', or the full-width engine
    compress: bool
    cs: Any = None
    rot: Any = None
    runners: dict = field(default_factory=dict)


def make_engine(cfg: DictConfig, problem: Problem, depths: Sequence[int]) -> Engine:
    import jax
    import jax.numpy as jnp

    from dlnjax import compressed, linear

    dtype = problem.task.stats.sigma11.dtype
    if not bool(cfg.compress):
        full = linear.resolve_engine_name(cfg.engine.value)
        check_full_width_fits(depths, problem.task.stats.n_in, problem.task.stats.n_out, int(cfg.hidden), jnp.dtype(dtype).itemsize)
        return Engine(name=f"full-{full}", compress=False)
    rot = compressed.rotate_inputs(problem.stats64.sigma11)
    cs = compressed.compress_stats(problem.stats64, rot, dtype)
    native_ok = False
    if cfg.engine.value in ("auto", "native") and jax.default_backend() == "cpu":
        try:
            from dlnjax.native import compressed as ncomp

            native_ok = ncomp.available()
        except ImportError:
            native_ok = False
    log.info(
        "compressed engine: inputs rotated into Sigma11's eigenbasis, %d kept, %d null directions dropped "
        "(eigenvalue gap %.2g); hidden width %d drops out (rank %d)",
        rot.n_kept, rot.n_dropped, rot.gap, int(cfg.hidden),
        min(problem.task.stats.n_in, int(cfg.hidden), problem.task.stats.n_out),
    )
    return Engine(name="compressed-native" if native_ok else "compressed-xla", compress=True, cs=cs, rot=rot)


def _compressed_runner(engine: Engine, cfg: DictConfig, last_trained: bool, readout: Any) -> Any:
    import jax

    from dlnjax import compressed

    key = ("c", last_trained)
    if key not in engine.runners:
        kw = dict(record_every=int(cfg.record_every), last_trained=last_trained, readout=readout,
                  spike_rtol=float(cfg.stats.spike_rtol))
        if engine.name == "compressed-native":
            from dlnjax.native import compressed as ncomp

            engine.runners[key] = jax.jit(ncomp.make_member_runner(engine.cs, **kw))
        else:
            engine.runners[key] = jax.jit(compressed.make_member_runner(engine.cs, **kw))
    return engine.runners[key]


# ----------------------------------------------------------------------------------------
# one depth
# ----------------------------------------------------------------------------------------
def _threshold(cfg: DictConfig, loss0: float, e_star: float, e_zero: float) -> float:
    """The absolute threshold (:class:`dlnjax.thresholds.Threshold`; reference ``initial``
    unless the config names another)."""
    from dlnjax.thresholds import Threshold

    return Threshold.from_config(cfg.threshold, "initial").resolve(e_star, loss0=loss0, e_zero=e_zero)


def run_depth(cfg: DictConfig, problem: Problem, engine: Engine, depth: int, rates: np.ndarray, l_cap: int,
              progress: Any = None) -> DepthRecord:
    import jax
    import jax.numpy as jnp

    from dlnjax import compressed, init, linear, robust, sweep

    t0 = time.time()
    out = run_dir()
    task = problem.task
    stats = task.stats
    dtype = stats.sigma11.dtype
    widths = sweep.widths_for(stats.n_in, stats.n_out, depth, int(cfg.hidden))
    r = min(widths)
    e_star = float(linear.best_error(problem.stats64, rank=r))
    u_r = np.asarray(task.u, np.float64)[:, :r]
    v_r = np.asarray(task.v, np.float64)[:, :r]
    key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), depth)
    if engine.compress:
        cores = compressed.decoupled_cores(widths, float(cfg.u0), task.u, task.v, engine.rot, l_cap=l_cap, dtype=dtype)
        loss0 = float(compressed._loss_jit(cores, engine.cs))
        readout = (jnp.asarray(u_r, dtype), jnp.asarray(engine.rot.q.T @ v_r, dtype))
        thr = _threshold(cfg, loss0, e_star, 0.5 * float(problem.stats64.tr33))
        member = compressed.member_fn(
            engine.cs, cores, thr, record_every=int(cfg.record_every), max_steps=int(cfg.max_steps), readout=readout,
            last_trained=depth > 2, runner=_compressed_runner(engine, cfg, depth > 2, readout),
        )
        sharp_fn = member.sharpness
    else:
        w0 = init.decoupled(key, widths, float(cfg.u0), task.u, task.v, hidden_basis=cfg.hidden_basis, dtype=dtype)
        loss0 = float(linear.loss_from_stats(w0, stats))
        thr = _threshold(cfg, loss0, e_star, 0.5 * float(problem.stats64.tr33))
        member = robust.full_width_member(
            stats, w0, thr, record_every=int(cfg.record_every), chunk_steps=int(cfg.chunk_steps),
            engine=cfg.engine.value, u=jnp.asarray(u_r, dtype), v=jnp.asarray(v_r, dtype),
        )
        full_sharp = robust.full_width_sharpness(stats, iters=60)
        sharp_fn = lambda o, v0: full_sharp(o, None)  # noqa: E731  (fixed start: resumable bit for bit)

    # checkpoint: every finished run and every sharpness value, tagged with the config
    ckpt = out / "partial" / f"depth{depth}.runs.npz"
    saved = load_tagged(ckpt, cfg)
    cache, sharp_cache = _unpack(saved) if saved is not None else ({}, {})
    if saved is not None:
        log.info("depth %d: %d finished runs loaded from %s", depth, len(cache), ckpt)
    last_save = [time.time()]

    # the diffrax flow's T_ct (kept beside the runs: a resumed sweep does not integrate it again)
    flow_saved = {k: saved[k] for k in FLOW_KEYS if saved is not None and k in saved}

    def save(force: bool = False) -> None:
        if force or time.time() - last_save[0] > 2.0:
            save_tagged(ckpt, cfg, **_pack(cache, sharp_cache), **flow_saved)
            last_save[0] = time.time()

    mem = robust.memoised(member, cache, on_new=lambda c: save())

    def sharpness(o: Any, v0: Any) -> tuple[float, Any]:
        k = (float(o.lr).hex(), int(o.steps))
        if k in sharp_cache:
            return sharp_cache[k], None
        if o.state is None:  # restored from a checkpoint without its state: recompute it exactly
            o = member(o.lr, o.limit, None)
        lam, vec = sharp_fn(o, v0)
        sharp_cache[k] = lam
        return lam, vec

    sc = cfg.stats
    rs = robust.rate_statistics(
        mem, rates, max_steps=int(cfg.max_steps), stop_factor=float(sc.stop_factor), probe_steps=int(sc.probe_steps),
        edge_bisections=int(sc.edge_bisections), edge_patience=float(sc.edge_patience),
        small_rate_factor=float(sc.small_rate_factor), band=float(sc.band), sharpness=sharpness,
        snapshots=int(sc.snapshots), progress=(lambda m: progress(f"depth {depth}: {m}")) if progress else None,
    )
    save(force=True)

    n_rec = int(cfg.max_steps) // int(cfg.record_every) + 1
    steps = np.arange(n_rec) * int(cfg.record_every)

    def curve(o: Any, n: int) -> np.ndarray:
        c = np.full(n, np.nan)
        if o is None:
            return c
        lo = np.asarray(o.loss, np.float64)
        rs_ = np.asarray(o.record_steps)
        for i, s in enumerate(rs_):
            j = int(s) // int(cfg.record_every)
            if j < n and s < max(o.steps, 1) + 1 and i < len(lo):
                c[j] = lo[i]
        return c

    grid_sorted = np.sort(np.asarray(rates, np.float64))
    grid_loss = np.full((len(grid_sorted), n_rec), np.nan)
    for run_ in rs.runs:
        if run_.role == "grid" and run_.outcome is not None:
            i = int(np.argmin(np.abs(np.log(grid_sorted) - math.log(run_.lr))))
            grid_loss[i] = curve(run_.outcome, n_rec)
    small = [x for x in rs.runs if x.role == "small"]
    small_o = small[-1].outcome if small else None
    small_loss = curve(small_o, n_rec)
    small_modes = np.full((n_rec, r), np.nan)
    if small_o is not None and np.size(small_o.modes):
        m = np.asarray(small_o.modes, np.float64)
        k = min(len(m), n_rec)
        small_modes[:k, : m.shape[1]] = m[:k]

    flow = {}
    if engine.compress and bool(cfg.stats.gradient_flow):
        if not flow_saved:
            flow_saved.update(flow_t_ct(problem, engine, widths, float(cfg.u0), thr, l_cap, rs, depth > 2))
            save(force=True)
            log.info("depth %d: T_ct by diffrax on the compressed flow %s (%d solver steps, %.1fs)", depth,
                     _g(_none_if_nan(flow_saved["flow_t_ct"])), int(flow_saved["flow_steps"]), float(flow_saved["flow_seconds"]))
        flow = dict(t_ct_diffrax=_none_if_nan(flow_saved["flow_t_ct"]), diffrax_steps=int(flow_saved["flow_steps"]),
                    diffrax_seconds=float(flow_saved["flow_seconds"]))

    stats_d = dict(
        t_min=rs.t_min, fastest_rate=rs.fastest_rate, edge=rs.edge, edge_hi=rs.edge_hi, band_lo=rs.band_lo,
        band_hi=rs.band_hi, best_rate=rs.best_rate, learning_time=rs.learning_time, t_ct=rs.t_ct, t_ct_rate=rs.t_ct_rate,
        spikes_before_crossing=rs.spikes_before_crossing, member_steps=rs.member_steps, **rs.extra, **flow,
    )
    runs = [dict(lr=x.lr, role=x.role, status=x.status, learning_time=x.learning_time, steps=x.steps, spikes=x.spikes,
                 first_spike=x.first_spike, max_rise=x.max_rise) for x in rs.runs]
    rec = DepthRecord(depth, list(widths), thr, e_star, loss0, runs, stats_d, steps, grid_loss, small_loss, small_modes,
                      seconds=time.time() - t0)
    log.info(
        "depth %d: best rate 1/lambda* %s, learning time %s, T_ct %s; measured edge %s, fastest %s at %s "
        "(%d member-steps, %.1fs)", depth, _g(rs.best_rate), _g(rs.learning_time), _g(rs.t_ct), _g(rs.edge),
        _g(rs.t_min), _g(rs.fastest_rate), rs.member_steps, rec.seconds,
    )
    return rec


# ----------------------------------------------------------------------------------------
# T_ct by diffrax: the continuous gradient flow of the compressed network on the real statistics
# ----------------------------------------------------------------------------------------
FLOW_KEYS = ("flow_t_ct", "flow_steps", "flow_seconds")
# tolerances of the flow (float64 always, whatever the run's precision): the event time is
# located to ~1e-7 relative, far below the 1e-4 .. 1e-3 finite-rate gap it is compared with
FLOW_RTOL, FLOW_ATOL, FLOW_MAX_STEPS = 1e-7, 1e-10, 2_000_000


def _none_if_nan(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def flow_t_ct(problem: Problem, engine: Engine, widths: Sequence[int], u0: float, threshold: float, l_cap: int,
              rs: Any, last_trained: bool = True) -> dict:
    """``T_ct`` of the decoupled start's gradient flow on the compressed network
    (:func:`dlnjax.gradient_flow.compressed_learning_time`), in float64 on the float64
    statistics whatever the run's precision, to the run's own threshold. The horizon is 20x the
    small-rate run's T_ct (or 20x the fastest crossing's rate x steps). Returns the checkpoint
    entries ``flow_t_ct`` (nan: not reached), ``flow_steps`` (solver steps), ``flow_seconds``."""
    import jax
    import jax.numpy as jnp

    from dlnjax import compressed
    from dlnjax import gradient_flow as gf

    t0 = time.time()
    horizon = rs.t_ct if rs.t_ct else (rs.fastest_rate * rs.t_min if rs.t_min else None)
    if not horizon:
        return dict(flow_t_ct=np.asarray(np.nan), flow_steps=np.asarray(0), flow_seconds=np.asarray(0.0))
    with jax.enable_x64(True):
        if "flow_cs64" not in engine.runners:
            engine.runners["flow_cs64"] = compressed.compress_stats(problem.stats64, engine.rot, jnp.float64)
        cs = engine.runners["flow_cs64"]
        task = problem.task
        cores = compressed.decoupled_cores(widths, u0, np.asarray(task.u, np.float64), np.asarray(task.v, np.float64),
                                           engine.rot, l_cap=l_cap, dtype=jnp.float64)
        ft = gf.compressed_learning_time_jit(cores, cs, float(threshold), 20.0 * float(horizon), gf.FlowOptions(
            rtol=FLOW_RTOL, atol=FLOW_ATOL, max_steps=FLOW_MAX_STEPS, last_trained=last_trained))
        t_ct, steps = float(ft.t_ct), int(ft.num_steps)
    return dict(flow_t_ct=np.asarray(t_ct if math.isfinite(t_ct) else np.nan), flow_steps=np.asarray(steps),
                flow_seconds=np.asarray(time.time() - t0))


def _g(x: Any) -> str:
    return "None" if x is None else f"{x:.4g}"


def run_depths(cfg: DictConfig, problem: Problem, depths: Sequence[int], rates: np.ndarray, label: str) -> tuple[list[DepthRecord], Engine]:
    from dlnjax import compressed

    depths = [int(d) for d in depths]
    engine = make_engine(cfg, problem, depths)
    l_cap = compressed.capacity(depths)
    prog = Progress(label, len(depths))
    recs = []
    for i, d in enumerate(depths):
        prog.update(i, f"depth {d}")
        recs.append(run_depth(cfg, problem, engine, d, rates, l_cap, progress=lambda m, i=i: prog.update(i, m)))
    prog.update(len(depths), "done")
    return recs, engine


# ----------------------------------------------------------------------------------------
# theory overlays, summary
# ----------------------------------------------------------------------------------------
def theory_times(cfg: DictConfig, problem: Problem, rec: DepthRecord) -> dict:
    """Eq. 15 (diagonal approximation on non-white inputs; exact on whitened ones): the
    gradient-flow time T_ct and the learning time at the best rate, T_ct / best rate (steps)."""
    from dlnjax import sweep

    t = sweep.theory_t_ct(problem.task, rec.depth, float(cfg.u0), min(rec.widths), float(cfg.threshold.eps))
    best = rec.stats.get("best_rate")
    ok = bool(np.isfinite(t))
    return dict(theory_t_ct=float(t) if ok else None,
                theory_learning_time_at_best_rate=float(t) / best if (ok and best) else None)


def summary_fields(cfg: DictConfig, problem: Problem, depths: Sequence[int], rates: np.ndarray, recs: list[DepthRecord],
                   engine: Engine) -> dict:
    from dlnjax import robust

    class _S:  # the per-depth statistics as robust.headline expects them
        def __init__(self, d: dict):
            self.best_rate, self.edge, self.learning_time, self.t_ct, self.t_min = (
                d.get("best_rate"), d.get("edge"), d.get("learning_time"), d.get("t_ct"), d.get("t_min"))
            self.extra = d

    head = robust.headline(depths, [_S(r.stats) for r in recs], int(cfg.fit_min_depth))
    th = [theory_times(cfg, problem, r) for r in recs]
    opt = [theory_optimal_rate(problem.task, d) for d in depths]
    per = lambda k: [r.stats.get(k) for r in recs]  # noqa: E731
    ds = problem.ds
    rot = engine.rot
    return dict(
        dataset=ds.name,
        n_train=ds.n_train,
        n_in=ds.n_in,
        preprocessing=ds.info.get("preprocessing", "none"),
        checksums=ds.info.get("checksums"),
        depths=list(depths),
        hidden=int(cfg.hidden),
        nominal_widths={str(r.depth): r.widths for r in recs} if len(recs) <= 3 else
        f"(N_in={ds.n_in}, {int(cfg.hidden)} x (depth - 2), N_out={recs[0].widths[-1] if recs else None})",
        u0=float(cfg.u0),
        whitened=problem.whitened,
        compressed=engine.compress,
        engine_used=engine.name,
        input_rotation=None if rot is None else dict(kept=rot.n_kept, dropped=rot.n_dropped, eigenvalue_gap=rot.gap,
                                                     smallest_kept=float(rot.lam[-1]), largest_dropped=rot.lam_dropped_max),
        learning_rates=rates,
        # the headline (robust: see README, "Fig. 4 statistics")
        lr_exponent=head["lr_exponent"],
        learning_time_growth=head["learning_time_growth"],
        t_ct_growth=head["t_ct_growth"],
        lr_exponent_fit_depths=head["lr_exponent_fit_depths"],
        best_learning_rate=per("best_rate"),
        learning_time=per("learning_time"),
        t_ct=per("t_ct"),
        t_ct_rate=per("t_ct_rate"),
        lambda_star=per("lam_star"),
        stability_edge_predicted=per("edge_predicted"),
        small_rate_stable=per("small_rate_stable"),
        # measured at finite rates (edge of stability: these move with rounding on raw pixels)
        stability_edge_measured=per("edge"),
        stability_edge_measured_bracket_hi=per("edge_hi"),
        edge_exponent=head["edge_exponent"],
        fastest_rate=per("fastest_rate"),
        fastest_learning_time=per("t_min"),
        fastest_time_growth=head["fastest_time_growth"],
        band_10pct=[[r.stats.get("band_lo"), r.stats.get("band_hi")] for r in recs],
        band_centre=per("band_centre"),
        band_centre_exponent=head["band_centre_exponent"],
        runs_with_spikes_before_crossing=per("spikes_before_crossing"),
        runs=[{"depth": r.depth, "runs": r.runs} for r in recs],
        member_steps=per("member_steps"),
        # theory
        theory_optimal_learning_rate=opt,
        theory_stability_edge=[2 * o for o in opt],
        theory_learning_time_at_best_rate=[t["theory_learning_time_at_best_rate"] for t in th],
        theory_t_ct=[t["theory_t_ct"] for t in th],
        # T_ct of the continuous gradient flow on the real statistics, by diffrax on the compressed
        # network (stats.gradient_flow; None where not computed: compress=false or switched off)
        t_ct_diffrax=per("t_ct_diffrax"),
        diffrax_steps=per("diffrax_steps"),
        diffrax_seconds=per("diffrax_seconds"),
        threshold=dict(
            kind=cfg.threshold.kind.value,
            eps=float(cfg.threshold.eps) if cfg.threshold.kind.value == "relative" else None,
            value_per_depth=[r.threshold for r in recs],
            best_error_per_depth=[r.e_star for r in recs],
            initial_error_per_depth=[r.loss0 for r in recs],
        ),
        singular_values=problem.task.s,
    )


def result_arrays(depths: Sequence[int], rates: np.ndarray, recs: list[DepthRecord]) -> dict:
    arrays: dict[str, Any] = dict(depths=np.asarray(depths), learning_rates=np.sort(rates))
    lt, st, sp = zip(*[r.grid_status(np.sort(rates)) for r in recs]) if recs else ((), (), ())
    arrays["learning_time"] = np.stack(lt) if lt else np.zeros((0, len(rates)))
    arrays["status"] = np.stack([np.asarray(s, dtype="U10") for s in st]) if st else np.zeros((0, len(rates)), "U10")
    arrays["diverged"] = arrays["status"] == "diverged"
    arrays["spikes"] = np.stack(sp) if sp else np.zeros((0, len(rates)), int)
    for r in recs:
        arrays[f"steps_depth{r.depth}"] = r.record_steps
        arrays[f"loss_depth{r.depth}"] = r.grid_loss
        arrays[f"small_loss_depth{r.depth}"] = r.small_loss
        arrays[f"small_modes_depth{r.depth}"] = r.small_modes
        arrays[f"sharpness_steps_depth{r.depth}"] = np.asarray(r.stats.get("sharpness_steps") or [], np.int64)
        arrays[f"sharpness_depth{r.depth}"] = np.asarray(r.stats.get("sharpness") or [], np.float64)
    return arrays


# ----------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------
def _arr(v: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in v], np.float64)


def _causes_text(summary: dict, flow_lt: np.ndarray, th: np.ndarray, lt: np.ndarray, spk: np.ndarray) -> str:
    """The three gaps of the left panel as ranges over depth (empty without the diffrax flow)."""
    ok = np.isfinite(flow_lt)
    if not ok.any():
        return ""

    def rng(x: np.ndarray, fmt: str) -> str:
        x = x[np.isfinite(x)]
        return "n/a" if x.size == 0 else (fmt % x.min()) + " .. " + (fmt % x.max())

    fast = _arr(summary["fastest_learning_time"])
    return "\n".join([
        "non-white inputs  flow / Eq.15       " + rng(flow_lt / th, "%.2f"),
        "finite rate       run / flow - 1     " + rng(lt / flow_lt - 1.0, "%+.1e"),
        "edge of stability fastest / flow     " + rng(fast / flow_lt, "%.2f")
        + f"  ({int((spk > 0).sum())}/{len(spk)} depths spike)",
    ])


def fig4(out: Path, summary: dict, whitened: bool, fit_min_depth: int) -> None:
    """Fig. 4: learning time and rates against depth, robust statistics in black, the measured
    finite-rate ones (which the edge of stability moves) in grey/red, theory overlaid."""
    import matplotlib.pyplot as plt

    from ..common import save_figure

    d = np.asarray(summary["depths"], float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    lt = _arr(summary["learning_time"])
    a1.plot(d, lt, "o-", color="k", label="learning time at the best rate, T_ct·λ* (robust)")
    a1.plot(d, _arr(summary["fastest_learning_time"]), "v", color="0.55", label="fastest measured crossing (edge of stability)")
    th = _arr(summary["theory_learning_time_at_best_rate"])
    lab = "Eq. 15 at the best rate" + ("" if whitened else " (diagonal approx., Σ11 ≠ I)")
    if np.isfinite(th).any():
        a1.plot(d, th, "s--", color="tab:red", mfc="none", label=lab)
    # the continuous gradient flow on the real (non-white) statistics, by diffrax, at the same
    # best rate: T_ct(diffrax) * lambda*. Eq. 15 vs this: the diagonal approximation (non-white
    # inputs); this vs the black line: the small-rate run's finite rate; black vs grey: finite
    # rates near the edge of stability
    lam = _arr(summary.get("lambda_star") or [None] * len(d))
    tfl = _arr(summary.get("t_ct_diffrax") or [None] * len(d))
    flow_lt = tfl * lam
    if np.isfinite(flow_lt).any():
        a1.plot(d, flow_lt, "D", color="tab:blue", mfc="none", ms=9, mew=1.2,
                label="gradient flow on the real Σ11 (diffrax), T_ct(flow)·λ*")
    spk = np.asarray([x or 0 for x in summary["runs_with_spikes_before_crossing"]])
    if (spk > 0).any():
        ft = _arr(summary["fastest_learning_time"])
        a1.plot(d[spk > 0], ft[spk > 0], "x", color="tab:orange", ms=5, label="depth with spiking runs (EoS)")
    box = _causes_text(summary, flow_lt, th, lt, spk)
    if box:
        a1.text(0.02, 0.97, box, transform=a1.transAxes, ha="left", va="top", multialignment="left", fontsize=6.5,
                family="monospace",
                bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    a1.set_xscale("log")
    if np.isfinite(lt).any():
        a1.set_yscale("log")
    depth_ticks(a1, summary["depths"])
    a1.set_xlabel("depth N_l (layers)")
    a1.set_ylabel("learning time (steps)")
    a1.set_title(f"Learning time vs depth ({summary['dataset']}, growth ×{summary['learning_time_growth']:.2f})"
                 if summary.get("learning_time_growth") else f"Learning time vs depth ({summary['dataset']})")
    a1.legend(fontsize=7)

    best = _arr(summary["best_learning_rate"])
    a2.plot(d, best, "o-", color="k", label="best rate 1/λ* (λ*: max Hessian eig. along the path)")
    a2.plot(d, _arr(summary["stability_edge_predicted"]), "--", color="k", lw=1, label="predicted edge 2/λ*")
    em = _arr(summary["stability_edge_measured"])
    a2.plot(d, em, "^-", color="tab:red", ms=4, lw=0.8, label="measured edge (bisection)")
    a2.plot(d, _arr(summary["fastest_rate"]), "v", color="0.55", label="fastest measured rate")
    band = np.asarray([[np.nan if x is None else x for x in b] for b in summary["band_10pct"]], float)
    if band.size:
        a2.fill_between(d, band[:, 0], band[:, 1], color="0.85", label="rates within 10% of the fastest")
    a2.plot(d, summary["theory_optimal_learning_rate"], ":", color="tab:red", label="supplement 1/λ₁(a_opt), diag. approx.")
    rates = np.asarray(summary["learning_rates"], float)
    a2.axhline(rates.min(), color="0.8", lw=0.6)
    a2.axhline(rates.max(), color="0.8", lw=0.6)
    a2.set_xscale("log")
    a2.set_yscale("log")
    depth_ticks(a2, summary["depths"])
    a2.set_xlabel("depth N_l (layers)")
    a2.set_ylabel("learning rate")
    ttl = "Rates vs depth"
    if summary.get("lr_exponent") is not None:
        ttl += f" (best-rate slope {summary['lr_exponent']:.2f} for N_l ≥ {fit_min_depth})"
    a2.set_title(ttl)
    a2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "depth_sweep")


def grid_figure(out: Path, arrays: dict, stem: str = "depth_sweep_grid") -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from ..common import save_figure

    depths, rates = arrays["depths"], arrays["learning_rates"]
    lt, st, sp = arrays["learning_time"], arrays["status"], arrays["spikes"]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(depths) + 2.2))
    finite = lt[np.isfinite(lt)]
    norm = LogNorm(vmin=max(finite.min(), 1), vmax=max(finite.max(), 2)) if finite.size else None
    im = ax.imshow(np.where(np.isfinite(lt), lt, np.nan), aspect="auto", origin="lower", cmap="viridis_r", norm=norm)
    marks = dict(diverged=("×", "tab:red"), stopped=("▽", "0.35"), skipped=("·", "0.6"), unsettled=("~", "tab:purple"))
    for i in range(len(depths)):
        for j in range(len(rates)):
            s = str(st[i, j])
            if s in marks:
                ax.text(j, i, marks[s][0], ha="center", va="center", color=marks[s][1], fontsize=9)
            elif sp[i, j] > 0:
                ax.plot(j + 0.32, i + 0.25, ".", color="tab:orange", ms=4)
    ax.set_yticks(range(len(depths)), [str(x) for x in depths])
    step = max(1, len(rates) // 8)
    ax.set_xticks(range(0, len(rates), step), [f"{r:.1e}" for r in rates[::step]], rotation=45)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("depth N_l")
    ax.set_title("Learning time; × diverged, ▽ stopped (3× the fastest), · skipped (slower still),\n"
                 "~ unsettled, orange dot: loss spikes before the crossing", fontsize=9)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="learning time (steps)")
    fig.tight_layout()
    save_figure(fig, out / stem)


def sharpening_figure(out: Path, arrays: dict, summary: dict, stem: str = "depth_sweep_sharpening") -> None:
    """Progressive sharpening: the Hessian's top eigenvalue along each depth's gradient-flow path."""
    import matplotlib.pyplot as plt

    from ..common import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    depths = [int(x) for x in arrays["depths"]]
    cmap = plt.get_cmap("viridis")
    for i, dd in enumerate(depths):
        s = arrays.get(f"sharpness_steps_depth{dd}")
        v = arrays.get(f"sharpness_depth{dd}")
        if s is None or len(s) == 0:
            continue
        frac = np.asarray(s, float) / max(float(np.max(s)), 1.0)
        ax.plot(frac, v, "-", color=cmap(i / max(len(depths) - 1, 1)), lw=1.2, label=f"N_l = {dd}")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the way to the crossing (small-rate run)")
    ax.set_ylabel("top Hessian eigenvalue λ_max")
    ax.set_title("Progressive sharpening along the gradient-flow path")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, out / stem)
