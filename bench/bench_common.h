// Shared benchmark helpers: timing, and the machine's two roofline numbers measured in the same
// run (FMA peak and copy bandwidth), so every benchmark can print "% of this machine".
#pragma once
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "programs/lib/flags.h"

namespace tg::bench {

// A benchmark's main, around its command line (tg::FlagSet, the programs' flags, with the sizes as
// declared arguments): --help prints the help and returns 0; a bad or unexpected argument prints
// one line naming it and returns 2; otherwise `body` runs, and an exception out of it prints its
// message and returns 1. `check`, when given, runs after parsing for what the flags cannot tell
// alone (arguments that go together, a device's name): a tg::Error from it is a bad argument too.
int run_main(FlagSet& flags, int argc, char** argv, const std::function<int()>& body,
             const std::function<void()>& check = nullptr);

// Median and fastest wall time in milliseconds of `fn` over `repeats` runs, after `warmup` runs.
// On a machine shared with other jobs a run that loses a core shows in the median; the fastest is
// what the kernel does with every core, comparable with the FMA peak (itself a best of three).
struct Timing {
  double median_ms, best_ms;
};
Timing time_runs(const std::function<void()>& fn, int repeats = 10, int warmup = 2);
double time_ms(const std::function<void()>& fn, int repeats = 10, int warmup = 2);  // the median

// fp32 FMA peak of this machine in GFLOP/s on `threads` threads (all OpenMP threads when 0),
// measured by tg::cpu_peak_gflops (programs/lib/machine_peak.h, which ./train uses for its MFU)
// with ten times its default iterations. Cached after the first call.
double measured_fma_peak_gflops(int threads = 0);

// bf16 peak (vdpbf16ps, tg::cpu_bf16_peak_gflops) the same way; 0 on a CPU without AVX512_BF16.
double measured_bf16_peak_gflops(int threads = 0);

// Copy bandwidth in GB/s (bytes read + bytes written) on a buffer far larger than the last-level
// cache, with all OpenMP threads. Cached after the first call.
double measured_copy_bandwidth_gbs();

// "avx512", "avx2" or "scalar": the instruction-set level the kernels run (ops/cpu/isa.h).
std::string simd_name();

// The best of enough repeats of fn for about half a second (at least 3), in ms, after a 200 ms
// pause. Best, not median: on a shared machine the fastest run is the one least disturbed by
// others. The pause lets the previous measurement's spinning worker threads (OpenBLAS for about
// 2^28 cycles, OpenMP for a few hundred microseconds) go to sleep before this one starts.
double best_ms_after_pause(const std::function<void()>& fn);

// Benchmark buffers with a tensor's 64-byte alignment. std::allocator puts a large buffer 16 bytes
// past a page, where every 64-byte vector load spans two cache lines: a kernel timed on such a
// buffer pays a cost the product's tensors never do (bench_half_convert's f32 -> bf16 line read
// 0.78x PyTorch's copy for it), and so does a peer handed one.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64 + 64 * (n == 0));
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const { return false; }
};
template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

// One benchmarked GEMM: C (m,n) = op(A) (m,k) op(B) (k,n), beta 1 where it accumulates into C.
struct GemmShape {
  std::string name;
  bool trans_a, trans_b;
  int64_t m, n, k;
  float beta;
};

// The three GEMMs of one Linear (in -> out) over `tokens` rows, as the training step runs them:
// forward y = x W^T, backward dx = dy W, and dW += dy^T x (beta = 1: it accumulates).
void add_linear_gemms(std::vector<GemmShape>& shapes, const std::string& name, int64_t tokens, int64_t in, int64_t out);

}  // namespace tg::bench
