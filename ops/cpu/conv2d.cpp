// Convolution as implicit GEMM, NHWC (the mappings CUTLASS calls fprop, dgrad and wgrad), for one
// group g of Cg input channels and Kg filters, with the weight repacked to (K, R, S, Cg) so that
// its rows run in the patch matrix's column order:
//
//   forward  out (N*P*Q, Kg)      = patches (N*P*Q, R*S*Cg) @ weight (Kg, R*S*Cg)^T
//   weight   dweight^T (R*S*Cg, Kg) = patches^T @ dout (N*P*Q, Kg), split-K over threads
//   input    stride 1: a forward convolution of dout with the flipped, transposed weight;
//            stride > 1 (or few channels): dpatches = dout @ weight, scattered back onto dx
//            (col2im) tile by tile
//
// The patch matrix is never built: ops/cpu/conv2d_pack.h packs each cache block of it straight
// from x into the GEMM's panels. A 1x1 stride-1 unpadded convolution's patch matrix is x itself.
#include "ops/cpu/conv2d.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "ops/cpu/conv2d_depthwise.h"
#include "ops/cpu/conv2d_pack.h"
#include "ops/cpu/gemm.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

namespace {

// weight (K, Cg, R, S) -> (K, R, S, Cg): row k is filter k in patch-column order. Weights are
// small next to activations, so once per call is cheap.
std::vector<float> weight_krsc(const float* weight, const Conv2dGeometry& g) {
  const int64_t Cg = g.channels_per_group(), RS = g.R * g.S;
  std::vector<float> out(static_cast<size_t>(g.K * RS * Cg));
  for (int64_t k = 0; k < g.K; k++)
    for (int64_t c = 0; c < Cg; c++)
      for (int64_t rs = 0; rs < RS; rs++) out[(k * RS + rs) * Cg + c] = weight[(k * Cg + c) * RS + rs];
  return out;
}

// out (N,P,Q,K) = beta * out + patches @ w_krsc^T per group, w_krsc (K, R, S, Cg).
void implicit_gemm_forward(float* out, float beta, const float* x, const float* w_krsc, const Conv2dGeometry& g) {
  const int64_t Cg = g.channels_per_group(), Kg = g.filters_per_group(), RSC = g.patch_size();
  for (int64_t group = 0; group < g.groups; group++) {
    const MatrixPackB weight(true, w_krsc + group * Kg * RSC, RSC);  // stored (Kg, RSC): op(B) = its transpose
    float* out_group = out + group * Kg;
    if (g.is_pointwise())
      gemm_packed(g.output_pixels(), Kg, RSC, 1.0f, MatrixPackA(false, x + group * Cg, g.C), weight, beta, out_group,
                  g.K);
    else
      gemm_packed(g.output_pixels(), Kg, RSC, 1.0f, PatchPackA(x, g, group), weight, beta, out_group, g.K);
  }
}

// The input gradient of a stride-1 convolution is the forward convolution of dout (N,P,Q,K) with
// the weight flipped in r and s and its channels swapped (K <-> Cg per group), padded by
// dilation*(R-1) - pad on each side (negative padding crops, which the packer handles alike).
void backward_input_stride1(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g) {
  const int64_t Cg = g.channels_per_group(), Kg = g.filters_per_group(), R = g.R, S = g.S;
  Conv2dGeometry t = g;
  t.H = g.P, t.W = g.Q, t.C = g.K;  // input: dout
  t.K = g.C;                        // filters: one per input channel of x
  t.P = g.H, t.Q = g.W;             // output: dx
  t.pad_h = g.dilation_h * (R - 1) - g.pad_h;
  t.pad_w = g.dilation_w * (S - 1) - g.pad_w;
  // flipped (C, R, S, Kg): filter (group, c), tap (r, s), channel k = weight[group*Kg + k, c, R-1-r, S-1-s].
  std::vector<float> flipped(static_cast<size_t>(g.C * R * S * Kg));
  for (int64_t group = 0; group < g.groups; group++)
    for (int64_t k = 0; k < Kg; k++)
      for (int64_t c = 0; c < Cg; c++)
        for (int64_t r = 0; r < R; r++)
          for (int64_t s = 0; s < S; s++)
            flipped[(((group * Cg + c) * R + r) * S + s) * Kg + k] =
                weight[(((group * Kg + k) * Cg + c) * R + (R - 1 - r)) * S + (S - 1 - s)];
  implicit_gemm_forward(dx, 1.0f, dout, flipped.data(), t);
}

// Strided input gradient: tiles of output pixels get their patch gradient
// dpatches (tile, R*S*Cg) = dout (tile, Kg) @ w_krsc (Kg, R*S*Cg) in a per-thread buffer, which is
// then added onto the pixels each patch row read. Threads own groups of whole images, so the
// scatter never races; with a single group (batch 1) its GEMMs use every thread instead.
void backward_input_col2im(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g) {
  const std::vector<float> w_krsc = weight_krsc(weight, g);
  const int64_t Cg = g.channels_per_group(), Kg = g.filters_per_group(), RSC = g.patch_size(), PQ = g.P * g.Q;
  // Tiles of 128 to 512 rows, about 1 MiB of dpatches (L2) where R*S*Cg allows: tall enough that
  // packing the weight once per tile is cheap next to the tile's GEMM.
  const int64_t tile = std::clamp<int64_t>((int64_t{1} << 18) / RSC, 128, 512);
  // Image groups of about one tile each, balanced over the threads (small images, 7x7 say, would
  // otherwise make GEMMs of 49 rows).
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  int64_t image_groups = std::min(g.N, (g.N * PQ + tile - 1) / tile);
  if (g.N >= threads) image_groups = std::min(g.N, (image_groups + threads - 1) / threads * threads);
#pragma omp parallel for schedule(dynamic) if (image_groups > 1 && threads > 1)
  for (int64_t ig = 0; ig < image_groups; ig++) {
    static thread_local std::vector<float> dpatches;
    if (static_cast<int64_t>(dpatches.size()) < tile * RSC) dpatches.resize(static_cast<size_t>(tile * RSC));
    const int64_t pixel_end = g.N * (ig + 1) / image_groups * PQ;
    for (int64_t t0 = g.N * ig / image_groups * PQ; t0 < pixel_end; t0 += tile) {
      const int64_t rows = std::min(tile, pixel_end - t0);
      for (int64_t group = 0; group < g.groups; group++) {
        gemm_packed(rows, RSC, Kg, 1.0f, MatrixPackA(false, dout + t0 * g.K + group * Kg, g.K),
                    MatrixPackB(false, w_krsc.data() + group * Kg * RSC, RSC), 0.0f, dpatches.data(), RSC);
        for (int64_t i = 0; i < rows; i++) {
          const int64_t n = (t0 + i) / PQ, p = (t0 + i) % PQ / g.Q, q = (t0 + i) % g.Q;
          for (int64_t r = 0; r < g.R; r++) {
            const int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
            if (h < 0 || h >= g.H) continue;
            for (int64_t s = 0; s < g.S; s++) {
              const int64_t w = q * g.stride_w - g.pad_w + s * g.dilation_w;
              if (w < 0 || w >= g.W) continue;
              float* __restrict d = dx + ((n * g.H + h) * g.W + w) * g.C + group * Cg;
              const float* __restrict src = dpatches.data() + i * RSC + (r * g.S + s) * Cg;
#pragma omp simd
              for (int64_t c = 0; c < Cg; c++) d[c] += src[c];
            }
          }
        }
      }
    }
  }
}

}  // namespace

void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dGeometry& g) {
  if (g.is_depthwise()) return conv2d_depthwise_forward(out, x, weight, bias, g);
  const std::vector<float> w_krsc = weight_krsc(weight, g);
  // With a bias the output starts as the bias rows and the GEMM adds onto them.
  if (bias) broadcast_rows(out, bias, g.output_pixels(), g.K);
  implicit_gemm_forward(out, bias ? 1.0f : 0.0f, x, w_krsc.data(), g);
}

void conv2d_backward_input(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g) {
  if (g.is_depthwise()) return conv2d_depthwise_backward_input(dx, dout, weight, g);
  // The stride-1 form is a GEMM with N = Cg columns; with few channels (an image's 1 or 3) that
  // fills a sliver of NR columns poorly, and the col2im form's N = R*S*Cg does better.
  if (g.stride_h == 1 && g.stride_w == 1 && g.channels_per_group() >= kGemmNR / 2)
    return backward_input_stride1(dx, dout, weight, g);
  backward_input_col2im(dx, dout, weight, g);
}

void conv2d_backward_weight(float* dweight, float* dbias, const float* dout, const float* x, const Conv2dGeometry& g) {
  if (dbias) column_sums_accumulate(dbias, dout, g.output_pixels(), g.K);
  if (!dweight) return;
  if (g.is_depthwise()) return conv2d_depthwise_backward_weight(dweight, dout, x, g);
  const int64_t Cg = g.channels_per_group(), Kg = g.filters_per_group(), RSC = g.patch_size(), RS = g.R * g.S;
  const int64_t pixels = g.output_pixels();
  // Split-K over threads: each sums dweight^T (groups, R*S*Cg, Kg) over its own band of pixels
  // into a private partial, and the partials are added in thread order. Splitting C instead (the
  // GEMM's own threading) would make every thread gather the whole patch matrix, the operand that
  // costs the most to pack here (its N = Kg is small, so each packed element serves few flops).
  const double flops = 2.0 * static_cast<double>(pixels) * static_cast<double>(RSC * g.K);
  const int threads = flops > 4.0e6 && !omp_in_parallel() ? omp_get_max_threads() : 1;
  const int64_t part_size = g.groups * RSC * Kg;
  std::vector<float> partials(static_cast<size_t>(threads * part_size));
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t p0 = pixels * id / team, count = pixels * (id + 1) / team - p0;
    float* part = partials.data() + id * part_size;
    for (int64_t group = 0; group < g.groups; group++) {
      const MatrixPackB grad(false, dout + p0 * g.K + group * Kg, g.K);  // (count, Kg), row stride K
      float* c = part + group * RSC * Kg;
      if (g.is_pointwise())  // patches^T = x^T: x (N*H*W, C) read transposed
        gemm_packed(RSC, Kg, count, 1.0f, MatrixPackA(true, x + p0 * g.C + group * Cg, g.C), grad, 0.0f, c, Kg);
      else
        gemm_packed(RSC, Kg, count, 1.0f, PatchTransposePackA(x, g, group, p0), grad, 0.0f, c, Kg);
    }
  }
  for (int t = 1; t < threads; t++)
    for (int64_t i = 0; i < part_size; i++) partials[i] += partials[t * part_size + i];
  const float* dw_t = partials.data();
  for (int64_t group = 0; group < g.groups; group++)
    for (int64_t k = 0; k < Kg; k++)
      for (int64_t c = 0; c < Cg; c++)
        for (int64_t rs = 0; rs < RS; rs++)
          dweight[((group * Kg + k) * Cg + c) * RS + rs] += dw_t[(group * RSC + rs * Cg + c) * Kg + k];
}

TG_CPU_ISA_END
}  // namespace tg::cpu
