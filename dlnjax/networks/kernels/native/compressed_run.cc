// A fused CPU runner for the compressed engine (dlnjax.networks.compressed.make_member_runner): one XLA
// FFI call runs a member's whole training loop, step after step, until it crosses its threshold,
// diverges or reaches its step limit, with the same checks, spike detection and records as the
// lax.while_loop of dlnjax/networks/compressed.py.
//
// The step on the cores (first F: r x n, hidden H_0..H_{L-1}: r x r, last T: N_out x r), with
// Lambda = diag(lam) and S31 = Sigma31 Q (N_out x n):
//   S = T; for j = L-1..0: buf[j] = S, S = S H_j;  S0 = S
//   W = S0 F,  G = W Lambda - S31,  E = 1/2 tr33 - <W, S31> + 1/2 <W, W Lambda>
//   F' = F - lr S0^T G,  C = G F^T;  Q = C; for j = 0..L-1: H_j' = H_j - lr buf[j]^T Q, Q = Q H_j^T
//   T' = T - lr Q  (only when the last core is trained)
//
// Why: at r = 10 a step is ~3 x 10 x 10 x n multiply-adds on the n side plus 3 x 10 x 10 x 10 per
// hidden layer; XLA spends ~40 us per step and ~4 us per hidden layer on per-op overhead, a few
// times (n side) to ~20 times (hidden side) what the arithmetic takes.
//
// Layout: the n side works on column blocks of one vector (VL columns). F (two copies, current and
// next), S31 and lam are held for the whole run in "panels" (block b: the R rows of its VL
// columns, contiguous), zero-padded to a whole number of blocks (padding gives W = G = 0 and adds
// nothing). One pass over the blocks forms W, G, E, C and the next F (into the other copy); the
// loss decides afterwards whether the step is taken (swap copies, update hidden and last) or the
// member stops with its cores untouched. The small matrices (suffix products, Q, the last core and
// the hidden cores in use) are held with rows padded to whole vectors for the whole run; the
// cores are written back to the output buffers (aliased to the inputs by XLA) at the end.
// Measured on 2 shared cores at r = N_out = 10, n = 658: ~15 us per step in float64 (~8 in
// float32) plus ~0.25 us per hidden layer, against XLA's ~40 us plus ~4 us.
//
// Summation orders: the hidden-layer products sum over their inner index in ascending order, as
// the unrolled products of compressed._mm do; the n-side sums (W, S0^T G, C and the two loss
// sums) use the vector-lane order here, XLA its own: float64 results agree to rounding
// (~1e-15 relative per step), not bit for bit.
//
// Batches (vmap): every argument arrives with the batch's leading axes (broadcast_all); each
// member is run by one thread from start to end, members split over XLA's intra-op thread pool,
// so a member's numbers do not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <typename T>
struct Vec {
  static constexpr int kLanes = 32 / sizeof(T);  // one 256-bit register
  typedef T type __attribute__((vector_size(32)));
};

template <typename T>
inline typename Vec<T>::type vload(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void vstore(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
inline T hsum(typename Vec<T>::type v) {
  T s = v[0];
  for (int q = 1; q < Vec<T>::kLanes; ++q) s += v[q];
  return s;
}

struct Config {
  int64_t record_every;
  bool last_trained;
  double diverge_factor;
  double spike_rtol;
};

// One member's buffers (the outputs; inputs already copied in where not aliased).
template <typename T>
struct MemberIO {
  int64_t n, no, lcap, nk, nrec;
  int32_t n_hidden;
  T* first;            // (R, n)
  T* hidden;           // (lcap, R, R)
  T* last;             // (no, R)
  const T* lam;        // (n,)
  const T* s31;        // (no, n)
  const T* u;          // (no, nk)
  const T* v;          // (n, nk)
  int32_t* ints;       // step, cross_step, diverged, diverge_step, spikes, first_spike, limit
  T* reals;            // loss0, loss_prev, max_rise, lr, threshold, tr33
  T* rec_loss;         // (nrec,)
  T* rec_modes;        // (nrec, nk)
};

// Small matrices (S, Q, buf, the last core, a hidden core) are held with rows padded to RP = NV
// vectors (zeros in the padding), so that their products are whole-vector multiply-adds.
template <typename T, int R>
struct Small {
  static constexpr int VL = Vec<T>::kLanes;
  static constexpr int NV = (R + VL - 1) / VL;  // vectors per row
  static constexpr int RP = NV * VL;            // padded row length
};

// out (no x R) = a (no x R) @ h (R x R) on padded rows, summing over k in ascending order (as
// compressed._mm does). Two rows of a at a time (independent chains).
template <typename T, int R>
inline void mul_right(const T* __restrict a, const T* __restrict h, T* __restrict out, int64_t no) {
  using V = typename Vec<T>::type;
  constexpr int VL = Small<T, R>::VL, NV = Small<T, R>::NV, RP = Small<T, R>::RP;
  int64_t o = 0;
  for (; o + 2 <= no; o += 2) {
    const T* a0 = a + o * RP;
    const T* a1 = a0 + RP;
    V acc0[NV], acc1[NV];
    for (int v = 0; v < NV; ++v) {
      const V hv = vload(h + v * VL);
      acc0[v] = a0[0] * hv;
      acc1[v] = a1[0] * hv;
    }
    for (int k = 1; k < R; ++k)
      for (int v = 0; v < NV; ++v) {
        const V hv = vload(h + k * RP + v * VL);
        acc0[v] += a0[k] * hv;
        acc1[v] += a1[k] * hv;
      }
    for (int v = 0; v < NV; ++v) {
      vstore(out + o * RP + v * VL, acc0[v]);
      vstore(out + (o + 1) * RP + v * VL, acc1[v]);
    }
  }
  for (; o < no; ++o) {
    const T* a0 = a + o * RP;
    V acc0[NV];
    for (int v = 0; v < NV; ++v) acc0[v] = a0[0] * vload(h + v * VL);
    for (int k = 1; k < R; ++k)
      for (int v = 0; v < NV; ++v) acc0[v] += a0[k] * vload(h + k * RP + v * VL);
    for (int v = 0; v < NV; ++v) vstore(out + o * RP + v * VL, acc0[v]);
  }
}

// h (R x R, padded rows) -= lr * s^T q with s, q (no x R, padded rows), summing over o in
// ascending order; two rows of h at a time.
template <typename T, int R>
inline void update_hidden(T* __restrict h, const T* __restrict s, const T* __restrict q, T lr, int64_t no) {
  using V = typename Vec<T>::type;
  constexpr int VL = Small<T, R>::VL, NV = Small<T, R>::NV, RP = Small<T, R>::RP;
  int k = 0;
  for (; k + 2 <= R; k += 2) {
    V acc0[NV], acc1[NV];
    for (int v = 0; v < NV; ++v) {
      const V qv = vload(q + v * VL);
      acc0[v] = s[k] * qv;
      acc1[v] = s[k + 1] * qv;
    }
    for (int64_t o = 1; o < no; ++o)
      for (int v = 0; v < NV; ++v) {
        const V qv = vload(q + o * RP + v * VL);
        acc0[v] += s[o * RP + k] * qv;
        acc1[v] += s[o * RP + k + 1] * qv;
      }
    for (int v = 0; v < NV; ++v) {
      vstore(h + k * RP + v * VL, vload(h + k * RP + v * VL) - lr * acc0[v]);
      vstore(h + (k + 1) * RP + v * VL, vload(h + (k + 1) * RP + v * VL) - lr * acc1[v]);
    }
  }
  if (k < R) {
    V acc0[NV];
    for (int v = 0; v < NV; ++v) acc0[v] = s[k] * vload(q + v * VL);
    for (int64_t o = 1; o < no; ++o)
      for (int v = 0; v < NV; ++v) acc0[v] += s[o * RP + k] * vload(q + o * RP + v * VL);
    for (int v = 0; v < NV; ++v) vstore(h + k * RP + v * VL, vload(h + k * RP + v * VL) - lr * acc0[v]);
  }
}

// NaN-propagating maximum (jnp.maximum).
template <typename T>
inline T nan_max(T a, T b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
  return a > b ? a : b;
}

constexpr int kOTile = 5;        // rows of W per tile (accumulators in registers)
constexpr int64_t kChunk = 16;   // column blocks per chunk (its F and G stay in L1 for C)

// W, G and the loss sums for rows o0 .. o0+OT-1 of column block b.
template <typename T, int R, int OT>
inline void w_tile(const typename Vec<T>::type* __restrict f, const T* __restrict s0, const typename Vec<T>::type lv,
                   const typename Vec<T>::type* __restrict sv, typename Vec<T>::type* __restrict g,
                   typename Vec<T>::type* __restrict w_out, typename Vec<T>::type& e1, typename Vec<T>::type& e2) {
  using V = typename Vec<T>::type;
  constexpr int RP = Small<T, R>::RP;
  V acc[OT];
  for (int t = 0; t < OT; ++t) acc[t] = s0[t * RP] * f[0];
  for (int k = 1; k < R; ++k) {
    const V fk = f[k];
    for (int t = 0; t < OT; ++t) acc[t] += s0[t * RP + k] * fk;
  }
  for (int t = 0; t < OT; ++t) {
    if (w_out) w_out[t] = acc[t];
    e1 += acc[t] * sv[t];
    e2 += acc[t] * acc[t] * lv;
    g[t] = acc[t] * lv - sv[t];
  }
}

// C[o0..o0+OT-1][K0..K0+KT-1] += sum over the chunk's blocks of G[o] * F[k] (lane-wise), then the
// next tile of k.
template <typename T, int R, int OT, int K0>
inline void c_tiles(const typename Vec<T>::type* __restrict f, const typename Vec<T>::type* __restrict g, int64_t nblk,
                    int64_t no, int64_t o0, typename Vec<T>::type* __restrict cacc) {
  if constexpr (K0 < R) {
    using V = typename Vec<T>::type;
    constexpr int KT = (R - K0) < 5 ? (R - K0) : 5;
    V acc[OT][KT];
    for (int t = 0; t < OT; ++t)
      for (int kk = 0; kk < KT; ++kk) acc[t][kk] = V{};
    for (int64_t b = 0; b < nblk; ++b) {
      V gv[OT];
      for (int t = 0; t < OT; ++t) gv[t] = g[b * no + o0 + t];
      for (int kk = 0; kk < KT; ++kk) {
        const V fk = f[b * R + K0 + kk];
        for (int t = 0; t < OT; ++t) acc[t][kk] += gv[t] * fk;
      }
    }
    for (int t = 0; t < OT; ++t)
      for (int kk = 0; kk < KT; ++kk) cacc[(o0 + t) * R + K0 + kk] += acc[t][kk];
    c_tiles<T, R, OT, K0 + KT>(f, g, nblk, no, o0, cacc);
  }
}

template <typename T, int R>
void run_member(const Config& cfg, const MemberIO<T>& io) {
  using V = typename Vec<T>::type;
  constexpr int VL = Vec<T>::kLanes;
  constexpr int NV = Small<T, R>::NV, RP = Small<T, R>::RP;
  const int64_t n = io.n, no = io.no, nk = io.nk, nrec = io.nrec;
  const int64_t L = io.n_hidden;
  const int64_t nb = (n + VL - 1) / VL, npad = nb * VL;

  int32_t step = io.ints[0], cross_step = io.ints[1], diverged = io.ints[2], diverge_step = io.ints[3];
  int32_t spikes = io.ints[4], first_spike = io.ints[5];
  const int32_t limit = io.ints[6];
  const T loss0 = io.reals[0];
  T loss_prev = io.reals[1], max_rise = io.reals[2];
  const T lr = io.reals[3], threshold = io.reals[4], tr33 = io.reals[5];
  const T dfac = static_cast<T>(cfg.diverge_factor), rtol = static_cast<T>(cfg.spike_rtol);
  const T div_at = dfac * std::abs(loss0) + static_cast<T>(1e-30);

  auto done = [&] { return cross_step >= 0 || diverged != 0 || step >= limit; };
  if (done()) return;

  // panels (see the header): block b holds rows 0..R-1 (or 0..no-1) of columns b*VL .. b*VL+VL-1
  std::vector<V> fpan[2] = {std::vector<V>(nb * R), std::vector<V>(nb * R)};
  std::vector<V> span(nb * no), wpan(nrec > 0 ? nb * no : 0), lpan(nb);
  {
    std::vector<T> col(npad, T(0));
    for (int64_t k = 0; k < R; ++k) {
      std::copy(io.first + k * n, io.first + (k + 1) * n, col.begin());
      for (int64_t b = 0; b < nb; ++b) fpan[0][b * R + k] = vload(col.data() + b * VL);
    }
    for (int64_t o = 0; o < no; ++o) {
      std::copy(io.s31 + o * n, io.s31 + (o + 1) * n, col.begin());
      for (int64_t b = 0; b < nb; ++b) span[b * no + o] = vload(col.data() + b * VL);
    }
    std::copy(io.lam, io.lam + n, col.begin());
    for (int64_t b = 0; b < nb; ++b) lpan[b] = vload(col.data() + b * VL);
  }
  int cur = 0;

  // small matrices with padded rows
  std::vector<V> last_v(no * NV), buf_v(std::max<int64_t>(L, 1) * no * NV), sa_v(no * NV), sb_v(no * NV);
  T* last = reinterpret_cast<T*>(last_v.data());
  T* buf = reinterpret_cast<T*>(buf_v.data());
  for (int64_t o = 0; o < no; ++o) std::copy(io.last + o * R, io.last + (o + 1) * R, last + o * RP);
  // the hidden cores in use, with padded rows, for the whole run (written back at the end)
  std::vector<V> hid_v(std::max<int64_t>(L, 1) * R * NV);
  T* hid = reinterpret_cast<T*>(hid_v.data());
  for (int64_t j = 0; j < L; ++j)
    for (int a = 0; a < R; ++a)
      std::copy(io.hidden + (j * R + a) * R, io.hidden + (j * R + a + 1) * R, hid + (j * R + a) * RP);
  V ht_v[R * NV];
  T* ht = reinterpret_cast<T*>(ht_v);
  for (int i = 0; i < R * NV; ++i) ht_v[i] = V{};
  std::vector<V> cacc(no * R), gchunk(kChunk * no);
  std::vector<T> modes_x(no * nk);

  while (!done()) {
    const bool rec_step = nrec > 0 && step % cfg.record_every == 0 && step / cfg.record_every < nrec;
    // suffix products
    T* s = reinterpret_cast<T*>(sa_v.data());
    T* s_next = reinterpret_cast<T*>(sb_v.data());
    std::copy(last, last + no * RP, s);
    for (int64_t j = L - 1; j >= 0; --j) {
      std::copy(s, s + no * RP, buf + j * no * RP);
      mul_right<T, R>(s, hid + j * R * RP, s_next, no);
      std::swap(s, s_next);
    }
    const T* s0 = s;
    // one pass over the column blocks, chunk by chunk: W, E, G, the next first core, C
    V e1 = V{}, e2 = V{};
    for (int64_t i = 0; i < no * R; ++i) cacc[i] = V{};
    const V* fcur = fpan[cur].data();
    V* fnext = fpan[1 - cur].data();
    for (int64_t c0 = 0; c0 < nb; c0 += kChunk) {
      const int64_t c1 = std::min(nb, c0 + kChunk);
      for (int64_t b = c0; b < c1; ++b) {
        const V* f = fcur + b * R;
        const V lv = lpan[b];
        V* g = gchunk.data() + (b - c0) * no;
        const V* sv = span.data() + b * no;
        V* w_out = rec_step ? wpan.data() + b * no : nullptr;
        int64_t o = 0;
        for (; o + kOTile <= no; o += kOTile)
          w_tile<T, R, kOTile>(f, s0 + o * RP, lv, sv + o, g + o, w_out ? w_out + o : nullptr, e1, e2);
        switch (no - o) {
          case 4: w_tile<T, R, 4>(f, s0 + o * RP, lv, sv + o, g + o, w_out ? w_out + o : nullptr, e1, e2); break;
          case 3: w_tile<T, R, 3>(f, s0 + o * RP, lv, sv + o, g + o, w_out ? w_out + o : nullptr, e1, e2); break;
          case 2: w_tile<T, R, 2>(f, s0 + o * RP, lv, sv + o, g + o, w_out ? w_out + o : nullptr, e1, e2); break;
          case 1: w_tile<T, R, 1>(f, s0 + o * RP, lv, sv + o, g + o, w_out ? w_out + o : nullptr, e1, e2); break;
          default: break;
        }
        // F' = F - lr S0^T G (sum over o ascending)
        V acc[R];
        for (int k = 0; k < R; ++k) acc[k] = s0[k] * g[0];
        for (int64_t oo = 1; oo < no; ++oo) {
          const V gv = g[oo];
          for (int k = 0; k < R; ++k) acc[k] += s0[oo * RP + k] * gv;
        }
        for (int k = 0; k < R; ++k) fnext[b * R + k] = f[k] - lr * acc[k];
      }
      // C += G F^T over the chunk (F and G in L1), in register tiles of 2 rows of G x 5 of F
      const V* fch = fcur + c0 * R;
      int64_t o = 0;
      for (; o + 2 <= no; o += 2) c_tiles<T, R, 2, 0>(fch, gchunk.data(), c1 - c0, no, o, cacc.data());
      if (o < no) c_tiles<T, R, 1, 0>(fch, gchunk.data(), c1 - c0, no, o, cacc.data());
    }
    const T e = T(0.5) * tr33 - hsum<T>(e1) + T(0.5) * hsum<T>(e2);

    const bool bad = !std::isfinite(e) || e > div_at;
    const bool crossed = e < threshold && !bad;
    const T rise = step > 0 ? e / loss_prev - T(1) : T(0);
    const bool spike = rise > rtol && !bad && !crossed;
    const bool stop = bad || crossed;

    if (!stop) {
      cur = 1 - cur;
      // Q = C = G F^T (old F), then the hidden cores in place and Q = Q H^T (old H)
      T* q = reinterpret_cast<T*>(sa_v.data());  // S0 is no longer needed: its scratch holds Q
      T* q_next = reinterpret_cast<T*>(sb_v.data());
      for (int64_t oo = 0; oo < no; ++oo)
        for (int k = 0; k < R; ++k) q[oo * RP + k] = hsum<T>(cacc[oo * R + k]);
      for (int64_t j = 0; j < L; ++j) {
        T* h = hid + j * R * RP;
        for (int a = 0; a < R; ++a)
          for (int c = 0; c < R; ++c) ht[c * RP + a] = h[a * RP + c];
        update_hidden<T, R>(h, buf + j * no * RP, q, lr, no);
        mul_right<T, R>(q, ht, q_next, no);
        std::swap(q, q_next);
      }
      if (cfg.last_trained)
        for (int64_t oo = 0; oo < no; ++oo)
          for (int k = 0; k < R; ++k) last[oo * RP + k] = last[oo * RP + k] - lr * q[oo * RP + k];
    }

    if (rec_step && !bad) {
      const int64_t ri = step / cfg.record_every;
      io.rec_loss[ri] = e;
      if (nk > 0) {
        // modes[m] = sum_o u[o, m] sum_j W[o, j] v[j, m]
        std::fill(modes_x.begin(), modes_x.end(), T(0));
        for (int64_t b = 0; b < nb; ++b)
          for (int64_t oo = 0; oo < no; ++oo) {
            const V w = wpan[b * no + oo];
            for (int l = 0; l < VL && b * VL + l < n; ++l) {
              const T* vj = io.v + (b * VL + l) * nk;
              const T wl = w[l];
              for (int64_t m = 0; m < nk; ++m) modes_x[oo * nk + m] += wl * vj[m];
            }
          }
        for (int64_t m = 0; m < nk; ++m) {
          T acc = 0;
          for (int64_t oo = 0; oo < no; ++oo) acc += io.u[oo * nk + m] * modes_x[oo * nk + m];
          io.rec_modes[ri * nk + m] = acc;
        }
      }
    }

    if (crossed) cross_step = step;
    if (bad) {
      diverged = 1;
      diverge_step = step;
    }
    if (spike) {
      ++spikes;
      if (first_spike < 0) first_spike = step;
    }
    max_rise = nan_max(max_rise, stop ? T(0) : rise);
    loss_prev = e;
    if (!stop) ++step;
  }

  // write back: the first core out of its panel, the last core, the scalars
  {
    std::vector<T> col(npad);
    for (int64_t k = 0; k < R; ++k) {
      for (int64_t b = 0; b < nb; ++b) vstore(col.data() + b * VL, fpan[cur][b * R + k]);
      std::copy(col.begin(), col.begin() + n, io.first + k * n);
    }
  }
  for (int64_t o = 0; o < no; ++o) std::copy(last + o * RP, last + o * RP + R, io.last + o * R);
  for (int64_t j = 0; j < L; ++j)
    for (int a = 0; a < R; ++a)
      std::copy(hid + (j * R + a) * RP, hid + (j * R + a) * RP + R, io.hidden + (j * R + a) * R);
  io.ints[0] = step;
  io.ints[1] = cross_step;
  io.ints[2] = diverged;
  io.ints[3] = diverge_step;
  io.ints[4] = spikes;
  io.ints[5] = first_spike;
  io.reals[1] = loss_prev;
  io.reals[2] = max_rise;
}

// One library per (precision, rank) is built on demand (compressed.py, -DDLNJAX_RANK=r
// -DDLNJAX_FLOAT=32|64): one instantiation compiles in ~5 s where all 32 take ~40 s.
#ifdef DLNJAX_RANK
#define DLNJAX_RANKS(X) X(DLNJAX_RANK)
#else
#define DLNJAX_RANKS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#endif

template <typename T>
using MemberFn = void (*)(const Config&, const MemberIO<T>&);

template <typename T>
MemberFn<T> member_fn(int64_t r) {
  switch (r) {
#define CASE(K) \
  case K:       \
    return &run_member<T, K>;
    DLNJAX_RANKS(CASE)
#undef CASE
    default:
      return nullptr;
  }
}

struct Shared {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

// f(b) for every member b, each on one thread: this one and, when there are several members, the
// helpers of XLA's intra-op pool. Members are claimed from a shared counter, so a helper that
// starts late finds nothing left and the caller never waits on one that has not started.
template <typename F>
void for_each_member(ffi::ThreadPool* pool, int64_t batch, const F& f) {
  const int64_t helpers = pool ? std::min<int64_t>(pool->num_threads(), batch) - 1 : 0;
  if (helpers <= 0) {
    for (int64_t b = 0; b < batch; ++b) f(b);
    return;
  }
  auto shared = std::make_shared<Shared>();
  const F* fp = &f;
  auto worker = [shared, fp, batch]() {
    for (;;) {
      const int64_t b = shared->next.fetch_add(1);
      if (b >= batch) return;
      (*fp)(b);
      shared->done.fetch_add(1);
    }
  };
  for (int64_t t = 0; t < helpers; ++t) pool->Schedule(decltype(worker)(worker));
  worker();
  while (shared->done.load() < batch) std::this_thread::yield();
}

inline int64_t dim(const ffi::AnyBuffer& b, int from_end) {
  auto d = b.dimensions();
  return d[d.size() - from_end];
}

inline int64_t batch_of(const ffi::AnyBuffer& buf, size_t member_rank) {
  auto d = buf.dimensions();
  int64_t b = 1;
  for (size_t i = 0; i + member_rank < d.size(); ++i) b *= d[i];
  return b;
}

template <typename U>
inline U* at(const ffi::AnyBuffer& buf, int64_t b, int64_t per) {
  return reinterpret_cast<U*>(buf.untyped_data()) + b * per;
}

// The output of member b, holding the input's values (copied unless XLA aliased the two).
template <typename U>
inline U* inout(const ffi::AnyBuffer& in, ffi::Result<ffi::AnyBuffer>& out, int64_t b, int64_t per) {
  U* dst = at<U>(*out, b, per);
  const U* src = at<U>(in, b, per);
  if (dst != src && per > 0) std::memcpy(dst, src, per * sizeof(U));
  return dst;
}

template <typename T>
ffi::Error compressed_run(ffi::ThreadPool pool, ffi::AnyBuffer first, ffi::AnyBuffer hidden, ffi::AnyBuffer last,
                          ffi::AnyBuffer n_hidden, ffi::AnyBuffer lam, ffi::AnyBuffer s31, ffi::AnyBuffer u,
                          ffi::AnyBuffer v, ffi::AnyBuffer ints, ffi::AnyBuffer reals, ffi::AnyBuffer rec_loss,
                          ffi::AnyBuffer rec_modes, ffi::Result<ffi::AnyBuffer> first_out,
                          ffi::Result<ffi::AnyBuffer> hidden_out, ffi::Result<ffi::AnyBuffer> last_out,
                          ffi::Result<ffi::AnyBuffer> ints_out, ffi::Result<ffi::AnyBuffer> reals_out,
                          ffi::Result<ffi::AnyBuffer> rec_loss_out, ffi::Result<ffi::AnyBuffer> rec_modes_out,
                          int64_t record_every, int64_t last_trained, double diverge_factor, double spike_rtol) {
  if (first.dimensions().size() < 2 || hidden.dimensions().size() < 3 || last.dimensions().size() < 2 ||
      s31.dimensions().size() < 2 || u.dimensions().size() < 2 || v.dimensions().size() < 2 ||
      ints.dimensions().size() < 1 || reals.dimensions().size() < 1 || rec_loss.dimensions().size() < 1 ||
      rec_modes.dimensions().size() < 2)
    return ffi::Error::InvalidArgument("compressed_run: arguments of too low rank");
  const int64_t r = dim(first, 2), n = dim(first, 1), lcap = dim(hidden, 3), no = dim(last, 2);
  const int64_t nk = dim(u, 1), nrec = dim(rec_loss, 1);
  if (dim(hidden, 2) != r || dim(hidden, 1) != r || dim(last, 1) != r || dim(s31, 2) != no || dim(s31, 1) != n ||
      dim(lam, 1) != n || dim(u, 2) != no || dim(v, 2) != n || dim(v, 1) != nk || dim(ints, 1) != 7 ||
      dim(reals, 1) != 6 || dim(rec_modes, 2) != nrec || dim(rec_modes, 1) != nk)
    return ffi::Error::InvalidArgument("compressed_run: inconsistent shapes");
  if (record_every < 1) return ffi::Error::InvalidArgument("compressed_run: record_every must be >= 1");
  MemberFn<T> fn = member_fn<T>(r);
  if (!fn) return ffi::Error::InvalidArgument("compressed_run: rank r must be 1..16");
  const int64_t batch = batch_of(first, 2);
  const int32_t* nh = reinterpret_cast<const int32_t*>(n_hidden.untyped_data());
  for (int64_t b = 0; b < batch; ++b)
    if (nh[b] < 0 || nh[b] > lcap) return ffi::Error::InvalidArgument("compressed_run: n_hidden outside [0, L_cap]");
  const Config cfg{record_every, last_trained != 0, diverge_factor, spike_rtol};
  for_each_member(&pool, batch, [&](int64_t b) {
    MemberIO<T> io;
    io.n = n;
    io.no = no;
    io.lcap = lcap;
    io.nk = nk;
    io.nrec = nrec;
    io.n_hidden = nh[b];
    io.first = inout<T>(first, first_out, b, r * n);
    io.hidden = inout<T>(hidden, hidden_out, b, lcap * r * r);
    io.last = inout<T>(last, last_out, b, no * r);
    io.lam = at<const T>(lam, b, n);
    io.s31 = at<const T>(s31, b, no * n);
    io.u = at<const T>(u, b, no * nk);
    io.v = at<const T>(v, b, n * nk);
    io.ints = inout<int32_t>(ints, ints_out, b, 7);
    io.reals = inout<T>(reals, reals_out, b, 6);
    io.rec_loss = inout<T>(rec_loss, rec_loss_out, b, nrec);
    io.rec_modes = inout<T>(rec_modes, rec_modes_out, b, nrec * nk);
    fn(cfg, io);
  });
  return ffi::Error::Success();
}

}  // namespace

#define DLNJAX_COMPRESSED_RUN_BINDING                                                                     \
  ffi::Ffi::Bind()                                                                                        \
      .Ctx<ffi::ThreadPool>()                                                                             \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Arg<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Ret<ffi::AnyBuffer>()                                                                              \
      .Attr<int64_t>("record_every")                                                                      \
      .Attr<int64_t>("last_trained")                                                                      \
      .Attr<double>("diverge_factor")                                                                     \
      .Attr<double>("spike_rtol")

#if !defined(DLNJAX_FLOAT) || DLNJAX_FLOAT == 32
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxCompressedRunF32, compressed_run<float>, DLNJAX_COMPRESSED_RUN_BINDING);
#endif
#if !defined(DLNJAX_FLOAT) || DLNJAX_FLOAT == 64
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxCompressedRunF64, compressed_run<double>, DLNJAX_COMPRESSED_RUN_BINDING);
#endif
