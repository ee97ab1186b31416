// Winograd F(2x2,3x3) and F(4x4,3x3) against explicit im2col + tg::cpu::gemm on the 3x3 stride-1
// layers of the reference CNN and of a small ResNet, batch 128, NHWC, forward and input gradient.
//
// Every figure is "effective" GFLOP/s, the direct convolution's 2 N P Q K C 9 flops over the time,
// so the three algorithms compare on one scale (Winograd does fewer real flops, which is its point)
// and the % of the FMA peak measured in the same run says what im2col could reach at best.
// im2col's two columns: the whole thing (patch matrix built, or scattered back for the gradient,
// plus the GEMM) and the GEMM alone, the upper bound of an implicit im2col that never builds the
// patch matrix. Times are the fastest of the runs (a loaded machine shows in the median).
//
//   make CUDA=0 BUILD=build-cpu build-cpu/bench/bench_conv_winograd && ./build-cpu/bench/bench_conv_winograd [--quick]
#include <omp.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cpu/conv2d_winograd.h"
#include "ops/cpu/gemm.h"

using namespace tg;
using tg::cpu::WinogradTile;

namespace {

struct Layer {
  const char* model;
  int64_t N, H, W, C, K;  // pad 1 everywhere: P = H, Q = W
};

bench::AlignedVector<float> pattern(int64_t n, float scale) {
  bench::AlignedVector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) v[i] = scale * (static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f);
  return v;
}

// x (N,H,W,C) -> cols (N*H*W, 9*C), columns in (r, s, c) order, zeros for the padding (pad 1).
void im2col(float* cols, const float* x, int64_t N, int64_t H, int64_t W, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < N * H * W; row++) {
    const int64_t n = row / (H * W), p = row / W % H, q = row % W;
    for (int64_t r = 0; r < 3; r++)
      for (int64_t s = 0; s < 3; s++) {
        float* dst = cols + row * 9 * C + (r * 3 + s) * C;
        const int64_t h = p + r - 1, w = q + s - 1;
        if (h < 0 || h >= H || w < 0 || w >= W) std::memset(dst, 0, sizeof(float) * C);
        else std::memcpy(dst, x + ((n * H + h) * W + w) * C, sizeof(float) * C);
      }
  }
}

// dx (N,H,W,C) += dcols (N*H*W, 9*C) scattered back to the pixels they were read from. Each thread
// owns whole images, so no two threads add into the same pixel.
void col2im_accumulate(float* dx, const float* dcols, int64_t N, int64_t H, int64_t W, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; n++)
    for (int64_t p = 0; p < H; p++)
      for (int64_t q = 0; q < W; q++)
        for (int64_t r = 0; r < 3; r++)
          for (int64_t s = 0; s < 3; s++) {
            const int64_t h = p + r - 1, w = q + s - 1;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const float* src = dcols + ((n * H + p) * W + q) * 9 * C + (r * 3 + s) * C;
            float* dst = dx + ((n * H + h) * W + w) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) dst[c] += src[c];
          }
}

double g_peak = 0;

// Prints one line and returns the best time in ms.
double report(const char* what, double flops, int repeats, const std::function<void()>& fn) {
  const bench::Timing t = bench::time_runs(fn, repeats, 1);
  const double gflops = flops / (t.best_ms * 1e-3) * 1e-9;
  std::printf("    %-26s %9.2f ms (median %8.2f) %8.1f GFLOP/s %6.1f%% of peak\n", what, t.best_ms, t.median_ms,
              gflops, 100.0 * gflops / g_peak);
  std::fflush(stdout);
  return t.best_ms;
}

void bench_layer(const Layer& l, int repeats) {
  const int64_t rows = l.N * l.H * l.W;
  const double flops = 2.0 * rows * l.K * l.C * 9;
  std::printf("%s  N=%lld %lldx%lld  %lld->%lld  (%.2f GFLOP direct)\n", l.model, (long long)l.N, (long long)l.H,
              (long long)l.W, (long long)l.C, (long long)l.K, flops * 1e-9);
  const bench::AlignedVector<float> x = pattern(rows * l.C, 1.0f), w = pattern(l.K * l.C * 9, 0.05f), bias = pattern(l.K, 0.1f);
  const bench::AlignedVector<float> dout = pattern(rows * l.K, 1.0f);
  // The im2col GEMMs take the weight as (9C, K) in (r, s, c) row order; reordering it is per step
  // work too small to time.
  bench::AlignedVector<float> w_cols(static_cast<size_t>(9 * l.C * l.K));
  for (int64_t k = 0; k < l.K; k++)
    for (int64_t c = 0; c < l.C; c++)
      for (int64_t rs = 0; rs < 9; rs++) w_cols[(rs * l.C + c) * l.K + k] = w[(k * l.C + c) * 9 + rs];
  bench::AlignedVector<float> out(static_cast<size_t>(rows * l.K)), dx(static_cast<size_t>(rows * l.C), 0.0f);
  bench::AlignedVector<float> cols(static_cast<size_t>(rows * 9 * l.C));

  std::printf("  forward\n");
  const double im2col_fwd = report("im2col + gemm", flops, repeats, [&] {
    im2col(cols.data(), x.data(), l.N, l.H, l.W, l.C);
    cpu::gemm(false, false, rows, l.K, 9 * l.C, 1.0f, cols.data(), 9 * l.C, w_cols.data(), l.K, 0.0f, out.data(), l.K);
  });
  const double gemm_fwd = report("gemm alone (implicit bound)", flops, repeats, [&] {
    cpu::gemm(false, false, rows, l.K, 9 * l.C, 1.0f, cols.data(), 9 * l.C, w_cols.data(), l.K, 0.0f, out.data(), l.K);
  });
  double best_wino_fwd = 1e30;
  for (WinogradTile tile : {WinogradTile::F2x2, WinogradTile::F4x4}) {
    const double ms = report(tile == WinogradTile::F2x2 ? "winograd F(2x2,3x3)" : "winograd F(4x4,3x3)", flops,
                             repeats, [&] {
                               cpu::conv2d_winograd_forward(out.data(), x.data(), w.data(), bias.data(), l.N, l.H,
                                                            l.W, l.C, l.K, 1, 1, tile);
                             });
    best_wino_fwd = std::min(best_wino_fwd, ms);
  }
  std::printf("    best winograd: %.2fx im2col + gemm, %.2fx gemm alone\n", im2col_fwd / best_wino_fwd,
              gemm_fwd / best_wino_fwd);

  std::printf("  input gradient\n");
  const double im2col_bwd = report("gemm + col2im", flops, repeats, [&] {
    cpu::gemm(false, true, rows, 9 * l.C, l.K, 1.0f, dout.data(), l.K, w_cols.data(), l.K, 0.0f, cols.data(), 9 * l.C);
    col2im_accumulate(dx.data(), cols.data(), l.N, l.H, l.W, l.C);
  });
  const double gemm_bwd = report("gemm alone (implicit bound)", flops, repeats, [&] {
    cpu::gemm(false, true, rows, 9 * l.C, l.K, 1.0f, dout.data(), l.K, w_cols.data(), l.K, 0.0f, cols.data(), 9 * l.C);
  });
  double best_wino_bwd = 1e30;
  for (WinogradTile tile : {WinogradTile::F2x2, WinogradTile::F4x4}) {
    const double ms = report(tile == WinogradTile::F2x2 ? "winograd F(2x2,3x3)" : "winograd F(4x4,3x3)", flops,
                             repeats, [&] {
                               cpu::conv2d_winograd_backward_input(dx.data(), dout.data(), w.data(), l.N, l.H, l.W,
                                                                   l.C, l.K, 1, 1, tile);
                             });
    best_wino_bwd = std::min(best_wino_bwd, ms);
  }
  std::printf("    best winograd: %.2fx gemm + col2im, %.2fx gemm alone\n\n", im2col_bwd / best_wino_bwd,
              gemm_bwd / best_wino_bwd);
}

int run(bool quick) {
  const int repeats = quick ? 3 : 10;
  const int64_t N = quick ? 32 : 128;
  g_peak = bench::measured_fma_peak_gflops();
  std::printf("Winograd vs im2col + gemm, 3x3 stride 1 pad 1, NHWC, %d threads, %s, FMA peak %.0f GFLOP/s\n"
              "(effective GFLOP/s = 2 N P Q K C 9 / best time)\n\n",
              omp_get_max_threads(), bench::simd_name().c_str(), g_peak);
  const Layer layers[] = {
      {"reference CNN", N, 28, 28, 32, 64}, {"reference CNN", N, 14, 14, 64, 128},
      {"ResNet stage 1", N, 28, 28, 64, 64},      {"ResNet stage 2", N, 14, 14, 128, 128},
      {"ResNet stage 3", N, 7, 7, 256, 256},
  };
  for (const Layer& l : layers) bench_layer(l, repeats);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  FlagSet flags("bench_conv_winograd", "[--quick]",
                "Winograd F(2x2,3x3) and F(4x4,3x3) against explicit im2col + tg::cpu::gemm on the 3x3 stride-1\n"
                "layers of the reference CNN and of a small ResNet, batch 128, NHWC, forward and input gradient, in\n"
                "effective GFLOP/s (the direct convolution's flops over the best time) and as a fraction of this\n"
                "machine's FMA peak measured in the same run; im2col also as its GEMM alone, the bound of an\n"
                "implicit im2col.");
  flags.add_switch("quick", &quick, "batch 32 and 3 runs per figure instead of batch 128 and 10");
  return bench::run_main(flags, argc, argv, [&] { return run(quick); });
}
