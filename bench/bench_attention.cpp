// Causal self-attention, forward and backward, at a tiny GPT's shape, a GPT-2-small-like head
// size with a medium context, and GPT-2 small's full shape (12 heads of 64, T = 1024).
//
// FLOPs count only the causal half of the score matrix: forward 2 products (S = QK^T, O = PV) of
// 2 * T * T * HS / 2 each per head, so 4 * B * NH * T * T * HS / 2; backward 5 such products
// (S recomputed, dP, dV, dK, dQ), 2.5x the forward. exp and the softmax bookkeeping are not counted.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "bench/bench_common.h"
#include "ops/attention.h"
#include "tensor/tensor.h"

namespace {

struct Shape4 {
  int64_t B, T, NH, HS;
};

int run() {
  using namespace tg;
  const int threads = omp_get_max_threads();
  const double peak = bench::measured_fma_peak_gflops(threads);
  std::printf("causal self-attention (flash-style, CPU)  SIMD: %s  threads: %d  measured FMA peak: %.1f GFLOP/s\n",
              bench::simd_name().c_str(), threads, peak);
  std::printf("GFLOP/s and %% of peak from the fastest run; median in brackets\n");
  std::printf("bf16 rows: each head widened to f32, the f32 kernel, its output rounded once (ops/attention.cpp)\n");
  std::printf("%-29s %18s %9s %7s %18s %9s %7s\n", "dtype, shape", "fwd ms", "GFLOP/s", "% peak", "bwd ms", "GFLOP/s",
              "% peak");
  Generator gen(0);
  bool above_peak = false;
  for (const Shape4& s : {Shape4{12, 64, 4, 32}, Shape4{64, 256, 6, 64}, Shape4{4, 1024, 12, 64}}) {
    const int64_t C = s.NH * s.HS;
    for (DType dtype : {DType::F32, DType::BF16}) {
      Tensor qkv = Tensor::randn({s.B, s.T, 3 * C}, &gen).to(dtype);
      Tensor dout = Tensor::randn({s.B, s.T, C}, &gen).to(dtype);
      Tensor out = Tensor::empty({s.B, s.T, C}, dtype), lse = Tensor::empty({s.B, s.NH, s.T});
      Tensor dqkv = Tensor::zeros(qkv.shape(), dtype);
      const double forward_flops = 4.0 * s.B * s.NH * s.T * s.T * s.HS / 2, backward_flops = 2.5 * forward_flops;
      // About 1 s per measurement at 100 GFLOP/s, and at least 9 runs.
      const int repeats = static_cast<int>(std::max(9.0, 1e11 / backward_flops));
      bench::Timing forward = bench::time_runs([&] { ops::attention_forward(out, lse, qkv, s.NH); }, repeats, 1);
      // Backward adds into dqkv each run, as it does in training; the adds are part of the cost.
      bench::Timing backward =
          bench::time_runs([&] { ops::attention_backward(dqkv, dout, qkv, out, lse, s.NH); }, repeats, 1);
      const double forward_gflops = forward_flops / (forward.best_ms * 1e6);
      const double backward_gflops = backward_flops / (backward.best_ms * 1e6);
      char name[80], forward_ms[32], backward_ms[32];
      std::snprintf(name, sizeof(name), "%-4s B=%ld T=%ld NH=%ld HS=%ld", dtype_name(dtype), static_cast<long>(s.B),
                    static_cast<long>(s.T), static_cast<long>(s.NH), static_cast<long>(s.HS));
      std::snprintf(forward_ms, sizeof(forward_ms), "%.3f (%.3f)", forward.best_ms, forward.median_ms);
      std::snprintf(backward_ms, sizeof(backward_ms), "%.3f (%.3f)", backward.best_ms, backward.median_ms);
      std::printf("%-29s %18s %9.1f %6.1f%% %18s %9.1f %6.1f%%\n", name, forward_ms, forward_gflops,
                  100 * forward_gflops / peak, backward_ms, backward_gflops, 100 * backward_gflops / peak);
      above_peak |= forward_gflops > peak || backward_gflops > peak;
    }
  }
  if (above_peak)
    std::printf("note: above 100%% means other jobs held a core while the peak was measured; rerun when idle\n");
  return 0;
}

}  // namespace

// No flags: the FlagSet is here for --help and to refuse any argument instead of ignoring it.
int main(int argc, char** argv) {
  tg::FlagSet flags("bench_attention", "[--help]",
                    "Causal self-attention (flash-style, CPU), forward and backward, f32 and bf16, against this\n"
                    "machine's FMA peak measured in the same run, at a tiny GPT's shape, a GPT-2-small-like head size\n"
                    "with a medium context, and GPT-2 small's full shape (12 heads of 64, T = 1024). FLOPs count the\n"
                    "causal half of the score matrix only.");
  return tg::bench::run_main(flags, argc, argv, run);
}
