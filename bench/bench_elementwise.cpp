// Elementwise arithmetic, activations, softmax, sum, dropout and concatenation on tensors far larger than the
// last-level cache. All are memory-bound on a CPU, so each line prints the bytes the op must move at
// least once (read + written, counted per op below) over its median time, against the copy
// bandwidth measured in the same run; GELU also prints its arithmetic rate against the FMA peak,
// to show how far it is from being compute-bound. On a shared machine the copy bandwidth moves
// from minute to minute, so each op is also compared with a copy timed alternately with it.
//
//   make build/bench/bench_elementwise && ./build/bench/bench_elementwise [n]    (default n = 64M floats)
//
// n is rounded down to whole rows of 1024 (the softmax and bias ops' view).
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "ops/activation.h"
#include "ops/concat.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "ops/softmax.h"
#include "tensor/tensor.h"

using namespace tg;

static double g_copy_gbs = 0;
static double g_fma_gflops = 0;
static Tensor g_copy_src, g_copy_dst;

// The reference copy, over one full-size tensor.
static void copy_once() {
  const float* s = g_copy_src.data<float>();
  float* d = g_copy_dst.data<float>();
  const int64_t n = g_copy_src.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) d[i] = s[i];
}

// Times `fn` and the reference copy alternately (medians of 7 each), so that on a shared machine
// both see the same contention; prints the op's bandwidth against the run-wide copy bandwidth and
// against the copy timed beside it. `flops` > 0 adds the arithmetic rate.
static void report(const std::string& name, int64_t n, double bytes, const std::function<void()>& fn, double flops = 0) {
  std::vector<double> op_ms, copy_ms;
  fn();
  copy_once();
  for (int r = 0; r < 7; r++) {
    copy_ms.push_back(bench::time_ms(copy_once, 1, 0));
    op_ms.push_back(bench::time_ms(fn, 1, 0));
  }
  std::sort(op_ms.begin(), op_ms.end());
  std::sort(copy_ms.begin(), copy_ms.end());
  double ms = op_ms[op_ms.size() / 2], copy = copy_ms[copy_ms.size() / 2];
  double gbs = bytes / (ms * 1e-3) * 1e-9;
  double beside_gbs = 2.0 * g_copy_src.nbytes() / (copy * 1e-3) * 1e-9;
  std::printf("%-26s n=%-9lld %8.2f ms %6.1f GB/s %6.1f%% of copy %6.1f%% of copy beside", name.c_str(),
              static_cast<long long>(n), ms, gbs, 100.0 * gbs / g_copy_gbs, 100.0 * gbs / beside_gbs);
  if (flops > 0) {
    double gflops = flops / (ms * 1e-3) * 1e-9;
    std::printf("  %5.1f GFLOP/s (%4.1f%% of FMA peak)", gflops, 100.0 * gflops / g_fma_gflops);
  }
  std::printf("\n");
  std::fflush(stdout);
}

// Random draws are slow at these sizes; a cheap pattern in [-scale, scale) is as good for timing.
static Tensor pattern(const Shape& shape, float scale) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) p[i] = scale * (static_cast<float>((i * 2654435761u) % 2000) / 1000.0f - 1.0f);
  return t;
}

namespace {

int run(int64_t n) {
  const int64_t C = 1024, rows = n / C;  // softmax rows; bias-like ops use the same (rows, C) view
  g_copy_gbs = bench::measured_copy_bandwidth_gbs();
  g_fma_gflops = bench::measured_fma_peak_gflops();
  std::printf("SIMD: %s, OpenMP threads: %d, copy bandwidth %.1f GB/s, FMA peak %.1f GFLOP/s\n",
              bench::simd_name().c_str(), omp_get_max_threads(), g_copy_gbs, g_fma_gflops);
  std::printf("bytes: each tensor read or written once (4 bytes an element); += counts a read and a write\n");

  g_copy_src = pattern({rows, C}, 1.0f);
  g_copy_dst = Tensor::zeros({rows, C});
  Tensor a = pattern({rows, C}, 3.0f), b = pattern({rows, C}, 2.0f), out = Tensor::empty({rows, C});
  Tensor bias = pattern({C}, 1.0f), dbias = Tensor::zeros({C});
  Tensor grad = Tensor::zeros({rows, C});
  const double f = 4.0 * rows * C;  // bytes of one full tensor
  const int64_t m = rows * C;

  report("add", m, 3 * f, [&] { ops::add_forward(out, a, b); });
  report("mul", m, 3 * f, [&] { ops::mul_forward(out, a, b); });
  report("add bias (rows,C)+(C)", m, 2 * f, [&] { ops::add_forward(out, a, bias); });
  report("add bias backward", m, 3 * f, [&] { ops::add_backward(grad, dbias, a); });
  report("mul backward", m, 7 * f, [&] { ops::mul_backward(grad, out, a, a, b); });
  report("scale", m, 2 * f, [&] { ops::scale_forward(out, a, 0.5f); });

  // GELU: 29 flops an element forward and 41 backward, counted from ops/cpu/activation.cpp and
  // fast_math.h (an FMA counts 2; the clamps and the exponent-bit moves count nothing).
  report("gelu forward", m, 2 * f, [&] { ops::gelu_forward(out, a); }, 29.0 * m);
  report("gelu backward", m, 4 * f, [&] { ops::gelu_backward(grad, a, b); }, 41.0 * m);

  report("sigmoid forward", m, 2 * f, [&] { ops::sigmoid_forward(out, a); });
  report("sigmoid backward", m, 4 * f, [&] { ops::sigmoid_backward(grad, a, b); });
  report("silu forward", m, 2 * f, [&] { ops::silu_forward(out, a); });
  report("silu backward", m, 4 * f, [&] { ops::silu_backward(grad, a, b); });

  // cat of two halves into `out`: along the rows (two runs of rows*C/2), along the columns (every
  // row two runs of C/2), and of 1-column strips' worth (64 inputs, runs of C/64 = 16 floats).
  Tensor top = pattern({rows / 2, C}, 1.0f), bottom = pattern({rows - rows / 2, C}, 1.0f);
  Tensor left = pattern({rows, C / 2}, 1.0f), right = pattern({rows, C - C / 2}, 1.0f);
  std::vector<Tensor> strips;
  for (int i = 0; i < 64; i++) strips.push_back(pattern({rows, C / 64}, 1.0f));
  report("cat dim 0 (2 inputs)", m, 2 * f, [&] { ops::concat_forward(out, {top, bottom}, 0); });
  report("cat dim 1 (2 inputs)", m, 2 * f, [&] { ops::concat_forward(out, {left, right}, 1); });
  report("cat dim 1 (64 inputs)", m, 2 * f, [&] { ops::concat_forward(out, strips, 1); });

  report("softmax forward (C=1024)", m, 2 * f, [&] { ops::softmax_forward(out, a); });
  report("softmax backward", m, 4 * f, [&] { ops::softmax_backward(grad, out, b); });
  report("log_softmax forward", m, 2 * f, [&] { ops::log_softmax_forward(out, a); });

  Tensor total = Tensor::empty({});
  report("sum (all)", m, f, [&] { ops::sum_forward(total, a); });
  Tensor row_sums = Tensor::empty({rows});
  report("sum (last dim)", m, f, [&] { ops::sum_dim_forward(row_sums, a, 1); });
  Tensor col_sums = Tensor::empty({C});
  report("sum (first dim)", m, f, [&] { ops::sum_dim_forward(col_sums, a, 0); });

  report("dropout forward p=0.1", m, 2 * f, [&] { ops::dropout_forward(out, a, 0.1f, 1234); });
  report("dropout backward", m, 3 * f, [&] { ops::dropout_backward(grad, b, 0.1f, 1234); });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = int64_t(64) << 20;
  FlagSet flags("bench_elementwise", "[n]",
                "Elementwise arithmetic, activations, softmax, sums, dropout and concatenation on tensors far larger\n"
                "than the last-level cache, each against the copy bandwidth measured in the same run and against a\n"
                "copy timed alternately with it; GELU also against the FMA peak.");
  // At least one row: fewer than 1024 floats round down to empty tensors, and every line to 0 GB/s.
  // The upper bound only keeps the sizes far from overflow; it is no memory check.
  flags.add_int_argument("n", &n, "floats per tensor, rounded down to rows of 1024", 1024, int64_t(1) << 32);
  return bench::run_main(flags, argc, argv, [&] { return run(n); });
}
