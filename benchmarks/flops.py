"""FLOP count and FLOP/s of the compressed engine's fused native CPU loop, against this machine's peak.

    python -m benchmarks.flops                    # depths 3, 10, 30, 100; 1 member and a batch of 2
    python -m benchmarks.flops --tiny             # seconds: checks the harness (500 examples, 2 depths)
    python -m benchmarks.flops --out docs/bench/compressed_flops_cpu.json

The loop is ``run_member`` of ``dlnjax/networks/kernels/native/compressed_run.cc`` (reached through
:mod:`dlnjax.networks.kernels.native.compressed`, as the main job runs it on a CPU). It is timed on
the embedded digits (raw pixels, float32, as ``python -m experiments.depth_sweep`` prepares them:
``n`` = 658 kept input directions, ``no`` = 10 outputs, rank ``r`` = 10, the task's readout of
``nk`` = 10 modes recorded every ``record_every`` = 10 steps) from the main job's decoupled start
(u0 = 1e-3, 1000 hidden units: they drop out), at the main job's smallest rate (7.5e-7, stable)
with no threshold, so that every call takes exactly ``--steps`` steps. Per depth: one member
(one thread), and a batch of 2 members (the native call runs a batch's members on XLA's intra-op
threads, one member per thread: both cores). Each configuration is called once to compile, then
timed (median of ``--repeats`` calls, each from step 0).

FLOP count of one member-step (:func:`flops_per_member_step`; a multiply and an add count 1 each,
an FMA 2, comparisons 0; a sum of K terms costs K - 1 adds, a dot product of length K 2K - 1 flops,
however the code splits it into vector lanes and partial sums). Line numbers are those of ``compressed_run.cc``
at commit 637c31f (lines 1-431, ``run_member`` and what it calls, as at 2682d36)::

    suffix products S_{j} = S_{j+1} H_j        L no r (2r - 1)       mul_right 115-150, called 304-308
    W = S0 F                                   no n (2r - 1)         w_tile 196-215, called 315-332
    E = 1/2 tr33 - <W, S31> + 1/2 <W, W Lam>   (2 no n - 1) + (3 no n - 1) + 4    w_tile 211-212, 348
    G = W Lam - S31                            2 no n                w_tile 213
    F' = F - lr S0^T G                         r n (2 no + 1)        333-340
    C = G F^T                                  no r (2n - 1)         c_tiles 217-240, called 342-346; hsum 361-362
    rise = E / E_prev - 1 (spike check)        2                     352 (0 at step 0)
    H_j' = H_j - lr S_{j+1}^T Q_j              L r^2 (2 no + 1)      update_hidden 152-184, called 367
    Q_{j+1} = Q_j H_j^T (old H_j)              L no r (2r - 1)       mul_right, called 368
    T' = T - lr Q_L                            2 no r                371-373 (when the last core is trained: depth >= 3)
    records, once every record_every steps:    nk (2 no n + no - 1)  modes 376-397 (modes_x: no nk (2n - 1),
                                                                     then the sum over o: nk (2 no - 1))

so, with ``L = depth - 3`` hidden r x r cores (``decoupled_cores``: ``n_hidden = depth - 3`` for
depth >= 3, i.e. ``len(widths) - 3``; the last core is trained) and the records amortised::

    FLOP/member-step = 6 no r n + 6 no n + r n + no r + 4           (first core, loss, last core)
                     + L (6 no r^2 - 2 no r + r^2)                  (per hidden core)
                     + nk (2 no n + no - 1) / record_every          (the mode readout)

At r = no = nk = 10, n = 658, record_every = 10: 454,133 + 5,900 L, i.e. 454,133 (depth 3),
495,433 (depth 10), 613,433 (depth 30), 1,026,433 (depth 100). The per-call set-up (copying the
cores into and out of the panels) does no arithmetic and is spread over ``--steps`` steps.

:func:`lane_flops_per_member_step` counts what the vector units execute instead: every lane of
the 256-bit vectors (8 float32), the padding included (n up to a whole number of vectors; the
small matrices' rows of r up to ``RP`` = 16 lanes at r = 10), the zero-started accumulators and
the partial sums of C (chunks of 16 vectors). At r = 10 only 10 of a small row's 16 lanes are
useful, so the hidden cores' work runs at most at 62.5% of the lanes' rate.

Peak (the two cores; ``--cores``):

* measured matrix product: a float32 ``N x N`` product (``--matmul-size``, default 2048) with
  JAX (XLA's CPU dot on its intra-op threads) and with NumPy (OpenBLAS), best of several calls;
  the better of the two is the practical peak. Both use all the machine's cores (2 here).
* register-only FMA loop: 12 independent chains of 256-bit FMAs per thread on ``--cores`` threads,
  compiled here (``c++ -O2 -march=native``), best of several rounds.
* theoretical: ``flop/cycle/core x cores x clock``. flop/cycle/core = 32 for float32 where the
  CPU has AVX2 and FMA, assuming two 256-bit FMA pipes per core (AMD Zen 2-4, Intel Haswell and
  later client cores: 2 pipes x 8 lanes x 2 flops); AMD Zen 4 runs AVX-512 on those same pipes
  (still 32); the loop uses 256-bit vectors, so an Intel server core's two 512-bit pipes would
  not serve it anyway. The clock is measured (a chain of dependent integer adds, one cycle each,
  best of several rounds, one thread) where the compiler and an x86-64 or AArch64 CPU allow;
  ``/proc/cpuinfo``'s ``cpu MHz`` is recorded too, but under a hypervisor (KVM here) it is the
  nominal TSC rate, not the clock the cores run at; the JSON names the clock it used, or says
  the clock is unknown, and carries a warning when a measured rate exceeds the theoretical one.

The JSON goes to ``--out``, else to ``$DLNJAX_BENCH_DIR/compressed_flops.json`` (default
``bench_results/``; ``compressed_flops_tiny.json`` with ``--tiny``); the committed one is
``docs/bench/compressed_flops_cpu.json``, rendered by ``python -m benchmarks.report --write``.
Nothing here asserts a time; a member that does not take every step (a rate too large) aborts
the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .common import machine, table, timeit, write

VECTOR_BYTES = 32  # compressed_run.cc's Vec: one 256-bit register
CHUNK_BLOCKS = 16  # compressed_run.cc's kChunk


# ----------------------------------------------------------------------------------------
# the count
# ----------------------------------------------------------------------------------------
def hidden_cores(depth: int) -> int:
    """L = depth - 3 hidden r x r cores (:func:`dlnjax.networks.compressed.decoupled_cores`), 0 below 3."""
    return max(int(depth) - 3, 0)


def step_flops(r: int, n: int, no: int, n_hidden: int, last_trained: bool = True) -> int:
    """FLOP of one training step of one member in ``run_member`` (records apart): the module's table."""
    r, n, no, L = int(r), int(n), int(no), int(n_hidden)
    first_and_loss = (no * n * (2 * r - 1)            # W = S0 F
                      + (2 * no * n - 1) + (3 * no * n - 1) + 4  # E
                      + 2 * no * n                    # G
                      + r * n * (2 * no + 1)          # F' = F - lr S0^T G
                      + no * r * (2 * n - 1)          # C = G F^T
                      + 2)                            # rise = E / E_prev - 1
    per_hidden = 2 * no * r * (2 * r - 1) + r * r * (2 * no + 1)  # suffix product, update, Q H^T
    return first_and_loss + L * per_hidden + (2 * no * r if last_trained else 0)


def record_flops(n: int, no: int, nk: int) -> int:
    """FLOP of one record's mode readout ``modes[m] = sum_o u[o, m] sum_j W[o, j] v[j, m]``."""
    n, no, nk = int(n), int(no), int(nk)
    return no * nk * (2 * n - 1) + nk * (2 * no - 1)


def flops_per_member_step(r: int, n: int, no: int, n_hidden: int, nk: int = 0, record_every: int = 1,
                          last_trained: bool = True) -> float:
    """FLOP per member-step with the records amortised (a record every ``record_every`` steps):
    ``6 no r n + 6 no n + r n + no r + 4 + L (6 no r^2 - 2 no r + r^2) + nk (2 no n + no - 1) / record_every``
    (``no r`` becomes ``-no r`` when the last core is not trained)."""
    return step_flops(r, n, no, n_hidden, last_trained) + record_flops(n, no, nk) / int(record_every)


def lane_flops_per_member_step(r: int, n: int, no: int, n_hidden: int, nk: int = 0, record_every: int = 1,
                               last_trained: bool = True, lanes: int = VECTOR_BYTES // 4) -> float:
    """FLOP the vector units execute per member-step, every lane counted (padding, zero-started
    accumulators, C's partial sums per chunk and lane; ``lanes`` = 8 for float32, 4 for float64)."""
    r, n, no, L, vl = int(r), int(n), int(no), int(n_hidden), int(lanes)
    nb = -(-n // vl)
    npad, nch, rp = nb * vl, -(-nb // CHUNK_BLOCKS), -(-r // vl) * vl
    per_step = (no * npad * (2 * r + 6)                          # w_tile: W, E's two sums, G
                + r * npad * (2 * no + 1)                        # F'
                + no * r * (2 * npad + nch * vl + vl - 1)        # C: FMAs from zero, chunk sums, hsum
                + 2 * (vl - 1) + 4 + 2                           # E's hsums and combination, rise
                + L * (2 * no * rp * (2 * r - 1) + r * rp * (2 * no + 1))
                + (2 * no * r if last_trained else 0))
    per_record = 2 * no * nk * (n + 1)
    return per_step + per_record / int(record_every)


# ----------------------------------------------------------------------------------------
# the peak
# ----------------------------------------------------------------------------------------
PROBE_SOURCE = r"""
// Peak probe for benchmarks/flops.py: (1) the clock, from a chain of dependent integer adds (one
// cycle each), one thread; (2) the float32 FMA rate of `threads` threads, each running 12
// independent chains of 256-bit FMAs in registers. Prints one JSON line.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
typedef float V __attribute__((vector_size(32)));
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static double clock_hz(long iters) {
#if defined(__x86_64__) || defined(__aarch64__)
  unsigned long x = 0;
  double t0 = now();
  for (long i = 0; i < iters; ++i) {
#if defined(__x86_64__)
    asm volatile(".rept 100\n\tadd $1, %0\n\t.endr" : "+r"(x));
#else
    asm volatile(".rept 100\n\tadd %0, %0, #1\n\t.endr" : "+r"(x));
#endif
  }
  double t = now() - t0;
  return x == 100ul * iters ? 100.0 * iters / t : 0.0;
#else
  (void)iters;
  return 0.0;
#endif
}

static float fma_chains(long iters, double* seconds) {
  constexpr int K = 12;
  V a, b, acc[K];
  for (int i = 0; i < 8; ++i) { a[i] = 1.0f - 1e-7f; b[i] = 1e-7f; }
  for (int k = 0; k < K; ++k) acc[k] = a * (float)(k + 1);
  asm volatile("" : "+x"(a), "+x"(b));
  double t0 = now();
  for (long it = 0; it < iters; ++it)
    for (int k = 0; k < K; ++k) acc[k] = acc[k] * a + b;
  *seconds = now() - t0;
  float s = 0;
  for (int k = 0; k < K; ++k) s += acc[k][0];
  return s;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const long fma_iters = argc > 3 ? std::atol(argv[3]) : 20000000;
  const long clk_iters = argc > 4 ? std::atol(argv[4]) : 2000000;
  double best_clock = 0, best_fma = 0;
  float sink = 0;
  for (int r = 0; r < rounds; ++r) best_clock = std::max(best_clock, clock_hz(clk_iters));
  for (int r = 0; r < rounds; ++r) {
    std::vector<double> secs(threads);
    std::vector<float> sums(threads);
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < threads) {}
        sums[t] = fma_chains(fma_iters, &secs[t]);
      });
    for (auto& th : pool) th.join();
    double slowest = *std::max_element(secs.begin(), secs.end());
    best_fma = std::max(best_fma, 2.0 * 8 * 12 * (double)fma_iters * threads / slowest);
    for (float s : sums) sink += s;
  }
  std::printf("{\"clock_hz\": %.6e, \"fma_flops_per_s\": %.6e, \"threads\": %d, \"rounds\": %d, \"sink\": %g}\n",
              best_clock, best_fma, threads, rounds, (double)sink);
  return 0;
}
"""


def _compiler() -> str | None:
    for c in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if c and shutil.which(c):
            return c
    return None


def probe(threads: int, tiny: bool) -> dict:
    """The clock and the register-only FMA rate (:data:`PROBE_SOURCE`), or a note saying why not."""
    cxx = _compiler()
    if cxx is None:
        return {"note": "no C++ compiler: register-only FMA loop and clock not measured"}
    with tempfile.TemporaryDirectory(prefix="dlnjax-flops-") as tmp:
        src, exe = Path(tmp) / "probe.cc", Path(tmp) / "probe"
        src.write_text(PROBE_SOURCE)
        cc = subprocess.run([cxx, "-O2", "-march=native", "-std=c++17", "-pthread", str(src), "-o", str(exe)],
                            capture_output=True, text=True)
        if cc.returncode != 0:
            return {"note": f"probe did not compile: {cc.stderr[-500:]}"}
        args = [str(exe), str(threads)] + (["2", "5000000", "500000"] if tiny else ["7", "100000000", "5000000"])
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            return {"note": f"probe failed (exit {r.returncode}): {r.stderr[-500:]}"}
        out = json.loads(r.stdout)
    out.pop("sink", None)
    out["compiler"] = cxx
    if not out["clock_hz"]:
        out["clock_hz"] = None
    return out


def cpu_info() -> dict:
    """Model name, nominal clock and the flags that decide flop/cycle, from /proc/cpuinfo."""
    info = {"model": platform.processor() or platform.machine(), "nominal_clock_hz": None, "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = (s.strip() for s in line.partition(":"))
            if key == "model name" and info["model"] in ("", platform.machine()):
                info["model"] = val
            elif key == "cpu MHz" and info["nominal_clock_hz"] is None:
                info["nominal_clock_hz"] = float(val) * 1e6
            elif key in ("flags", "Features") and not info["flags"]:
                info["flags"] = val.split()
    except (OSError, ValueError):
        pass
    return info


def flop_per_cycle(flags: list[str]) -> tuple[int | None, str]:
    """float32 flop/cycle/core assumed from the instruction-set flags, and the assumption in words."""
    f = set(flags)
    if {"avx2", "fma"} <= f:
        return 32, ("AVX2 + FMA: assumed two 256-bit FMA pipes per core (AMD Zen 2-4, Intel Haswell and later "
                    "client cores): 2 x 8 float32 lanes x 2 flops = 32 flop/cycle/core (Zen 4 runs AVX-512 on the "
                    "same pipes; the loop uses 256-bit vectors)")
    if "avx" in f:
        return 16, "AVX without FMA: assumed one 256-bit multiply and one 256-bit add pipe: 16 flop/cycle/core"
    return None, "flop/cycle/core unknown (no AVX/FMA flags found)"


def matmul_peak(size: int, repeats: int) -> dict:
    """float32 ``size x size`` products: JAX (XLA CPU) and NumPy, FLOP/s of the best call each."""
    n = int(size)
    flop = 2.0 * n ** 3
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(ja, jb))

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flop / min(times)

    np.dot(a, b)
    return {"size": n, "best_of": repeats, "jax_flops_per_s": best(lambda: jax.block_until_ready(dot(ja, jb))),
            "numpy_flops_per_s": best(lambda: np.dot(a, b))}


# ----------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------
def build_problem(n_train: int | None, u0: float, hidden: int, dtype):
    """The main job's problem (experiments/_shared/problem.py ``prepare`` and depth_loop.py
    ``make_engine``, ``CompressedDepths.member``): embedded digits, raw pixels, the statistics in
    float64, rotated and compressed into ``dtype``; the task's SVD for the start and the readout."""
    from dlnjax.networks import compressed

    from .common import digits_compressed

    st64, rot, cs, u, vt = digits_compressed(n_train, dtype)
    r = min(st64.n_in, int(hidden), st64.n_out)
    readout = (jnp.asarray(u[:, :r], dtype), jnp.asarray(rot.q.T @ vt.T[:, :r], dtype))

    def cores(depth: int, l_cap: int):
        widths = (st64.n_in,) + (int(hidden),) * (int(depth) - 2) + (st64.n_out,)
        return compressed.decoupled_cores(widths, u0, u, vt.T, rot, l_cap=l_cap, dtype=dtype)

    return cs, rot, readout, cores


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.flops", description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[3, 10, 30, 100])
    ap.add_argument("--members", type=int, nargs="+", default=[1, 2], help="batch sizes to time")
    ap.add_argument("--steps", type=int, default=20000, help="steps per timed call (a multiple of --record-every)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lr", type=float, default=7.5e-7, help="a rate small enough that no member stops early")
    ap.add_argument("--record-every", type=int, default=10)
    ap.add_argument("--cores", type=int, default=2, help="cores of the peak (FMA loop and theoretical)")
    ap.add_argument("--matmul-size", type=int, default=2048)
    ap.add_argument("--tiny", action="store_true", help="seconds: 500 examples, depths 3 and 10, 200 steps")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here (default: $DLNJAX_BENCH_DIR)")
    a = ap.parse_args(argv)
    if a.tiny:
        a.depths, a.steps, a.repeats, a.matmul_size = [3, 10], 200, 1, 512
    if a.steps % a.record_every:
        ap.error("--steps must be a multiple of --record-every (the records are then amortised exactly)")
    dtype = jnp.float32
    from dlnjax.networks import compressed
    from dlnjax.networks.engines.compressed import COMPRESSED
    from dlnjax.networks.kernels.native import compressed as ncomp

    if not ncomp.available():
        raise SystemExit(f"the native compressed loop is not available here: {ncomp.reason()}")

    # --- the loop, per depth and batch size
    cs, rot, readout, make_cores = build_problem(500 if a.tiny else None, 1e-3, 1000, dtype)
    n, no = cs.n_in, cs.n_out
    l_cap = compressed.capacity(a.depths)
    r = make_cores(a.depths[0], l_cap).rank
    nk = int(readout[0].shape[1])
    n_rec = a.steps // a.record_every + 1
    runner = COMPRESSED.make_runner(cs, record_every=a.record_every, kernels="native", last_trained=True,
                                    readout=readout)
    lr, thr, limit = jnp.asarray(a.lr, dtype), jnp.asarray(-jnp.inf, dtype), jnp.asarray(a.steps, jnp.int32)
    runs = {1: jax.jit(runner), "batch": jax.jit(jax.vmap(runner, in_axes=(0, 0, None, None)))}
    rows = []
    for depth in a.depths:
        st = compressed.init_member(make_cores(depth, l_cap), cs, n_rec, nk)
        L = hidden_cores(depth)
        assert int(st.cores.n_hidden) == L
        fl = flops_per_member_step(r, n, no, L, nk, a.record_every)
        lane = lane_flops_per_member_step(r, n, no, L, nk, a.record_every)
        for m in a.members:
            if m == 1:
                fn, args = runs[1], (st, lr, thr, limit)
            else:
                stm = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (m,) + jnp.shape(x)).copy(), st)
                fn, args = runs["batch"], (stm, jnp.full((m,), a.lr, dtype), thr, limit)
            held = {}

            def call():
                held["end"] = fn(*args)
                return held["end"].step

            t = timeit(call, a.repeats)
            end = held["end"]
            if not (np.all(np.asarray(end.step) == a.steps) and not np.any(np.asarray(end.diverged))):
                raise SystemExit(f"depth {depth}: a member stopped before {a.steps} steps (steps {np.asarray(end.step)}, "
                                 f"diverged {np.asarray(end.diverged)}): lower --lr")
            sps = m * a.steps / t["median_s"]
            rows.append(dict(depth=depth, n_hidden=L, members=m, steps=a.steps, flops_per_member_step=fl,
                             lane_flops_per_member_step=lane, median_s=t["median_s"], min_s=t["min_s"],
                             first_call_s=t["first_call_s"], member_steps_per_s=sps,
                             member_steps_per_s_best=m * a.steps / t["min_s"], flops_per_s=fl * sps,
                             gflops_per_s=fl * sps / 1e9))
            print(f"depth {depth}, {m} member(s): {sps:,.0f} member-steps/s, {fl * sps / 1e9:.2f} GFLOP/s", flush=True)

    # --- the peak (after the loop: the same warm machine)
    mm = matmul_peak(a.matmul_size, 3 if a.tiny else 7)
    pr = probe(a.cores, a.tiny)
    cpu = cpu_info()
    fpc, fpc_note = flop_per_cycle(cpu["flags"])
    clock, clock_source = pr.get("clock_hz"), "measured: a chain of dependent integer adds (1 cycle each), best of several rounds"
    if not clock:
        clock = cpu["nominal_clock_hz"]
        clock_source = ("/proc/cpuinfo cpu MHz (nominal; under a hypervisor the TSC rate, not the boost clock)" if clock
                        else "unknown: theoretical peak not given")
    theo = None if (fpc is None or not clock) else fpc * a.cores * clock
    theo_nominal = None if (fpc is None or not cpu["nominal_clock_hz"]) else fpc * a.cores * cpu["nominal_clock_hz"]
    measured = max(mm["jax_flops_per_s"], mm["numpy_flops_per_s"])
    peak = dict(cores=a.cores, cpu_count=os.cpu_count(), cpu_model=cpu["model"], matmul=mm,
                measured_peak_flops_per_s=measured,
                measured_peak_note=f"best of JAX and NumPy float32 {mm['size']}x{mm['size']} products on all "
                                   f"{os.cpu_count()} cores",
                fma_loop_flops_per_s=pr.get("fma_flops_per_s"), fma_loop_threads=pr.get("threads"),
                probe_note=pr.get("note"), flop_per_cycle_per_core=fpc, flop_per_cycle_note=fpc_note,
                clock_hz_measured=pr.get("clock_hz"), clock_hz_nominal=cpu["nominal_clock_hz"], clock_hz_used=clock,
                clock_source=clock_source, theoretical_peak_flops_per_s=theo,
                theoretical_peak_nominal_clock_flops_per_s=theo_nominal)
    fastest = max(measured, pr.get("fma_flops_per_s") or 0.0)
    if theo is not None and fastest > 1.02 * theo:
        peak["warning"] = (f"a measured rate ({fastest / 1e9:.1f} GFLOP/s) exceeds the theoretical peak: the clock "
                           "reading or the flop/cycle assumption is wrong here (a busy machine slows the clock loop)")
        print("warning:", peak["warning"])
    for row in rows:
        row["fraction_of_measured_peak"] = row["flops_per_s"] / measured
        row["fraction_of_theoretical_peak"] = None if theo is None else row["flops_per_s"] / theo
        row["fraction_of_fma_loop"] = None if not pr.get("fma_flops_per_s") else row["flops_per_s"] / pr["fma_flops_per_s"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    print(f"compressed native loop, float32, embedded digits: r {r}, n {n}, no {no}, nk {nk}, "
          f"record_every {a.record_every}, {a.steps} steps per call")
    print(table([(w["depth"], w["members"], f"{w['flops_per_member_step']:,.0f}", f"{w['member_steps_per_s']:,.0f}",
                  f"{w['gflops_per_s']:.2f}", pct(w["fraction_of_measured_peak"]), pct(w["fraction_of_theoretical_peak"]))
                 for w in rows],
                ("depth", "members", "FLOP/member-step", "member-steps/s", "GFLOP/s", "% measured peak", "% theoretical")))
    gf = lambda x: "n/a" if not x else f"{x / 1e9:.1f} GFLOP/s"  # noqa: E731
    print(f"peak: matmul {gf(measured)} (JAX {gf(mm['jax_flops_per_s'])}, NumPy {gf(mm['numpy_flops_per_s'])}); "
          f"FMA loop on {a.cores} threads {gf(pr.get('fma_flops_per_s'))}; theoretical {gf(theo)} "
          f"({fpc} flop/cycle/core x {a.cores} x {'?' if not clock else f'{clock / 1e9:.2f} GHz'}: {clock_source})")

    payload = dict(
        tiny=a.tiny, config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, dtype="float32",
        flop_formula=("6 no r n + 6 no n + r n + no r + 4 + L (6 no r^2 - 2 no r + r^2) + nk (2 no n + no - 1) / record_every"
                      " (L = depth - 3; benchmarks/flops.py docstring)"),
        problem=dict(data="embedded", preprocessing="raw", n_train=500 if a.tiny else None, kept_inputs=n, n_out=no,
                     rank=r, readout_modes=nk, record_every=a.record_every, lr=a.lr, u0=1e-3, hidden=1000, l_cap=l_cap,
                     dropped_inputs=rot.n_dropped),
        peak=peak, rows=rows,
    )
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
        path = a.out
    else:
        path = write("compressed_flops_tiny" if a.tiny else "compressed_flops", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
