// Fused CPU kernels for one full-batch gradient step of a deep linear network on its sufficient
// statistics (dlnjax.linear, Eq. 13 of Saxe et al. 2014), for the case where the output side is
// the narrow one (r = N_out rows, r <= 16).
//
// With P_l = W_N ... W_l (r x n_l) and G = W_tot Sigma11 - Sigma31 (r x n_1):
//   dE/dW_l = P_{l+1}^T M_l,   M_1 = G,   M_{l+1} = M_l W_l^T   (P_{N+1} = I_r).
//
// dlnjax_top_down:  reads every W once (from the output side) and returns P_1 ... P_{N-1}.
// dlnjax_bottom_up: reads every W once more and writes it once (from the input side): each row
//                   of W_l is loaded, used for its entries of M_{l+1} (old weights) and updated
//                   in registers, W_l <- W_l - lr P_{l+1}^T M_l, then stored (in place when XLA
//                   aliases the result to the argument).
// So a step moves 3 x (bytes of the weights), the memory roofline of benchmarks/linear_step.py.
//
// Work inside a layer is split over XLA's intra-op thread pool (or, where XLA hands none over or
// DLNJAX_NATIVE_POOL=own, a small pool of our own) by disjoint chunks of rows. Bottom-up, every
// row is one thread's; top-down, each chunk of rows gives a partial product and the partials are
// summed in chunk order, with a chunking that depends on the layer's size only. So the results
// do not depend on the thread count or on scheduling (bit-reproducible). Under vmap, when the
// batch fills the pool, each thread runs whole members alone instead (for_each_member): the same
// loops, in the same order, so the same bits.
//
// Layout choices that mattered (measured on 2 cores, 1000 hidden units): software prefetch of
// the rows ahead (the hardware prefetchers do not follow several row streams), columns in blocks
// of 1 KiB so that the r rows of M_l / of the partial product stay in L1 while W streams past,
// padded leading dimensions for that scratch, two interleaved FMA chains per vector, scratch
// aligned to cache lines, and each vector of M loaded once per use in the update (in_register).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <sched.h>
#include <unistd.h>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Scratch aligned to a cache line: the r rows of M_l and of the partial products are read (and
// written) at every column, and a 64-byte vector load that straddles two lines costs two; with
// malloc's 16-byte alignment every load did (one thread, data in L2, 1000 columns: the update
// loop 1.25x and the product loop 1.2x slower at a 16-byte offset; measured).
template <typename T>
struct LineAligned {
  typedef T value_type;
  LineAligned() = default;
  template <typename U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const LineAligned&) const { return true; }
  bool operator!=(const LineAligned&) const { return false; }
};

template <typename T>
using Scratch = std::vector<T, LineAligned<T>>;

template <typename T>
struct Vec {
  static constexpr int kLanes = 64 / sizeof(T);  // one 512-bit register (two 256-bit on AVX2)
  typedef T type __attribute__((vector_size(64)));
};

// A vector of N lanes (the tails of rows shorter than a full vector: half and quarter vectors
// instead of scalar loops, which cost ~10% on 1000-wide rows).
template <typename T, int N>
struct VecN {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};

template <typename V, typename T>
inline V load_as(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

// Pins a loaded vector to a register. Without it GCC folds each load of M into both FMAs that
// use it (the dot product and the update), so the update loop issued twice the loads and was
// load-port bound (1.15x slower in L2, 1.05x for the whole bottom-up pass; measured). Only where
// the vector is one register (AVX-512); elsewhere a no-op.
template <typename V>
inline void in_register(V& v) {
#if defined(__AVX512F__) && defined(__GNUC__)
  if constexpr (sizeof(V) == 64) asm("" : "+v"(v));
#else
  (void)v;
#endif
}

template <typename T>
inline T hsum(typename Vec<T>::type v) {
  T s = 0;
  for (int q = 0; q < Vec<T>::kLanes; ++q) s += v[q];
  return s;
}

// A small persistent pool of worker threads (one per CPU this process may use, minus the caller;
// $DLNJAX_NATIVE_THREADS overrides). Workers spin briefly between jobs (the layers of a step follow
// each other within microseconds) and then sleep. Work is handed out as chunks claimed from an atomic
// counter, and the caller claims chunks too, so a job finishes even if no worker ever wakes up.
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static destruction
    if (pool->pid_ != getpid()) pool = new Pool();  // after fork(): the threads did not survive
    return *pool;
  }

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  template <typename F>
  void run(int64_t n_chunks, const F& f) {
    if (workers_.empty() || n_chunks <= 1) {
      for (int64_t c = 0; c < n_chunks; ++c) f(c);
      return;
    }
    std::lock_guard<std::mutex> one_job_at_a_time(run_mu_);
    Job job;
    job.n = n_chunks;
    job.call = [](const void* fp, int64_t c) { (*static_cast<const F*>(fp))(c); };
    job.f = &f;
    current_.store(&job);
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    work(&job);
    while (job.done.load() < n_chunks) spin_pause();
    current_.store(nullptr);
    while (inside_.load() != 0) spin_pause();
  }

 private:
  struct Job {
    int64_t n = 0;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    void (*call)(const void*, int64_t) = nullptr;
    const void* f = nullptr;
  };

  static void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
  }

  static void work(Job* job) {
    for (;;) {
      int64_t c = job->next.fetch_add(1);
      if (c >= job->n) return;
      job->call(job->f, c);
      job->done.fetch_add(1);
    }
  }

  Pool() : pid_(getpid()) {
    int n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
    if (const char* e = std::getenv("DLNJAX_NATIVE_THREADS")) n = std::max(1, std::atoi(e));
    for (int t = 1; t < n; ++t) workers_.emplace_back([this] { loop(); });
    for (auto& w : workers_) w.detach();
  }

  void loop() {
    uint64_t seen = gen_.load();
    for (;;) {
      // spin for a while (~50 us), then sleep until the next job
      int spins = 0;
      while (gen_.load() == seen && spins < 20000) {
        spin_pause();
        ++spins;
      }
      if (gen_.load() == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return gen_.load() != seen; });
      }
      seen = gen_.load();
      inside_.fetch_add(1);
      Job* job = current_.load();
      if (job) work(job);
      inside_.fetch_sub(1);
    }
  }

  pid_t pid_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<Job*> current_{nullptr};
  std::atomic<int> inside_{0};
};

// XLA's intra-op thread pool, when the handler got one (set per call; see the handlers below).
thread_local ffi::ThreadPool* tls_xla_pool = nullptr;

struct Shared {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

bool use_xla_pool() {
  static const bool own = [] {
    const char* e = std::getenv("DLNJAX_NATIVE_POOL");
    return e && std::string(e) == "own";
  }();
  return !own && tls_xla_pool && tls_xla_pool->num_threads() > 1;
}

int64_t pool_threads() { return use_xla_pool() ? tls_xla_pool->num_threads() : Pool::get().threads(); }

// Set while a thread runs a whole batch member by itself (see for_each_member): the loops inside
// then run in order on that thread.
thread_local bool tls_serial = false;

// Run f(chunk) for every chunk in [0, n_chunks) on this thread and the pool's others. Chunks are
// claimed from a shared counter, so a pool task that starts late finds nothing left, and the
// caller never waits on a task that has not started (no deadlock when the pool is busy).
template <typename F>
void parallel_for(int64_t n_chunks, const F& f) {
  if (tls_serial) {
    for (int64_t c = 0; c < n_chunks; ++c) f(c);
    return;
  }
  if (!use_xla_pool()) {
    Pool::get().run(n_chunks, f);
    return;
  }
  ffi::ThreadPool* pool = tls_xla_pool;
  auto shared = std::make_shared<Shared>();
  const F* fp = &f;
  auto worker = [shared, fp, n_chunks]() {
    for (;;) {
      int64_t c = shared->next.fetch_add(1);
      if (c >= n_chunks) return;
      (*fp)(c);
      shared->done.fetch_add(1);
    }
  };
  const int64_t helpers = std::min<int64_t>(pool->num_threads(), n_chunks) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool->Schedule(decltype(worker)(worker));
  worker();
  while (shared->done.load() < n_chunks) std::this_thread::yield();
}

// Columns per block: the r rows of a block of M_l or of the partial product (r x kBlock, 10 KiB for
// r = 10 in float32) stay in L1 while the rows of W stream past them.
constexpr int64_t kBlockBytes = 1024;
constexpr int64_t kGroup = 16;  // rows of W per group (all column blocks of a group, then the next)

// Columns [j, b1) of out[k, :] += sum_q c[q][k] w_q[:] (Q rows), N lanes at a time while they
// fit; returns the first column left.
template <typename T, int R, int Q, int N>
inline int64_t product_tail(const T (*c)[R], const T* const* wq, T* out, int64_t ldo, int64_t j, int64_t b1) {
  if constexpr (N >= 2) {
    using W = typename VecN<T, N>::type;
    for (; j + N <= b1; j += N) {
      W x[Q];
      for (int q = 0; q < Q; ++q) x[q] = load_as<W>(wq[q] + j);
#pragma GCC unroll 16
      for (int k = 0; k < R; ++k) {
        W acc = load_as<W>(out + k * ldo + j);
        for (int q = 0; q < Q; ++q) acc += c[q][k] * x[q];
        std::memcpy(out + k * ldo + j, &acc, sizeof(acc));
      }
    }
  }
  return j;
}

template <typename T, int R, int Q>
inline void product_tails(const T (*c)[R], const T* const* wq, T* out, int64_t ldo, int64_t j, int64_t b1) {
  constexpr int L = Vec<T>::kLanes;
  j = product_tail<T, R, Q, L / 2>(c, wq, out, ldo, j, b1);
  j = product_tail<T, R, Q, L / 4>(c, wq, out, ldo, j, b1);
  for (; j < b1; ++j)
    for (int k = 0; k < R; ++k) {
      T acc = out[k * ldo + j];
      for (int q = 0; q < Q; ++q) acc += c[q][k] * wq[q][j];
      out[k * ldo + j] = acc;
    }
}

// Columns [j, b1) of one row of the fused update (see update_rows), N lanes at a time while they
// fit; the dot products go to tail[k]. Returns the first column left.
template <typename T, int R, int N>
inline int64_t update_tail(const T* s, T* d, const T* m, int64_t ldm, const T* cs, T* tail, int64_t j, int64_t b1) {
  if constexpr (N >= 2) {
    using W = typename VecN<T, N>::type;
    if (j + N > b1) return j;
    W dot[R];
    for (int k = 0; k < R; ++k) dot[k] = W{};
    for (; j + N <= b1; j += N) {
      W x = load_as<W>(s + j), u = x;
#pragma GCC unroll 16
      for (int k = 0; k < R; ++k) {
        W mk = load_as<W>(m + k * ldm + j);
        dot[k] += x * mk;
        u -= cs[k] * mk;
      }
      std::memcpy(d + j, &u, sizeof(u));
    }
    for (int k = 0; k < R; ++k)
      for (int q = 0; q < N; ++q) tail[k] += dot[k][q];
  }
  return j;
}

template <typename T, int R>
inline void update_tails(const T* s, T* d, const T* m, int64_t ldm, const T* cs, T* tail, int64_t j, int64_t b1) {
  constexpr int L = Vec<T>::kLanes;
  j = update_tail<T, R, L / 2>(s, d, m, ldm, cs, tail, j, b1);
  j = update_tail<T, R, L / 4>(s, d, m, ldm, cs, tail, j, b1);
  for (; j < b1; ++j) {
    T x = s[j];
    T u = x;
    for (int k = 0; k < R; ++k) {
      T mk = m[k * ldm + j];
      tail[k] += x * mk;
      u -= cs[k] * mk;
    }
    d[j] = u;
  }
}

// out (r x n, leading dimension ldo) = a[:, i0:i1] @ w[i0:i1, :] with a (r x m), w (m x n): one
// chunk of rows of the product a @ w. Rows are taken in groups of kGroup; within a group, column
// block by column block, four rows at a time.
template <typename T, int R>
void product_rows(const T* a, const T* w, T* out, int64_t ldo, int64_t m, int64_t n, int64_t i0, int64_t i1) {
  constexpr int L = Vec<T>::kLanes;
  constexpr int64_t B = kBlockBytes / sizeof(T);
  using V = typename Vec<T>::type;
  for (int k = 0; k < R; ++k) std::fill(out + k * ldo, out + k * ldo + n, T(0));
  for (int64_t g0 = i0; g0 < i1; g0 += kGroup) {
    const int64_t g1 = std::min(i1, g0 + kGroup);
    for (int64_t b0 = 0; b0 < n; b0 += B) {
      const int64_t b1 = std::min(n, b0 + B);
      const int64_t bv = b0 + ((b1 - b0) / L) * L;
      int64_t i = g0;
      for (; i + 4 <= g1; i += 4) {
        T c[4][R];
        for (int q = 0; q < 4; ++q)
          for (int k = 0; k < R; ++k) c[q][k] = a[k * m + i + q];
        const T* w0 = w + (i + 0) * n;
        const T* w1 = w + (i + 1) * n;
        const T* w2 = w + (i + 2) * n;
        const T* w3 = w + (i + 3) * n;
        for (int64_t j = b0; j < bv; j += L) {
          // the same columns of the rows kGroup below (the next group), into L2
          __builtin_prefetch(w0 + kGroup * n + j, 0, 1);
          __builtin_prefetch(w1 + kGroup * n + j, 0, 1);
          __builtin_prefetch(w2 + kGroup * n + j, 0, 1);
          __builtin_prefetch(w3 + kGroup * n + j, 0, 1);
          V x0 = load<T>(w0 + j), x1 = load<T>(w1 + j), x2 = load<T>(w2 + j), x3 = load<T>(w3 + j);
#pragma GCC unroll 16
          for (int k = 0; k < R; ++k) {
            V acc = load<T>(out + k * ldo + j);
            acc += c[0][k] * x0;
            acc += c[1][k] * x1;
            acc += c[2][k] * x2;
            acc += c[3][k] * x3;
            store<T>(out + k * ldo + j, acc);
          }
        }
        const T* const wq[4] = {w0, w1, w2, w3};
        product_tails<T, R, 4>(c, wq, out, ldo, bv, b1);
      }
      for (; i < g1; ++i) {
        T c[1][R];
        for (int k = 0; k < R; ++k) c[0][k] = a[k * m + i];
        const T* w0 = w + i * n;
        for (int64_t j = b0; j < bv; j += L) {
          V x0 = load<T>(w0 + j);
#pragma GCC unroll 16
          for (int k = 0; k < R; ++k) {
            V acc = load<T>(out + k * ldo + j);
            acc += c[0][k] * x0;
            store<T>(out + k * ldo + j, acc);
          }
        }
        product_tails<T, R, 1>(c, &w0, out, ldo, bv, b1);
      }
    }
  }
}

// Leading dimension of the r-row scratch matrices (M_l, partial products): rows r * ld * sizeof(T)
// bytes apart, with ld * sizeof(T) = 192 (mod 4096), so the r rows read at the same column fall in
// different L1 sets and never 4K-alias each other or a store (rows exactly 4 KiB apart, as with
// 1024 floats, made these loops 3x slower).
template <typename T>
int64_t padded_ld(int64_t n) {
  const int64_t period = 4096 / sizeof(T), offset = 192 / sizeof(T);
  int64_t ld = (n / period) * period + offset;
  return ld >= n ? ld : ld + period;
}

// Rows [i0, i1) of W (n_out x n_in): mnext[k, i] = sum_j src[i, j] m[k, j] (if mnext), then
// dst[i, :] = src[i, :] - lr * sum_k coef[k, i] m[k, :] (coef = nullptr: the identity). Rows in
// groups of kGroup, column block by column block (the block of m stays in L1), with the partial
// dot products of the group's rows carried between blocks.
template <typename T, int R>
void update_rows(const T* src, T* dst, const T* m, int64_t ldm, const T* coef, T* mnext, int64_t ldn, T lr,
                 int64_t n_out, int64_t n_in, int64_t i0, int64_t i1) {
  constexpr int L = Vec<T>::kLanes;
  constexpr int64_t B = kBlockBytes / sizeof(T);
  using V = typename Vec<T>::type;
  V carried[kGroup][R];
  T tail[kGroup][R];
  for (int64_t g0 = i0; g0 < i1; g0 += kGroup) {
    const int64_t g1 = std::min(i1, g0 + kGroup);
    T cs[kGroup][R];
    for (int64_t i = g0; i < g1; ++i)
      for (int k = 0; k < R; ++k) {
        cs[i - g0][k] = lr * (coef ? coef[k * n_out + i] : T(k == i ? 1 : 0));
        carried[i - g0][k] = V{};
        tail[i - g0][k] = T(0);
      }
    for (int64_t b0 = 0; b0 < n_in; b0 += B) {
      const int64_t b1 = std::min(n_in, b0 + B);
      const int64_t bv2 = b0 + ((b1 - b0) / (2 * L)) * (2 * L);
      const int64_t bv = b0 + ((b1 - b0) / L) * L;
      for (int64_t i = g0; i < g1; ++i) {
        // the update's coefficients as vectors, broadcast once per row and block (in registers:
        // as scalars the compiler re-broadcast them and loaded each m twice, 1.25x slower)
        V c[R];
        for (int k = 0; k < R; ++k) c[k] = V{} + cs[i - g0][k];
        const T* s = src + i * n_in;
        T* d = dst + i * n_in;
        V dot[R];
        for (int k = 0; k < R; ++k) dot[k] = carried[i - g0][k];
        int64_t j = b0;
        for (; j < bv2; j += 2 * L) {
          // the same two cache lines of the row kGroup below (the next group), into L2
          __builtin_prefetch(s + kGroup * n_in + j, 1, 1);
          __builtin_prefetch(s + kGroup * n_in + j + L, 1, 1);
          V xa = load<T>(s + j), xb = load<T>(s + j + L);
          // the update's sum over k as two interleaved chains per vector (even / odd k)
          V ua0 = xa, ub0 = xb, ua1 = V{}, ub1 = V{};
#pragma GCC unroll 16
          for (int k = 0; k < R; ++k) {
            V ma = load<T>(m + k * ldm + j), mb = load<T>(m + k * ldm + j + L);
            in_register(ma);
            in_register(mb);
            dot[k] += xa * ma;
            dot[k] += xb * mb;
            if (k % 2 == 0) {
              ua0 -= c[k] * ma;
              ub0 -= c[k] * mb;
            } else {
              ua1 -= c[k] * ma;
              ub1 -= c[k] * mb;
            }
          }
          store<T>(d + j, ua0 + ua1);
          store<T>(d + j + L, ub0 + ub1);
        }
        for (; j < bv; j += L) {
          V x = load<T>(s + j);
          V u = x;
#pragma GCC unroll 16
          for (int k = 0; k < R; ++k) {
            V mk = load<T>(m + k * ldm + j);
            in_register(mk);
            dot[k] += x * mk;
            u -= c[k] * mk;
          }
          store<T>(d + j, u);
        }
        update_tails<T, R>(s, d, m, ldm, cs[i - g0], tail[i - g0], j, b1);
        for (int k = 0; k < R; ++k) carried[i - g0][k] = dot[k];
      }
    }
    if (mnext)
      for (int64_t i = g0; i < g1; ++i)
        for (int k = 0; k < R; ++k) mnext[k * ldn + i] = hsum<T>(carried[i - g0][k]) + tail[i - g0][k];
  }
}

constexpr int64_t kMinRowsPerChunk = 16;

int64_t n_chunks_for(int64_t items, int64_t min_items) {
  int64_t threads = pool_threads();
  return std::max<int64_t>(1, std::min<int64_t>(threads * 4, items / min_items));
}

// A buffer of shape (batch..., rows, cols): the matrix of member b (the batch comes from vmap).
struct Mat {
  int64_t rows = 0, cols = 0;
};

inline Mat mat_of(const ffi::AnyBuffer& buf) {
  auto d = buf.dimensions();
  const size_t k = d.size();
  return Mat{k >= 2 ? d[k - 2] : 1, k >= 1 ? d[k - 1] : 1};
}

inline int64_t batch_of(const ffi::AnyBuffer& buf, size_t matrix_rank) {
  auto d = buf.dimensions();
  int64_t b = 1;
  for (size_t i = 0; i + matrix_rank < d.size(); ++i) b *= d[i];
  return b;
}

template <typename T>
inline T* member(const ffi::AnyBuffer& buf, int64_t b) {
  const Mat m = mat_of(buf);
  return reinterpret_cast<T*>(buf.untyped_data()) + b * m.rows * m.cols;
}

// Rows per chunk of the top-down product. The chunking depends only on the layer's size (never on
// the thread count) and the partial products are summed in chunk order: bit-reproducible.
constexpr int64_t kTopDownChunkRows = 128;
constexpr int64_t kTopDownMaxChunks = 16;

// One member's network as pointers: layer l (0-based, input side first) is w[l] (dims[l].rows x
// dims[l].cols). The variadic kernels (a tuple of layers) and the stacked ones (first layer, a
// capacity stack of square hidden layers with a count, last layer) both run these.
template <typename T>
struct Layers {
  std::vector<const T*> w;  // the weights (read)
  std::vector<T*> out;      // top-down: P_{l+1} for l < n-1; bottom-up: the updated weights
  std::vector<Mat> dims;
  std::vector<const T*> coef;  // bottom-up: P_{l+2} for l < n-1 (the last layer's own weights for l = n-2)
};

template <typename T, int R>
void top_down_layers(const Layers<T>& L) {
  // P_N = W_N; P_{l+1} = P_{l+2} W_{l+1} written to out[l], from the output side
  const int64_t n = static_cast<int64_t>(L.w.size());
  const T* a = L.w[n - 1];
  Scratch<T> partial;
  for (int64_t l = n - 2; l >= 0; --l) {
    const int64_t m = L.dims[l].rows, cols = L.dims[l].cols;
    const T* wp = L.w[l];
    T* op = L.out[l];
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(kTopDownMaxChunks, m / kTopDownChunkRows));
    const int64_t per = (m + chunks - 1) / chunks;
    const int64_t ld = padded_ld<T>(cols), block = R * ld;
    partial.resize(static_cast<size_t>(chunks * block));
    T* part = partial.data();
    parallel_for(chunks, [&](int64_t c) {
      product_rows<T, R>(a, wp, part + c * block, ld, m, cols, c * per, std::min(m, (c + 1) * per));
    });
    // sum the partial products in chunk order (parallel over columns)
    const int64_t col_chunks = std::max<int64_t>(1, std::min<int64_t>(8, cols / 128));
    const int64_t cper = (cols + col_chunks - 1) / col_chunks;
    parallel_for(col_chunks, [&](int64_t cc) {
      const int64_t j0 = cc * cper, j1 = std::min(cols, (cc + 1) * cper);
      for (int k = 0; k < R; ++k)
        for (int64_t j = j0; j < j1; ++j) {
          T acc = part[k * ld + j];
          for (int64_t c = 1; c < chunks; ++c) acc += part[c * block + k * ld + j];
          op[k * cols + j] = acc;
        }
    });
    a = op;
  }
}

template <typename T, int R>
void bottom_up_layers(const Layers<T>& L, T lr, const T* gp) {
  // W_l <- W_l - lr P_{l+1}^T M_l from the input side, M_1 = G, M_{l+1} = M_l W_l^T (old weights)
  const int64_t n = static_cast<int64_t>(L.w.size());
  int64_t ldmax = 1;
  for (int64_t l = 0; l < n; ++l) ldmax = std::max(ldmax, padded_ld<T>(L.dims[l].cols));
  Scratch<T> mbuf[2] = {Scratch<T>(R * ldmax), Scratch<T>(R * ldmax)};
  const int64_t n1 = L.dims[0].cols;
  int64_t ldm = padded_ld<T>(n1);
  for (int k = 0; k < R; ++k) std::copy(gp + k * n1, gp + (k + 1) * n1, mbuf[1].data() + k * ldm);
  const T* m = mbuf[1].data();
  for (int64_t l = 0; l < n; ++l) {
    const T* coef = l < n - 1 ? L.coef[l] : nullptr;
    const int64_t rows = L.dims[l].rows, cols = L.dims[l].cols;
    const T* src = L.w[l];
    T* dst = L.out[l];
    T* mnext = (l < n - 1) ? mbuf[l % 2].data() : nullptr;
    const int64_t ldn = padded_ld<T>(rows);
    int64_t chunks = n_chunks_for(rows, kMinRowsPerChunk);
    int64_t per = (rows + chunks - 1) / chunks;
    parallel_for(chunks, [&](int64_t c) {
      int64_t i0 = c * per, i1 = std::min(rows, (c + 1) * per);
      if (i0 < i1) update_rows<T, R>(src, dst, m, ldm, coef, mnext, ldn, lr, rows, cols, i0, i1);
    });
    m = mnext;
    ldm = ldn;
  }
}

template <typename T>
inline T lr_of(const ffi::AnyBuffer& lr_buf, int64_t b) {
  return lr_buf.element_count() > 1 ? reinterpret_cast<const T*>(lr_buf.untyped_data())[b]
                                    : *reinterpret_cast<const T*>(lr_buf.untyped_data());
}

template <typename T, int R>
ffi::Error top_down(ffi::RemainingArgs args, ffi::RemainingRets rets, int64_t b) {
  // args: W_1 ... W_N; rets: P_1 ... P_{N-1}
  const int64_t n = static_cast<int64_t>(args.size());
  if (static_cast<int64_t>(rets.size()) != n - 1) return ffi::Error::InvalidArgument("top_down: expected N-1 results");
  Layers<T> L;
  for (int64_t l = 0; l < n; ++l) {
    auto w = args.get<ffi::AnyBuffer>(l);
    if (!w) return w.error();
    L.w.push_back(member<T>(*w, b));
    L.dims.push_back(mat_of(*w));
    if (l < n - 1) {
      auto out = rets.get<ffi::AnyBuffer>(l);
      if (!out) return out.error();
      L.out.push_back(member<T>(**out, b));
    }
  }
  top_down_layers<T, R>(L);
  return ffi::Error::Success();
}

template <typename T, int R>
ffi::Error bottom_up(ffi::AnyBuffer lr_buf, ffi::AnyBuffer g, ffi::RemainingArgs args, ffi::RemainingRets rets,
                     int64_t b) {
  // args: P_2 ... P_{N-1}, W_1 ... W_N (2N - 2 buffers); rets: W_1' ... W_N'. The factor of layer
  // N-1 is P_N = W_N itself, read before W_N is updated (the last layer is updated last).
  const int64_t n = static_cast<int64_t>(rets.size());
  if (n < 2 || static_cast<int64_t>(args.size()) != 2 * n - 2)
    return ffi::Error::InvalidArgument("bottom_up: expected 2N-2 arguments for N >= 2 layers");
  Layers<T> L;
  for (int64_t l = 0; l < n; ++l) {
    auto w = args.get<ffi::AnyBuffer>(n - 2 + l);
    auto out = rets.get<ffi::AnyBuffer>(l);
    if (!w) return w.error();
    if (!out) return out.error();
    L.w.push_back(member<T>(*w, b));
    L.out.push_back(member<T>(**out, b));
    L.dims.push_back(mat_of(*w));
    if (l < n - 1) {
      auto p = args.get<ffi::AnyBuffer>(l < n - 2 ? l : 2 * n - 3);
      if (!p) return p.error();
      L.coef.push_back(member<T>(*p, b));
    }
  }
  bottom_up_layers<T, R>(L, lr_of<T>(lr_buf, b), member<T>(g, b));
  return ffi::Error::Success();
}

// The stacked layout (dlnjax.networks.linear.Stacked): first (h x n_in), a stack (cap, h, h) of
// which the first `count` are the hidden layers, last (r x h); count is an int32 per member (or
// one for all). One compiled program then serves every depth up to cap + 2 layers.
inline int64_t count_of(const ffi::AnyBuffer& c, int64_t b) {
  const int32_t* p = reinterpret_cast<const int32_t*>(c.untyped_data());
  return c.element_count() > 1 ? p[b] : p[0];
}

// Entry j of member b's stack (batch..., cap, rows, cols), as member() does for a matrix.
template <typename T>
inline T* stack_entry(const ffi::AnyBuffer& stack, int64_t b, int64_t j) {
  auto d = stack.dimensions();
  const size_t k = d.size();
  const int64_t cap = d[k - 3], rows = d[k - 2], cols = d[k - 1];
  return reinterpret_cast<T*>(stack.untyped_data()) + (b * cap + j) * rows * cols;
}

inline int64_t capacity_of(const ffi::AnyBuffer& stack) {
  auto d = stack.dimensions();
  return d.size() >= 3 ? d[d.size() - 3] : 0;
}

template <typename T>
Layers<T> stacked_layers(const ffi::AnyBuffer& first, const ffi::AnyBuffer& hidden, const ffi::AnyBuffer& last,
                         int64_t count, int64_t b) {
  Layers<T> L;
  L.w.push_back(member<T>(first, b));
  L.dims.push_back(mat_of(first));
  const Mat h = mat_of(hidden);
  for (int64_t j = 0; j < count; ++j) {
    L.w.push_back(stack_entry<T>(hidden, b, j));
    L.dims.push_back(h);
  }
  L.w.push_back(member<T>(last, b));
  L.dims.push_back(mat_of(last));
  return L;
}

template <typename T, int R>
ffi::Error top_down_stacked(const ffi::AnyBuffer& first, const ffi::AnyBuffer& hidden, const ffi::AnyBuffer& last,
                            const ffi::AnyBuffer& count_buf, ffi::AnyBuffer* p1, ffi::AnyBuffer* pst, int64_t b) {
  const int64_t count = count_of(count_buf, b);
  if (count < 0 || count > capacity_of(hidden)) return ffi::Error::InvalidArgument("top_down_stacked: count out of range");
  Layers<T> L = stacked_layers<T>(first, hidden, last, count, b);
  L.out.push_back(member<T>(*p1, b));
  for (int64_t j = 0; j < count; ++j) L.out.push_back(stack_entry<T>(*pst, b, j));
  top_down_layers<T, R>(L);
  return ffi::Error::Success();
}

template <typename T, int R>
ffi::Error bottom_up_stacked(const ffi::AnyBuffer& lr_buf, const ffi::AnyBuffer& g, const ffi::AnyBuffer& pst,
                             const ffi::AnyBuffer& first, const ffi::AnyBuffer& hidden, const ffi::AnyBuffer& last,
                             const ffi::AnyBuffer& count_buf, ffi::AnyBuffer* first_out, ffi::AnyBuffer* hidden_out,
                             ffi::AnyBuffer* last_out, int64_t b) {
  const int64_t count = count_of(count_buf, b);
  if (count < 0 || count > capacity_of(hidden)) return ffi::Error::InvalidArgument("bottom_up_stacked: count out of range");
  Layers<T> L = stacked_layers<T>(first, hidden, last, count, b);
  L.out.push_back(member<T>(*first_out, b));
  for (int64_t j = 0; j < count; ++j) L.out.push_back(stack_entry<T>(*hidden_out, b, j));
  L.out.push_back(member<T>(*last_out, b));
  for (int64_t j = 0; j < count; ++j) L.coef.push_back(stack_entry<T>(pst, b, j));
  L.coef.push_back(member<T>(last, b));  // P_N = W_N, read before it is updated (last)
  bottom_up_layers<T, R>(L, lr_of<T>(lr_buf, b), member<T>(g, b));
  return ffi::Error::Success();
}

// One library per (precision, output width) is built on demand (__init__.py, -DDLNJAX_RANK=r
// -DDLNJAX_FLOAT=32|64): one instantiation compiles in seconds where all of them take ~20 s.
#ifdef DLNJAX_RANK
#define DLNJAX_RANKS(X) X(DLNJAX_RANK)
#else
#define DLNJAX_RANKS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)
#endif

// Call f(std::integral_constant<int, r>) for the output width r (the kernels are compiled per r).
template <typename F>
ffi::Error with_rank(int64_t r, const char* what, F&& f) {
  switch (r) {
#define CASE(K) \
  case K:       \
    return f(std::integral_constant<int, K>{});
    DLNJAX_RANKS(CASE)
#undef CASE
    default:
      return ffi::Error::InvalidArgument(std::string(what) + ": output width must be 1..16");
  }
}

// Run one member's kernel for every member of the batch (vmap hands the kernels the whole batch).
// When the batch keeps every thread busy (a multiple of the thread count, or at least 4 members
// per thread), each thread takes whole members and runs them alone: no synchronisation inside a
// step (two per layer otherwise, tens of microseconds each on a 1000-unit layer that takes a few
// hundred). Otherwise the members run one after another, each split over all threads. A member's
// numbers are the same either way (every loop has a fixed order and chunking).
template <typename F>
ffi::Error for_each_member(int64_t batch, F&& f) {
  const int64_t threads = pool_threads();
  if (tls_serial || threads <= 1 || batch < threads || (batch % threads != 0 && batch < 4 * threads)) {
    for (int64_t b = 0; b < batch; ++b) {
      ffi::Error e = f(b);
      if (e.failure()) return e;
    }
    return ffi::Error::Success();
  }
  std::mutex mu;
  int64_t failed = -1;  // the lowest failing member, whose error is returned (as when in order)
  ffi::Error first;
  parallel_for(batch, [&](int64_t b) {
    struct Serial {
      bool was = tls_serial;
      Serial() { tls_serial = true; }
      ~Serial() { tls_serial = was; }
    } serial;
    ffi::Error e = f(b);
    if (e.failure()) {
      std::lock_guard<std::mutex> lk(mu);
      if (failed < 0 || b < failed) {
        failed = b;
        first = std::move(e);
      }
    }
  });
  return first;
}

// Makes XLA's thread pool visible to parallel_for for the duration of one handler call.
struct UsePool {
  explicit UsePool(ffi::ThreadPool* pool) { tls_xla_pool = pool; }
  ~UsePool() { tls_xla_pool = nullptr; }
};

template <typename T>
ffi::Error top_down_any(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  UsePool use(&pool);
  if (args.size() < 2) return ffi::Error::InvalidArgument("top_down: need at least two layers");
  auto wN = args.get<ffi::AnyBuffer>(args.size() - 1);
  if (!wN) return wN.error();
  const int64_t batch = batch_of(*wN, 2);
  return with_rank(mat_of(*wN).rows, "top_down", [&](auto k) {
    return for_each_member(batch, [&](int64_t b) { return top_down<T, decltype(k)::value>(args, rets, b); });
  });
}

template <typename T>
ffi::Error bottom_up_any(ffi::ThreadPool pool, ffi::AnyBuffer lr, ffi::AnyBuffer g, ffi::RemainingArgs args,
                         ffi::RemainingRets rets) {
  UsePool use(&pool);
  const int64_t batch = batch_of(g, 2);
  if (lr.element_count() != 1 && lr.element_count() != static_cast<size_t>(batch))
    return ffi::Error::InvalidArgument("bottom_up: one learning rate, or one per member");
  return with_rank(mat_of(g).rows, "bottom_up", [&](auto k) {
    return for_each_member(batch, [&](int64_t b) { return bottom_up<T, decltype(k)::value>(lr, g, args, rets, b); });
  });
}

template <typename T>
ffi::Error top_down_stacked_any(ffi::ThreadPool pool, ffi::AnyBuffer first, ffi::AnyBuffer hidden, ffi::AnyBuffer last,
                                ffi::AnyBuffer count, ffi::Result<ffi::AnyBuffer> p1, ffi::Result<ffi::AnyBuffer> pst) {
  UsePool use(&pool);
  const int64_t batch = batch_of(last, 2);
  if (count.element_count() != 1 && count.element_count() != static_cast<size_t>(batch))
    return ffi::Error::InvalidArgument("top_down_stacked: one layer count, or one per member");
  return with_rank(mat_of(last).rows, "top_down_stacked", [&](auto k) {
    return for_each_member(batch, [&](int64_t b) {
      return top_down_stacked<T, decltype(k)::value>(first, hidden, last, count, &*p1, &*pst, b);
    });
  });
}

template <typename T>
ffi::Error bottom_up_stacked_any(ffi::ThreadPool pool, ffi::AnyBuffer lr, ffi::AnyBuffer g, ffi::AnyBuffer pst,
                                 ffi::AnyBuffer first, ffi::AnyBuffer hidden, ffi::AnyBuffer last, ffi::AnyBuffer count,
                                 ffi::Result<ffi::AnyBuffer> first_out, ffi::Result<ffi::AnyBuffer> hidden_out,
                                 ffi::Result<ffi::AnyBuffer> last_out) {
  UsePool use(&pool);
  const int64_t batch = batch_of(g, 2);
  if (lr.element_count() != 1 && lr.element_count() != static_cast<size_t>(batch))
    return ffi::Error::InvalidArgument("bottom_up_stacked: one learning rate, or one per member");
  if (count.element_count() != 1 && count.element_count() != static_cast<size_t>(batch))
    return ffi::Error::InvalidArgument("bottom_up_stacked: one layer count, or one per member");
  return with_rank(mat_of(g).rows, "bottom_up_stacked", [&](auto k) {
    return for_each_member(batch, [&](int64_t b) {
      return bottom_up_stacked<T, decltype(k)::value>(lr, g, pst, first, hidden, last, count, &*first_out,
                                                      &*hidden_out, &*last_out, b);
    });
  });
}

}  // namespace

// Bindings: XLA's thread pool, then (bottom-up) the learning rate and G, then the buffers.
#define DLNJAX_TOP_DOWN_BINDING ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().RemainingArgs().RemainingRets()
#define DLNJAX_BOTTOM_UP_BINDING \
  ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().RemainingArgs().RemainingRets()

#define DLNJAX_TOP_DOWN_STACKED_BINDING                                                                          \
  ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg<ffi::AnyBuffer>().Arg< \
      ffi::AnyBuffer>().Ret<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
#define DLNJAX_BOTTOM_UP_STACKED_BINDING                                                                          \
  ffi::Ffi::Bind()                                                                                               \
      .Ctx<ffi::ThreadPool>()                                                                                    \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Arg<ffi::AnyBuffer>()                                                                                     \
      .Ret<ffi::AnyBuffer>()                                                                                     \
      .Ret<ffi::AnyBuffer>()                                                                                     \
      .Ret<ffi::AnyBuffer>()

#if !defined(DLNJAX_FLOAT) || DLNJAX_FLOAT == 32
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxTopDownStackedF32, top_down_stacked_any<float>, DLNJAX_TOP_DOWN_STACKED_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxBottomUpStackedF32, bottom_up_stacked_any<float>, DLNJAX_BOTTOM_UP_STACKED_BINDING);
#endif
#if !defined(DLNJAX_FLOAT) || DLNJAX_FLOAT == 64
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxTopDownStackedF64, top_down_stacked_any<double>, DLNJAX_TOP_DOWN_STACKED_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxBottomUpStackedF64, bottom_up_stacked_any<double>, DLNJAX_BOTTOM_UP_STACKED_BINDING);
#endif
#if !defined(DLNJAX_FLOAT) || DLNJAX_FLOAT == 32
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxTopDownF32, top_down_any<float>, DLNJAX_TOP_DOWN_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxBottomUpF32, bottom_up_any<float>, DLNJAX_BOTTOM_UP_BINDING);
#endif
#if !defined(DLNJAX_FLOAT) || DLNJAX_FLOAT == 64
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxTopDownF64, top_down_any<double>, DLNJAX_TOP_DOWN_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(DlnjaxBottomUpF64, bottom_up_any<double>, DLNJAX_BOTTOM_UP_BINDING);
#endif
