"""The depth loop of Fig. 4: robust learning-rate statistics of decoupled networks, depth by
depth (shared by the ``depth_sweep`` and ``lr_sweep`` apps; their figures are in
:mod:`.plots.fig4`).

For every depth, :func:`dlnjax.measure.robust.rate_statistics` runs one decoupled network per rate
(largest first, stopping the ones that can no longer matter), bisects the stability edge,
and follows a small-rate (gradient-flow) run with the Hessian's top eigenvalue along its path.
With ``compress=true`` (default) the networks run on :mod:`dlnjax.networks.compressed` (exact: the hidden
width drops out); with ``compress=false`` at full width on ``engine`` (xla, native, pallas), for
checking. Every finished run is checkpointed (tagged with the config) so a killed run resumes.

With ``stats.gradient_flow=true`` (off by default: it adds ~40-50 s to the main job; see
docs/fig4.md) and
``compress=true``, each depth also gets ``T_ct`` of the continuous gradient flow on the real
statistics, integrated by diffrax on the compressed network (:func:`flow_t_ct`), checkpointed
with the runs and written as ``t_ct_diffrax``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig

from dlnjax.registry import enum_value

from .. import schemas
from ..common import Progress, run_dir
from .checkpoint import load_tagged, save_tagged
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
    main_rates: np.ndarray  # (R,) the depth's grid and extension rates, ascending
    grid_loss: np.ndarray  # (R, T) their loss curves (nan where not run / not reached)
    small_loss: np.ndarray  # (T,) the small-rate run's curve
    small_modes: np.ndarray  # (T, k) its mode strengths (original basis)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def grid_status(self, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(learning time, status, spikes) for each of ``rates`` (a union of the depths' grid and
        extension rates); a rate this depth did not run is ``not run``."""
        from dlnjax.measure.robust import MAIN_ROLES

        lt = np.full(len(rates), np.nan)
        st = np.array(["not run"] * len(rates), dtype=object)
        sp = np.zeros(len(rates), int)
        for r in self.runs:
            if r["role"] not in MAIN_ROLES:
                continue
            i = nearest_rate(rates, r["lr"])
            lt[i], st[i], sp[i] = r["learning_time"], r["status"], (r["spikes"] or 0)
        return lt, st, sp


def nearest_rate(rates: np.ndarray, lr: float) -> int:
    return int(np.argmin(np.abs(np.log(np.asarray(rates, np.float64)) - math.log(lr))))


def union_rates(recs: Sequence[DepthRecord]) -> np.ndarray:
    """The grid and extension rates of all depths, ascending, equal rates (to 1e-9) merged."""
    allr = np.sort(np.concatenate([r.main_rates for r in recs])) if recs else np.zeros(0)
    out: list[float] = []
    for x in allr:
        if not out or abs(math.log(x / out[-1])) > 1e-9:
            out.append(float(x))
    return np.asarray(out, np.float64)


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
    from dlnjax.networks.outcome import MemberOutcome

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
    from dlnjax.measure.sweep import widths_for

    widest = max(depths)
    widths = widths_for(n_in, n_out, widest, hidden)
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
class DepthEngine:
    """What one depth sweep runs on (compressed or full width, and which kernels), with its
    rotated statistics and jitted runners, made once per sweep (:func:`make_engine`); not a
    :class:`dlnjax.networks.engines.base.Engine` (that is a step's implementation). The depth loop
    asks it for each depth's member (:meth:`member`) and never branches on which it is."""

    name: str  # what actually ran: 'compressed-xla', 'compressed-native', or the full-width engine
    compress: bool
    kernels: str = "xla"  # the compressed network's kernels (Compressed.kernels_for)
    cs: Any = None
    rot: Any = None
    runners: dict = field(default_factory=dict)
    lock: Any = field(default_factory=threading.Lock)  # the runners are shared by the depths' threads

    def member(self, cfg: DictConfig, problem: Problem, depth: int, widths: Sequence[int], l_cap: int,
               threshold_of: Any, u0: float | None = None) -> tuple[Any, float, float]:
        """``(member, threshold, loss0)`` for the decoupled start at ``depth`` (strength ``u0``,
        default ``cfg.u0``): the engine's :class:`~dlnjax.networks.outcome.Member`, with the
        threshold ``threshold_of(loss0)``."""
        raise NotImplementedError

    def flow_path(self, cfg: DictConfig, problem: Problem, depth: int, widths: Sequence[int], l_cap: int,
                  threshold: float, check_cache: Any = None) -> Any:
        """The member's gradient flow integrated apart (:class:`~dlnjax.networks.outcome.FlowPath`),
        or None where the engine has none (the flow path is then the small-rate run)."""
        return None


@dataclass
class CompressedDepths(DepthEngine):
    """The exact compressed network (the hidden width drops out), one runner per shape for every depth."""

    def member(self, cfg: DictConfig, problem: Problem, depth: int, widths: Sequence[int], l_cap: int,
               threshold_of: Any, u0: float | None = None) -> tuple[Any, float, float]:
        from dlnjax.networks import compressed

        task, dtype = problem.task, problem.task.stats.sigma11.dtype
        u0 = float(cfg.u0) if u0 is None else float(u0)
        cores = compressed.decoupled_cores(widths, u0, task.u, task.v, self.rot, l_cap=l_cap, dtype=dtype)
        loss0 = float(compressed._loss_jit(cores, self.cs))
        thr = threshold_of(loss0)
        return self._member_from(cfg, problem, cores, thr, depth), thr, loss0

    def _member_from(self, cfg: DictConfig, problem: Problem, cores: Any, thr: float, depth: int) -> Any:
        """The run's member (its precision, kernels and shared runner) from ``cores``."""
        import jax.numpy as jnp

        from dlnjax.networks.engines.compressed import COMPRESSED

        task, dtype, r = problem.task, problem.task.stats.sigma11.dtype, cores.rank
        readout = (jnp.asarray(np.asarray(task.u, np.float64)[:, :r], dtype),
                   jnp.asarray(self.rot.q.T @ np.asarray(task.v, np.float64)[:, :r], dtype))
        return COMPRESSED.member(self.cs, cores, thr, record_every=int(cfg.record_every), max_steps=int(cfg.max_steps),
                                 readout=readout, last_trained=depth > 2,
                                 runner=_compressed_runner(self, cfg, depth > 2, readout))

    def flow_path(self, cfg: DictConfig, problem: Problem, depth: int, widths: Sequence[int], l_cap: int,
                  threshold: float, check_cache: Any = None) -> Any:
        """The decoupled start's gradient flow on its end-to-end map (:mod:`dlnjax.theory.end_to_end_flow`),
        in float64 on the float64 statistics whatever the run's precision, as a
        :class:`~dlnjax.networks.outcome.FlowPath`: T_ct and the states by ``stats.end_to_end_solver`` (one compilation
        for every depth), the top Hessian eigenvalue on the balanced cores rebuilt from a state,
        and the check's member (gradient descent at the run's precision and kernels from a state,
        memoised by ``check_cache(member)``). None where the start is not balanced (a start that
        the end-to-end equation does not cover): the flow path is then the small-rate run."""
        import jax
        import jax.numpy as jnp

        from dlnjax.networks import compressed
        from dlnjax.networks.outcome import FlowPath
        from dlnjax.theory import end_to_end_flow as e2e

        last = depth > 2
        cs64 = _cs64(self, problem)
        task, dtype = problem.task, problem.task.stats.sigma11.dtype
        with jax.enable_x64(True):
            cores64 = compressed.decoupled_cores(widths, float(cfg.u0), np.asarray(task.u, np.float64),
                                                 np.asarray(task.v, np.float64), self.rot, l_cap=l_cap, dtype=jnp.float64)
            bal = e2e.balance_residual(cores64) if last else 0.0
            if bal > BALANCE_TOL:
                log.info("depth %d: the start is not balanced (%.2g); the flow path is the small-rate run", depth, bal)
                return None
            w0 = compressed.end_to_end_rotated(cores64)
            n_layers = e2e.n_layers_of(cores64, last)

        solver = str(enum_value(cfg.stats.end_to_end_solver))
        rtol, atol = E2E_TOLERANCES[solver]

        def solve(save_times: np.ndarray, t_max: float) -> tuple:
            with jax.enable_x64(True):
                p = e2e.solve_path_jit(w0, cs64, n_layers, float(threshold), float(t_max),
                                       jnp.asarray(save_times, jnp.float64), rank=cores64.rank, rtol=rtol, atol=atol,
                                       solver=solver)
                ts, ws = p.snapshots()
                t_ct = float(p.t_ct)
            return (t_ct if math.isfinite(t_ct) else None), [float(t) for t in ts], list(ws), int(p.num_steps)

        def sharpness(state: Any) -> float:
            with jax.enable_x64(True):
                return float(_rebuilt_sharpness_jit()(jnp.asarray(state), cores64, cs64, last_trained=last))

        def member_at(state: Any) -> Any:
            def run(lr: float, limit: int, resume: Any = None) -> Any:
                if state is None:
                    raise RuntimeError(f"depth {depth}: the flow check's run is not in the checkpoint; delete "
                                       f"{run_dir() / 'partial'} / depth{depth}.runs.npz and run again")
                with jax.enable_x64(True):
                    c64 = e2e.balanced_cores(jnp.asarray(state, jnp.float64), cores64, last)
                    c = [np.asarray(a, np.float64) for a in (c64.first, c64.hidden, c64.last, c64.first_null)]
                cores = compressed.Cores(*(jnp.asarray(a, dtype) for a in c), jnp.asarray(c64.n_hidden, jnp.int32))
                return self._member_from(cfg, problem, cores, threshold, depth)(lr, limit, resume)

            return check_cache(run) if check_cache is not None else run

        return FlowPath(solve, sharpness, member_at)


@dataclass
class FullWidthDepths(DepthEngine):
    """The full-width network on the config's ``engine`` (xla, native, pallas), for checking."""

    def member(self, cfg: DictConfig, problem: Problem, depth: int, widths: Sequence[int], l_cap: int,
               threshold_of: Any, u0: float | None = None) -> tuple[Any, float, float]:
        import jax
        import jax.numpy as jnp

        from dlnjax.init import functions as init_fns
        from dlnjax.networks import engines, linear

        task, dtype, r = problem.task, problem.task.stats.sigma11.dtype, min(widths)
        key = jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), depth)  # the hidden bases of the full-width start
        u0 = float(cfg.u0) if u0 is None else float(u0)
        w0 = init_fns.decoupled(key, widths, u0, task.u, task.v, hidden_basis=cfg.hidden_basis, dtype=dtype)
        loss0 = float(linear.loss_from_stats(w0, task.stats))
        thr = threshold_of(loss0)
        member = engines.get(cfg.engine.value).member(
            task.stats, w0, thr, record_every=int(cfg.record_every), chunk_steps=int(cfg.chunk_steps),
            u=jnp.asarray(np.asarray(task.u, np.float64)[:, :r], dtype), v=jnp.asarray(np.asarray(task.v, np.float64)[:, :r], dtype),
        )
        return member, thr, loss0


def make_engine(cfg: DictConfig, problem: Problem, depths: Sequence[int]) -> DepthEngine:
    """The engine the depths run on: compressed (exact for decoupled starts; native kernels when
    ``engine`` allows, :meth:`dlnjax.networks.engines.compressed.Compressed.kernels_for`) or, with
    ``compress=false``, the full-width ``engine``."""
    import jax.numpy as jnp

    from dlnjax.networks import compressed, engines
    from dlnjax.networks.engines.compressed import COMPRESSED

    dtype = problem.task.stats.sigma11.dtype
    if not bool(cfg.compress):
        full = engines.resolve(cfg.engine.value)
        check_full_width_fits(depths, problem.task.stats.n_in, problem.task.stats.n_out, int(cfg.hidden), jnp.dtype(dtype).itemsize)
        return FullWidthDepths(name=f"full-{full}", compress=False)
    rot = problem.rotation
    cs = compressed.compress_stats(problem.stats64, rot, dtype)
    kernels = COMPRESSED.kernels_for(cfg.engine.value)
    log.info(
        "compressed engine: inputs rotated into Sigma11's eigenbasis, %d kept, %d null directions dropped "
        "(eigenvalue gap %.2g); hidden width %d drops out (rank %d)",
        rot.n_kept, rot.n_dropped, rot.gap, int(cfg.hidden),
        min(problem.task.stats.n_in, int(cfg.hidden), problem.task.stats.n_out),
    )
    return CompressedDepths(name=f"compressed-{kernels}", compress=True, kernels=kernels, cs=cs, rot=rot)


def flow_method(cfg: DictConfig, depth: int) -> str:
    """How a depth's flow path is followed (``stats.flow_method``): ``end_to_end`` (the balanced
    flow on the end-to-end map, :meth:`CompressedDepths.flow_path`, with one short small-rate run
    as its check) or ``descent`` (the small-rate run all the way); ``auto`` is ``end_to_end`` on
    the compressed engine from depth ``stats.end_to_end_from_depth`` on (where the float32
    small-rate run drifts from the flow by more than 1e-3; both agree to ~5e-4 below it) and
    ``descent`` elsewhere."""
    m = str(enum_value(cfg.stats.flow_method))
    if m == "auto":
        deep = int(depth) >= int(cfg.stats.end_to_end_from_depth)
        return "end_to_end" if (bool(cfg.compress) and deep) else "descent"
    return m


def _compressed_runner(engine: DepthEngine, cfg: DictConfig, last_trained: bool, readout: Any) -> Any:
    import jax

    from dlnjax.networks.engines.compressed import COMPRESSED

    key = ("c", last_trained)
    with engine.lock:
        if key not in engine.runners:
            kw = dict(record_every=int(cfg.record_every), last_trained=last_trained, readout=readout,
                      spike_rtol=float(cfg.stats.spike_rtol))
            engine.runners[key] = jax.jit(COMPRESSED.make_runner(engine.cs, kernels=engine.kernels, **kw))
        return engine.runners[key]


# the end-to-end flow's tolerances per solver (stats.end_to_end_solver). tsit5: its steps are bounded
# by stability (about lambda* T_ct / 3.3), so the tolerance costs little; at 1e-8 T_ct agrees with
# 1e-10 to ~1e-12 on the digits, depths 3-1000. rosenbrock_w: steps sized by accuracy; at 1e-5 its
# T_ct is within 8e-6 of tsit5's at depth 1000 (1.8e-6 at 300, 3.5e-7 at 100; 1.4e-6 at depth
# 1000 with rtol 1e-6, for twice the steps) on the digits (docs/fig4.md)
E2E_TOLERANCES = {"tsit5": (1e-8, 1e-12), "rosenbrock_w": (1e-5, 1e-12)}
# a start whose layers' Gram matrices differ by more than this (relative) is not balanced. The
# decoupled start is balanced up to the rounding of its bases (the run's precision: ~1e-8 relative
# in float32, from the first core's part on Sigma11's null directions), far below what moves T_ct
BALANCE_TOL = 1e-6


def _cs64(engine: DepthEngine, problem: Problem) -> Any:
    """The rotated statistics in float64 (the gradient flow's, whatever the run's precision), once per sweep."""
    import jax
    import jax.numpy as jnp

    from dlnjax.networks import compressed

    with jax.enable_x64(True), engine.lock:
        if "flow_cs64" not in engine.runners:
            engine.runners["flow_cs64"] = compressed.compress_stats(problem.stats64, engine.rot, jnp.float64)
        return engine.runners["flow_cs64"]


def _rebuilt_sharpness_impl(w: Any, template: Any, cs: Any, last_trained: bool) -> Any:
    """The top Hessian eigenvalue of the balanced cores with end-to-end map ``w`` (the members'
    power iteration: 60 steps from the fixed direction)."""
    from dlnjax.networks import compressed
    from dlnjax.theory import end_to_end_flow as e2e

    cores = e2e.balanced_cores(w, template, last_trained)
    lam, _ = compressed.sharpness(cores, cs, compressed._random_direction(cores), iters=60, last_trained=last_trained)
    return lam


@functools.cache
def _rebuilt_sharpness_jit() -> Any:
    """:func:`_rebuilt_sharpness_impl` jitted once per process (jax imported on first use)."""
    import jax

    return jax.jit(_rebuilt_sharpness_impl, static_argnames=("last_trained",))


# ----------------------------------------------------------------------------------------
# one depth
# ----------------------------------------------------------------------------------------
def _threshold(cfg: DictConfig, loss0: float, e_star: float, e_zero: float) -> float:
    """The absolute threshold (:class:`dlnjax.measure.thresholds.Threshold`; reference ``initial``
    unless the config names another)."""
    from dlnjax.measure.thresholds import Threshold

    return Threshold.from_config(cfg.threshold).resolve(e_star, loss0=loss0, e_zero=e_zero)


class _DepthCheckpoint:
    """Every finished run and every sharpness value of one depth, tagged with the config, in
    ``partial/depth<N>.runs.npz`` (with the diffrax flow's T_ct and the integrated flow path's
    result, so a resumed sweep does not integrate either again); saved at most every 2 s unless
    forced."""

    def __init__(self, cfg: DictConfig, depth: int):
        self.cfg, self.file = cfg, run_dir() / "partial" / f"depth{depth}.runs.npz"
        saved = load_tagged(self.file, cfg)
        self.cache, self.sharp = _unpack(saved) if saved is not None else ({}, {})
        if saved is not None:
            log.info("depth %d: %d finished runs loaded from %s", depth, len(self.cache), self.file)
        self.flow = {k: saved[k] for k in FLOW_KEYS if saved is not None and k in saved}
        # the integrated flow path's result (robust.rate_statistics' flow_cache), kept as one JSON string
        self.path: dict = {}
        if saved is not None and "path_json" in saved:
            self.path["result"] = json.loads(str(saved["path_json"]))
        self.last = time.time()
        self.lock = threading.Lock()  # the depth's runs finish in several threads (rate_statistics' workers)

    def save(self, force: bool = False) -> None:
        with self.lock:
            if force or time.time() - self.last > 2.0:
                # copies: another thread may add an outcome meanwhile (a dict copy is atomic)
                extra = {"path_json": np.asarray(json.dumps(self.path["result"]))} if "result" in self.path else {}
                save_tagged(self.file, self.cfg, **_pack(dict(self.cache), dict(self.sharp)), **self.flow, **extra)
                self.last = time.time()

    def sharpness(self, member: Any) -> Any:
        """``member.sharpness`` remembered by (rate, steps): a resumed sweep recomputes nothing."""

        def sharpness(o: Any, v0: Any) -> tuple[float, Any]:
            k = (float(o.lr).hex(), int(o.steps))
            if k in self.sharp:
                return self.sharp[k], None
            if o.state is None:  # restored from a checkpoint without its state: recompute it exactly
                o = member(o.lr, o.limit, None)
            lam, vec = member.sharpness(o, v0)
            self.sharp[k] = lam
            return lam, vec

        return sharpness


def run_depth(cfg: DictConfig, problem: Problem, engine: DepthEngine, depth: int, rates: np.ndarray, l_cap: int,
              progress: Any = None) -> DepthRecord:
    """Fig. 4's statistics at one depth (:func:`dlnjax.measure.robust.rate_statistics` on the
    engine's member), checkpointed run by run."""
    from dlnjax.measure import robust, sweep

    t0 = time.time()
    stats = problem.task.stats
    widths = sweep.widths_for(stats.n_in, stats.n_out, depth, int(cfg.hidden))
    r = min(widths)
    e_star = problem.best_error(r)
    threshold_of = lambda loss0: _threshold(cfg, loss0, e_star, 0.5 * float(problem.stats64.tr33))  # noqa: E731
    member, thr, loss0 = engine.member(cfg, problem, depth, widths, l_cap, threshold_of)
    ck = _DepthCheckpoint(cfg, depth)
    sc = cfg.stats
    flow_path = None
    if bool(sc.flow_run) and flow_method(cfg, depth) == "end_to_end":
        flow_path = engine.flow_path(cfg, problem, depth, widths, l_cap, thr, check_cache=lambda m: robust.memoised(
            m, ck.cache, on_new=lambda c: ck.save(), tag="#flowcheck"))
    # the ensemble's perturbed starts (robust._ensemble_band), checkpointed with the runs
    ensemble = [robust.memoised(engine.member(cfg, problem, depth, widths, l_cap, threshold_of,
                                              u0=float(cfg.u0) * (1.0 + float(sc.ensemble_perturbation) * k))[0],
                                ck.cache, on_new=lambda c: ck.save(), tag=f"#u{k}")
                for k in range(1, int(sc.ensemble))]
    rs = robust.rate_statistics(
        robust.memoised(member, ck.cache, on_new=lambda c: ck.save()), rates, max_steps=int(cfg.max_steps),
        stop_factor=float(sc.stop_factor), probe_steps=int(sc.probe_steps),
        edge_bisections=int(sc.edge_bisections), edge_patience=float(sc.edge_patience),
        small_rate_factor=float(sc.small_rate_factor), band=float(sc.band), extend_max=int(sc.extend_max),
        sharpness=ck.sharpness(member), snapshots=int(sc.snapshots), flow_run=bool(sc.flow_run), flow_path=flow_path,
        flow_cache=ck.path, ensemble=ensemble,
        workers=workers_for(cfg, 1 << 30), progress=(lambda m: progress(f"depth {depth}: {m}")) if progress else None,
    )
    ck.save(force=True)
    steps, main_rates, grid_loss, small_loss, small_modes = _depth_curves(cfg, rs, r)
    flow = _diffrax_fields(cfg, problem, engine, ck, depth, widths, thr, l_cap, rs)
    stats_d = dict(
        t_min=rs.t_min, fastest_rate=rs.fastest_rate, edge=rs.edge, edge_hi=rs.edge_hi, band_lo=rs.band_lo,
        band_hi=rs.band_hi, band_centre=rs.band_centre, t_ct=rs.t_ct, t_ct_rate=rs.t_ct_rate, lam_star=rs.lam_star,
        inv_lambda_star=rs.inv_lambda_star, steps_at_inv_lambda_star=rs.steps_at_inv_lambda_star,
        bracketed=rs.bracketed, extended_up=rs.extended_up, extended_down=rs.extended_down,
        spikes_before_crossing=rs.spikes_before_crossing, member_steps=rs.member_steps, **rs.extra, **flow,
    )
    runs = [dict(lr=x.lr, role=x.role, status=x.status, learning_time=x.learning_time, steps=x.steps, spikes=x.spikes,
                 first_spike=x.first_spike, max_rise=x.max_rise) for x in rs.runs]
    rec = DepthRecord(depth, list(widths), thr, e_star, loss0, runs, stats_d, steps, main_rates, grid_loss, small_loss,
                      small_modes, seconds=time.time() - t0)
    _log_depth(cfg, depth, rs, rec.seconds)
    return rec


def _depth_curves(cfg: DictConfig, rs: Any, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(record steps, main rates, their loss curves, the small-rate run's curve, its modes)`` of
    one depth's runs, on the records of ``max_steps`` (nan where not run or not reached)."""
    from dlnjax.measure import robust

    every = int(cfg.record_every)
    n_rec = int(cfg.max_steps) // every + 1
    steps = np.arange(n_rec) * every

    def curve(o: Any, n: int) -> np.ndarray:
        """The run's records on the grid of ``steps`` (vectorised: a run has up to 10^4 records;
        a record step met twice keeps its last value)."""
        c = np.full(n, np.nan)
        if o is None:
            return c
        lo = np.asarray(o.loss, np.float64)
        rs_ = np.asarray(o.record_steps, np.int64)[: len(lo)]
        lo = lo[: len(rs_)]
        j = rs_ // every
        ok = np.nonzero((j < n) & (rs_ < max(o.steps, 1) + 1))[0]
        _, first_from_end = np.unique(j[ok][::-1], return_index=True)
        last = ok[len(ok) - 1 - first_from_end]
        c[j[last]] = lo[last]
        return c

    main = sorted((x for x in rs.runs if x.role in robust.MAIN_ROLES), key=lambda x: x.lr)
    main_rates = np.asarray([x.lr for x in main], np.float64)
    grid_loss = np.full((len(main), n_rec), np.nan)
    for i, run_ in enumerate(main):
        if run_.outcome is not None:
            grid_loss[i] = curve(run_.outcome, n_rec)
    small = [x for x in rs.runs if x.role == "small"]
    small_o = small[-1].outcome if small else None
    small_loss = curve(small_o, n_rec)
    small_modes = np.full((n_rec, r), np.nan)
    if small_o is not None and np.size(small_o.modes):
        m = np.asarray(small_o.modes, np.float64)
        k = min(len(m), n_rec)
        small_modes[:k, : m.shape[1]] = m[:k]
    return steps, main_rates, grid_loss, small_loss, small_modes


def _diffrax_fields(cfg: DictConfig, problem: Problem, engine: DepthEngine, ck: _DepthCheckpoint, depth: int,
                    widths: Sequence[int], thr: float, l_cap: int, rs: Any) -> dict:
    """``t_ct_diffrax`` and its cost when ``stats.gradient_flow`` asks for it (compressed runs
    only), integrated once and kept in the depth's checkpoint."""
    if not (engine.compress and bool(cfg.stats.gradient_flow)):
        return {}
    if not ck.flow:
        ck.flow.update(flow_t_ct(problem, engine, widths, float(cfg.u0), thr, l_cap, rs, depth > 2))
        ck.save(force=True)
        log.info("depth %d: T_ct by diffrax on the compressed flow %s (%d solver steps, %.1fs)", depth,
                 _g(_none_if_nan(ck.flow["flow_t_ct"])), int(ck.flow["flow_steps"]), float(ck.flow["flow_seconds"]))
    return dict(t_ct_diffrax=_none_if_nan(ck.flow["flow_t_ct"]), diffrax_steps=int(ck.flow["flow_steps"]),
                diffrax_seconds=float(ck.flow["flow_seconds"]))


def _log_depth(cfg: DictConfig, depth: int, rs: Any, seconds: float) -> None:
    """The depth's log lines: a warning when nothing crossed or the optimum is not bracketed."""
    if rs.t_min is None:
        log.warning("depth %d: no rate crossed the threshold within max_steps=%d (every rate diverged or was still "
                    "above it): raise max_steps, or move the grid (learning_rates); flagged as not bracketed",
                    depth, int(cfg.max_steps))
    elif not rs.bracketed:
        log.warning("depth %d: the optimum is not bracketed after %d extra rates above and %d below the grid "
                    "(stats.extend_max=%d): flagged in the summary and the figure", depth, rs.extended_up,
                    rs.extended_down, int(cfg.stats.extend_max))
    log.info(
        "depth %d: best rate %s (10%% band %s-%s), learning time %s steps (fastest crossing, at %s); measured edge %s; "
        "predictions 1/lambda* %s, T_ct %s (%d member-steps, %d rates added, %.1fs)", depth, _g(rs.best_rate),
        _g(rs.band_lo), _g(rs.band_hi), _g(rs.learning_time), _g(rs.fastest_rate), _g(rs.edge), _g(rs.inv_lambda_star),
        _g(rs.t_ct), rs.member_steps, rs.extended_up + rs.extended_down, seconds,
    )


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


def flow_t_ct(problem: Problem, engine: DepthEngine, widths: Sequence[int], u0: float, threshold: float, l_cap: int,
              rs: Any, last_trained: bool = True) -> dict:
    """``T_ct`` of the decoupled start's gradient flow on the compressed network
    (:func:`dlnjax.theory.gradient_flow.compressed_learning_time`), in float64 on the float64
    statistics whatever the run's precision, to the run's own threshold. The horizon is 20x the
    small-rate run's T_ct (or 20x the fastest crossing's rate x steps). Returns the checkpoint
    entries ``flow_t_ct`` (nan: not reached), ``flow_steps`` (solver steps), ``flow_seconds``."""
    import jax
    import jax.numpy as jnp

    from dlnjax.networks import compressed
    from dlnjax.theory import gradient_flow as gf

    t0 = time.time()
    horizon = rs.t_ct if rs.t_ct else (rs.fastest_rate * rs.t_min if rs.t_min else None)
    if not horizon:
        return dict(flow_t_ct=np.asarray(np.nan), flow_steps=np.asarray(0), flow_seconds=np.asarray(0.0))
    cs = _cs64(engine, problem)
    with jax.enable_x64(True):
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


def workers_for(cfg: DictConfig, n_depths: int) -> int:
    """Depths run at once: ``workers`` (0: one per CPU core), at most one per depth. A depth's
    independent runs (its edge bisection, flow path and ensemble members,
    :func:`dlnjax.measure.robust.rate_statistics`) also run ``workers`` at a time, so a depth
    that runs alone (depth 1000 at the end of its sweep) keeps both cores busy too."""
    w = int(cfg.get("workers", 1) or 0) or (os.cpu_count() or 1)
    return max(1, min(w, n_depths))


def run_depths(cfg: DictConfig, problem: Problem, depths: Sequence[int], rates: np.ndarray, label: str) -> tuple[list[DepthRecord], DepthEngine]:
    """Every depth, ``workers`` at a time in threads (the deepest first: they take longest), each
    depth on its own member and checkpoint. A depth's numbers do not depend on which thread runs
    it, or when: the same config gives the same summary for any ``workers``
    (``tests/test_experiments.py``). XLA and the native kernels release the GIL while they run,
    so two threads keep two cores busy."""
    from dlnjax.measure import robust
    from dlnjax.networks import compressed

    depths = [int(d) for d in depths]
    engine = make_engine(cfg, problem, depths)
    l_cap = compressed.capacity(depths)
    prog = Progress(label, len(depths))
    done = [0]

    def one(d: int) -> DepthRecord:
        rec = run_depth(cfg, problem, engine, d, rates, l_cap, progress=lambda m: prog.update(done[0], m))
        rec.extra["predictions"] = depth_predictions(cfg, problem, rec)  # in the depth's thread, beside the others
        with engine.lock:
            done[0] += 1
            prog.update(done[0], f"depth {d} done")
        return rec

    workers = workers_for(cfg, len(depths))
    problem.whitened_sv64  # E*'s eigendecomposition, once, before the threads share it
    if workers > 1:
        log.info("%s: %d depths, %d at a time", label, len(depths), workers)
    order = sorted(depths, reverse=True)  # the deepest first: they take longest
    by_depth = dict(zip(order, robust.in_threads([lambda d=d: one(d) for d in order], workers)))
    recs = [by_depth[d] for d in depths]
    prog.update(len(depths), "done")
    return recs, engine


# ----------------------------------------------------------------------------------------
# theory overlays, summary
# ----------------------------------------------------------------------------------------
def theory_times(cfg: DictConfig, problem: Problem, rec: DepthRecord, rate: float) -> dict:
    """Eq. 15 (diagonal approximation on non-white inputs; exact on whitened ones): the
    gradient-flow time T_ct, and the learning time at the supplement's optimal rate ``rate``
    (1/lambda_1 at a_opt, Eqs. 19-20), T_ct / rate (steps): the paper's own prediction."""
    from dlnjax.measure import sweep

    t = sweep.theory_t_ct(problem.task, rec.depth, float(cfg.u0), min(rec.widths), float(cfg.threshold.eps))
    ok = bool(np.isfinite(t))
    return dict(theory_t_ct=float(t) if ok else None,
                theory_learning_time_at_optimal_rate=float(t) / rate if (ok and rate) else None)


def flow_t_ct_of(stats: dict, eq15: float | None = None) -> float | None:
    """The gradient flow's T_ct of a depth: by diffrax where computed, else the small-rate run's
    (which follows the flow to 1e-3), else (``stats.flow_run=false``) Eq. 15's ``eq15``, exact on
    whitened inputs and the diagonal approximation otherwise."""
    return stats.get("t_ct_diffrax") or stats.get("t_ct") or eq15


def finite_rate_prediction(cfg: DictConfig, problem: Problem, rec: DepthRecord,
                           diag_t_ct: float | None) -> tuple[float | None, float | None]:
    """(rate, steps): the fastest rate of the modes' exact finite-rate maps
    (:func:`dlnjax.theory.finite_rate.fastest_rate`, diagonal approximation ``(s, d)`` per mode, float64)
    below the learned top mode's stability edge, and its learning time there, rescaled by the
    real flow's T_ct over the diagonal approximation's (1 on whitened inputs, where the maps are
    exact; ``diag_t_ct``: Eq. 15's T_ct, :func:`theory_times`). None with an absolute threshold
    (the maps take the relative one)."""
    import jax
    import jax.numpy as jnp

    from dlnjax.theory import finite_rate

    if cfg.threshold.kind.value != "relative":
        return None, None
    r = min(rec.widths)
    k = min(r, problem.task.n_modes)
    with jax.enable_x64(True):
        f = finite_rate.fastest_rate(jnp.full((k,), float(cfg.u0), jnp.float64), jnp.asarray(problem.task.s[:k]),
                                     jnp.asarray(problem.task.d[:k]), depth=rec.depth, eps=float(cfg.threshold.eps))
        rate, step = float(f.rate), int(f.step)
    real = flow_t_ct_of(rec.stats, diag_t_ct)
    if step < 0 or not real or not diag_t_ct:
        return rate, None
    return rate, step * float(real) / float(diag_t_ct)


def depth_predictions(cfg: DictConfig, problem: Problem, rec: DepthRecord) -> tuple[dict, tuple]:
    """One depth's predictions, ``(theory_times, finite_rate_prediction)``: computed by
    :func:`run_depths` in the depth's own thread as soon as the depth is done (they take a few
    tenths of a second per depth, which then overlap with the other depths' runs)."""
    th = theory_times(cfg, problem, rec, theory_optimal_rate(problem.task, rec.depth))
    return th, finite_rate_prediction(cfg, problem, rec, th["theory_t_ct"])


def prediction(depths: Sequence[int], rate: Sequence[Any], time: Sequence[Any], best: Sequence[Any],
               band: Sequence[Any], learning_time: Sequence[Any], prefix: str = "prediction") -> dict:
    """How a prediction of the measured optimum (a rate and a learning time per depth) compares
    with the measurement (docs/fig4.md, "Predicting the optimum"): rate / best rate, whether the
    rate lies in the 10% band, time / learning time, the worst factors, and the depths on target
    (rate in the band or within 25% of its centre, and time within 25%)."""
    rr = [(p / b) if (p and b) else None for p, b in zip(rate, best)]
    inside = [None if (b is None or p is None) else bool(b[0] <= p <= b[1]) for p, b in zip(rate, band)]
    tr = [(p / t) if (p and t) else None for p, t in zip(time, learning_time)]
    ok = [abs(math.log(x)) for x in rr if x]
    okt = [abs(math.log(x)) for x in tr if x]
    return {
        f"{prefix}_rate_ratio": rr, f"{prefix}_rate_in_band": inside, f"{prefix}_time_ratio": tr,
        f"{prefix}_worst_rate_factor": math.exp(max(ok)) if ok else None,
        f"{prefix}_worst_time_factor": math.exp(max(okt)) if okt else None,
        f"{prefix}_depths_on_target": [int(d) for d, x, i, t in zip(depths, rr, inside, tr)
                                       if x and t and (i or abs(x - 1) <= 0.25) and abs(t - 1) <= 0.25],
    }


# the lists of a summary that are not per depth (everything else of the depths' length is)
NOT_PER_DEPTH = ("depths", "learning_rates", "learning_rates_run", "lr_exponent_fit_depths", "unbracketed_depths",
                 "prediction_depths_on_target", "finite_rate_prediction_depths_on_target", "singular_values", "lr_exponent_ci", "learning_time_growth_ci",
                 "learning_time_late_slope_ci")


def derived_fields(depths: Sequence[int], s: dict, fit_min_depth: int, band: float, ratio: float) -> dict:
    """Every field of a depth sweep's summary computed from its per-depth lists ``s`` (as
    ``summary.json`` holds them): the headline with its intervals (:func:`dlnjax.measure.headline.headline`),
    the late slopes of the measured edge and of the predictions, the prediction's errors. One
    routine for a run and for ``experiments.aggregate``'s union of runs."""
    from dlnjax.measure import headline

    md = int(fit_min_depth)
    head = headline.headline(depths, md, best_rate=s["best_learning_rate"], best_rate_band=s["best_rate_band"],
                             learning_time=s["learning_time"], band=band, grid_ratio=ratio)
    flow_t = [flow_t_ct_of(dict(t_ct_diffrax=a, t_ct=b), c) for a, b, c in
              zip(s.get("t_ct_diffrax") or [None] * len(depths), s["t_ct"], s.get("theory_t_ct") or [None] * len(depths))]
    pred_t = [(t / r) if (t and r) else None for t, r in zip(flow_t, s["theory_optimal_learning_rate"])]
    tct = s["t_ct"]
    return dict(
        lr_exponent=head["lr_exponent"],
        lr_exponent_ci=head["lr_exponent_ci"],
        learning_time_growth=head["learning_time_growth"],
        learning_time_growth_ci=head["learning_time_growth_ci"],
        learning_time_late_slope=head["learning_time_late_slope"],
        learning_time_late_slope_ci=head["learning_time_late_slope_ci"],
        lr_exponent_fit_depths=head["late_depths"],
        headline_interval=headline.interval_method(band, ratio),
        unbracketed_depths=[int(d) for d, b in zip(depths, s["bracketed"]) if not b],
        edge_exponent=headline.late_slope(depths, s["stability_edge_measured"], md),
        t_ct_growth=(tct[-1] / tct[0]) if (tct and tct[0] and tct[-1]) else None,
        inv_lambda_star_exponent=headline.late_slope(depths, s["inv_lambda_star"], md),
        steps_at_inv_lambda_star_late_slope=headline.late_slope(depths, s["steps_at_inv_lambda_star"], md),
        theory_lr_exponent=headline.late_slope(depths, s["theory_optimal_learning_rate"], md),
        theory_learning_time_late_slope=headline.late_slope(depths, s["theory_learning_time_at_optimal_rate"], md),
        # (c) predictions of the measured optimum: critical damping of the learned top mode (1/lambda_1,
        # the supplement's rate) with the real flow's time there; and the finite-rate maps' fastest rate
        predicted_optimal_rate=list(s["theory_optimal_learning_rate"]),
        predicted_learning_time=pred_t,
        **prediction(depths, s["theory_optimal_learning_rate"], pred_t, s["best_learning_rate"], s["best_rate_band"],
                     s["learning_time"]),
        **prediction(depths, s["finite_rate_optimal_rate"], s["finite_rate_learning_time"], s["best_learning_rate"],
                     s["best_rate_band"], s["learning_time"], prefix="finite_rate_prediction"),
    )


def summary_fields(cfg: DictConfig, problem: Problem, depths: Sequence[int], rates: np.ndarray, recs: list[DepthRecord],
                   engine: DepthEngine) -> dict:
    from dlnjax.measure import robust

    per = lambda k: [r.stats.get(k) for r in recs]  # noqa: E731
    band = [[r.stats.get("band_lo"), r.stats.get("band_hi")] if r.stats.get("band_lo") else None for r in recs]
    opt = [theory_optimal_rate(problem.task, d) for d in depths]
    pred = [r.extra.get("predictions") or depth_predictions(cfg, problem, r) for r in recs]
    th, fr = [p[0] for p in pred], [p[1] for p in pred]
    ds = problem.ds
    rot = engine.rot
    lists = dict(
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
        # 2: best_learning_rate / learning_time are the measured optimum (v1: 1/lambda*, T_ct lambda*);
        # 3: of the ensemble's median crossings (`ensemble` starts; v2: one run per rate)
        summary_version=3,
        learning_rates=rates,
        learning_rates_run=union_rates(recs),
        # per depth, measured: the optimum (the headline below is computed from these)
        best_learning_rate=per("band_centre"),
        best_rate_band=band,
        learning_time=per("t_min"),
        fastest_rate=per("fastest_rate"),
        bracketed=per("bracketed"),
        rates_added=[[r.stats.get("extended_down"), r.stats.get("extended_up")] for r in recs],
        stability_edge_measured=per("edge"),
        stability_edge_measured_bracket_hi=per("edge_hi"),
        runs_with_spikes_before_crossing=per("spikes_before_crossing"),
        runs=[{"depth": r.depth, "runs": r.runs} for r in recs],
        member_steps=per("member_steps"),
        # starts per rate near the optimum (the band and learning time are of their median crossings)
        ensemble=int(cfg.stats.ensemble),
        ensemble_rates=per("ensemble_rates"),
        # predictions, drawn over the measurement. (a) the gradient-flow path on the real statistics:
        # T_ct (the flow path: flow_method), lambda* (largest top Hessian eigenvalue along it), 1/lambda*
        # and T_ct lambda*; with end_to_end, t_ct_rate is the check run's rate, and flow_check_rel its
        # crossing against T_ct (from the last snapshot before it, flow_check_from)
        t_ct=per("t_ct"),
        t_ct_rate=per("t_ct_rate"),
        flow_method=per("flow_method"),
        flow_check_from=per("flow_check_from"),
        flow_check_t_ct=per("flow_check_t_ct"),
        flow_check_rel=per("flow_check_rel"),
        flow_solver_steps=per("flow_solver_steps"),
        lambda_star=per("lam_star"),
        inv_lambda_star=per("inv_lambda_star"),
        steps_at_inv_lambda_star=per("steps_at_inv_lambda_star"),
        stability_edge_predicted=per("edge_predicted"),
        small_rate_stable=per("small_rate_stable"),
        # (b) the paper's own: supplement Eqs. 19-20 (1/lambda_1 at a_opt, diagonal approximation) and
        # Eq. 15's learning time at that rate
        theory_optimal_learning_rate=opt,
        theory_stability_edge=[2 * o for o in opt],
        theory_learning_time_at_optimal_rate=[t["theory_learning_time_at_optimal_rate"] for t in th],
        theory_t_ct=[t["theory_t_ct"] for t in th],
        # the modes' exact finite-rate maps (diagonal approx.; exact on whitened inputs): fastest rate below
        # the top mode's edge and its time (rescaled by the real over the diagonal flow time)
        finite_rate_optimal_rate=[f[0] for f in fr],
        finite_rate_learning_time=[f[1] for f in fr],
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
    # the headline with its intervals, the late slopes, (c) the prediction of the measured optimum
    derived = derived_fields(depths, lists, int(cfg.fit_min_depth), float(cfg.stats.band), robust.grid_ratio(rates))
    return {**lists, **derived}


def result_arrays(depths: Sequence[int], rates: np.ndarray, recs: list[DepthRecord]) -> dict:
    """The arrays of ``results.npz``: the depth x rate grid over the union of the depths' grid and
    extension rates (``learning_rates``; ``in_grid`` marks the configured grid's), and per depth
    the loss curves on the same rates, the small-rate run and its sharpness path."""
    allr = union_rates(recs) if recs else np.sort(rates)
    in_grid = np.asarray([any(abs(math.log(x / g)) < 1e-9 for g in rates) for x in allr], bool)
    arrays: dict[str, Any] = dict(depths=np.asarray(depths), learning_rates=allr, in_grid=in_grid)
    lt, st, sp = zip(*[r.grid_status(allr) for r in recs]) if recs else ((), (), ())
    arrays["learning_time"] = np.stack(lt) if lt else np.zeros((0, len(allr)))
    arrays["status"] = np.stack([np.asarray(s, dtype="U10") for s in st]) if st else np.zeros((0, len(allr)), "U10")
    arrays["diverged"] = arrays["status"] == "diverged"
    arrays["spikes"] = np.stack(sp) if sp else np.zeros((0, len(allr)), int)
    for r in recs:
        loss = np.full((len(allr), r.grid_loss.shape[1]), np.nan)
        for i, x in enumerate(r.main_rates):
            loss[nearest_rate(allr, x)] = r.grid_loss[i]
        arrays[f"steps_depth{r.depth}"] = r.record_steps
        arrays[f"loss_depth{r.depth}"] = loss
        arrays[f"small_loss_depth{r.depth}"] = r.small_loss
        arrays[f"small_modes_depth{r.depth}"] = r.small_modes
        arrays[f"sharpness_steps_depth{r.depth}"] = np.asarray(r.stats.get("sharpness_steps") or [], np.int64)
        arrays[f"sharpness_depth{r.depth}"] = np.asarray(r.stats.get("sharpness") or [], np.float64)
        arrays[f"sharpness_times_depth{r.depth}"] = np.asarray(r.stats.get("sharpness_times") or [], np.float64)
    return arrays
