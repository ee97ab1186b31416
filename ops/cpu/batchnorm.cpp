#include "ops/cpu/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Below this many elements a parallel region costs more than it saves.
static constexpr int64_t kParallelMinElements = 1 << 15;
// The per-channel sums are taken over this many fixed row chunks (fewer when M is smaller), each
// with its own partial rows: enough to keep every thread of a large machine busy, few enough that
// the partial rows stay small next to the tensor.
static constexpr int64_t kMaxChunks = 64;

// Within a chunk, rows are summed in f32 over blocks of this many rows (vector lanes at full width,
// a relative error of at most 32 f32 roundings) and each block's sums are then added into the chunk's
// double sums: the double work is 1/32 of the elements, and the error does not grow with M.
static constexpr int64_t kBlockRows = 32;

static int64_t chunk_count(int64_t M) { return std::max<int64_t>(1, std::min(M, kMaxChunks)); }
static int64_t chunk_begin(int64_t k, int64_t chunks, int64_t M) { return k * M / chunks; }

// The one place the normalised, scaled and shifted value is formed, so that the backward's
// recomputation of the ReLU mask gives the forward's bits: z = (x - mean) * scale + shift, one fma.
static inline float affine(float x, float mean, float scale, float shift) { return std::fma(x - mean, scale, shift); }

// Per-channel scale = weight * rstd and shift = bias, with a missing weight or bias read as 1 or 0.
struct ChannelAffine {
  std::vector<float> scale, shift;
  ChannelAffine(const float* weight, const float* bias, const float* rstd, int64_t C) : scale(C), shift(C) {
    for (int64_t c = 0; c < C; c++) {
      scale[c] = (weight ? weight[c] : 1.0f) * rstd[c];
      shift[c] = bias ? bias[c] : 0.0f;
    }
  }
};

// x (M,C) -> out (M,C) = [relu] affine(x, mean, scale, shift), channel by channel.
template <bool kRelu>
static void normalise(float* out, const float* x, const float* mean, const ChannelAffine& affine_params, int64_t M,
                      int64_t C) {
  const float* scale = affine_params.scale.data();
  const float* shift = affine_params.shift.data();
#pragma omp parallel for schedule(static) if (M * C >= kParallelMinElements)
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + m * C;
    float* yr = out + m * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
      float z = affine(xr[c], mean[c], scale[c], shift[c]);
      yr[c] = kRelu ? std::max(z, 0.0f) : z;
    }
  }
}

static void normalise(float* out, const float* x, const float* mean, const ChannelAffine& affine_params, int64_t M,
                      int64_t C, bool relu) {
  if (relu) normalise<true>(out, x, mean, affine_params, M, C);
  else normalise<false>(out, x, mean, affine_params, M, C);
}

// x (M,C) -> mean (C) and m2 (C) = the sum of squared deviations from it, in double.
void batchnorm_moments(double* mean, double* m2, const float* x, int64_t M, int64_t C) {
  // One pass for the statistics: sums S of d = x - shift and Q of d^2, shift = the first row (shifted
  // data, so the variance (Q - S^2/M) / M loses only a factor 1 + ((mean - shift) / std)^2 of the sums'
  // precision to cancellation; the first row is a sample, a few standard deviations from the mean).
  // d is exact for x near the shift (Sterbenz); blocks of rows are summed in f32, the blocks in double.
  // (E[x^2] - E[x]^2 in f32 would lose everything on x = 1e4 + N(0,1): x^2 ~ 1e8, whose f32 ulp is 8.)
  const float* shift = x;
  const int64_t chunks = chunk_count(M);
  std::vector<double> partial(static_cast<size_t>(chunks * 2 * C), 0.0);
#pragma omp parallel for schedule(static) if (M * C >= kParallelMinElements)
  for (int64_t k = 0; k < chunks; k++) {
    double* sum = partial.data() + k * 2 * C;
    double* squares = sum + C;
    std::vector<float> block(2 * C);
    float* block_sum = block.data();
    float* block_squares = block_sum + C;
    const int64_t end = chunk_begin(k + 1, chunks, M);
    for (int64_t first = chunk_begin(k, chunks, M); first < end; first += kBlockRows) {
      std::fill(block.begin(), block.end(), 0.0f);
      for (int64_t m = first; m < std::min(end, first + kBlockRows); m++) {
        const float* xr = x + m * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          float d = xr[c] - shift[c];
          block_sum[c] += d;
          block_squares[c] += d * d;
        }
      }
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        sum[c] += static_cast<double>(block_sum[c]);
        squares[c] += static_cast<double>(block_squares[c]);
      }
    }
  }
  // The chunks in order: a fixed order of additions for every channel.
  std::vector<double> sum(C, 0.0), squares(C, 0.0);
  for (int64_t k = 0; k < chunks; k++) {
    const double* partial_sum = partial.data() + k * 2 * C;
    for (int64_t c = 0; c < C; c++) {
      sum[c] += partial_sum[c];
      squares[c] += partial_sum[C + c];
    }
  }
  const double rows = static_cast<double>(M);
  for (int64_t c = 0; c < C; c++) {
    mean[c] = static_cast<double>(shift[c]) + sum[c] / rows;
    m2[c] = std::max(0.0, squares[c] - sum[c] * sum[c] / rows);
  }
}

// x (M,C) -> mean, rstd (C); running_mean, running_var (C) updated when non-null.
void batchnorm_forward_train(float* out, float* mean, float* rstd, float* running_mean, float* running_var,
                             const float* x, const float* weight, const float* bias, int64_t M, int64_t C,
                             float momentum, float eps, bool relu) {
  std::vector<double> batch_mean(C), m2(C);
  batchnorm_moments(batch_mean.data(), m2.data(), x, M, C);
  const double rows = static_cast<double>(M);
  for (int64_t c = 0; c < C; c++) {
    const double variance = m2[c] / rows;  // biased
    mean[c] = static_cast<float>(batch_mean[c]);
    rstd[c] = static_cast<float>(1.0 / std::sqrt(variance + static_cast<double>(eps)));
    if (running_mean) running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * batch_mean[c]);
    if (running_var)
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * variance * rows / (rows - 1.0));
  }
  normalise(out, x, mean, ChannelAffine(weight, bias, rstd, C), M, C, relu);
}

// x (M,C) -> out (M,C) with the given mean, rstd (C)
void batchnorm_normalise(float* out, const float* x, const float* weight, const float* bias, const float* mean,
                         const float* rstd, int64_t M, int64_t C, bool relu) {
  normalise(out, x, mean, ChannelAffine(weight, bias, rstd, C), M, C, relu);
}

// x (M,C) -> out (M,C) with running_mean, running_var (C); mean, rstd (C) written
void batchnorm_forward_eval(float* out, float* mean, float* rstd, const float* x, const float* weight,
                            const float* bias, const float* running_mean, const float* running_var, int64_t M,
                            int64_t C, float eps, bool relu) {
  for (int64_t c = 0; c < C; c++) {
    mean[c] = running_mean[c];
    rstd[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps)));
  }
  normalise(out, x, mean, ChannelAffine(weight, bias, rstd, C), M, C, relu);
}

// The gradient reaching z = affine(x): dout, or 0 where the fused ReLU clipped z.
template <bool kRelu>
static inline float gradient_at_z(float dy, float x, float mean, float scale, float shift) {
  if (!kRelu) return dy;
  return affine(x, mean, scale, shift) > 0.0f ? dy : 0.0f;
}

// The reduction pass: per channel, sum_g = sum(g) and sum_gx = sum(g * (x - mean)) over the M rows,
// with g the gradient at z. Summed in f32 per block of rows, the blocks in double per chunk, then the
// chunks in order.
template <bool kRelu>
static void gradient_sums(double* sum_g, double* sum_gx, const float* dout, const float* x, const float* mean,
                          const ChannelAffine& affine_params, int64_t M, int64_t C) {
  const float* scale = affine_params.scale.data();
  const float* shift = affine_params.shift.data();
  const int64_t chunks = chunk_count(M);
  std::vector<double> partial(static_cast<size_t>(chunks * 2 * C), 0.0);
#pragma omp parallel for schedule(static) if (M * C >= kParallelMinElements)
  for (int64_t k = 0; k < chunks; k++) {
    double* g_sum = partial.data() + k * 2 * C;
    double* gx_sum = g_sum + C;
    std::vector<float> block(2 * C);
    float* block_g = block.data();
    float* block_gx = block_g + C;
    const int64_t end = chunk_begin(k + 1, chunks, M);
    for (int64_t first = chunk_begin(k, chunks, M); first < end; first += kBlockRows) {
      std::fill(block.begin(), block.end(), 0.0f);
      for (int64_t m = first; m < std::min(end, first + kBlockRows); m++) {
        const float* xr = x + m * C;
        const float* dyr = dout + m * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) {
          float g = gradient_at_z<kRelu>(dyr[c], xr[c], mean[c], scale[c], shift[c]);
          block_g[c] += g;
          block_gx[c] += g * (xr[c] - mean[c]);
        }
      }
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        g_sum[c] += static_cast<double>(block_g[c]);
        gx_sum[c] += static_cast<double>(block_gx[c]);
      }
    }
  }
  for (int64_t k = 0; k < chunks; k++) {
    const double* g_sum = partial.data() + k * 2 * C;
    for (int64_t c = 0; c < C; c++) {
      sum_g[c] += g_sum[c];
      sum_gx[c] += g_sum[C + c];
    }
  }
}

// The elementwise pass: dx (M,C) += input_scale * (g - g_shift - (x - mean) * x_coeff), per channel.
// Training: input_scale = weight * rstd, g_shift = mean(g), x_coeff = rstd^2 * mean(g * (x - mean)),
// the gradient through the batch statistics; evaluation: only input_scale (the rest is 0).
template <bool kRelu>
static void input_gradient(float* dx, const float* dout, const float* x, const float* mean,
                           const ChannelAffine& affine_params, const float* input_scale, const float* g_shift,
                           const float* x_coeff, int64_t M, int64_t C) {
  const float* scale = affine_params.scale.data();
  const float* shift = affine_params.shift.data();
#pragma omp parallel for schedule(static) if (M * C >= kParallelMinElements)
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + m * C;
    const float* dyr = dout + m * C;
    float* dxr = dx + m * C;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
      float g = gradient_at_z<kRelu>(dyr[c], xr[c], mean[c], scale[c], shift[c]);
      dxr[c] += input_scale[c] * (g - g_shift[c] - (xr[c] - mean[c]) * x_coeff[c]);
    }
  }
}

// dx (M,C) += from per-channel sums over `rows` rows (this process's M, or every rank's): the
// training form when sum_g is given, the evaluation form (the statistics constant) when null.
template <bool kRelu>
static void input_gradient_from_sums(float* dx, const float* dout, const float* x, const float* weight,
                                     const float* mean, const float* rstd, const ChannelAffine& affine_params,
                                     const double* sum_g, const double* sum_gx, double rows, int64_t M, int64_t C) {
  std::vector<float> input_scale(C), g_shift(C, 0.0f), x_coeff(C, 0.0f);
  for (int64_t c = 0; c < C; c++) {
    input_scale[c] = (weight ? weight[c] : 1.0f) * rstd[c];
    if (sum_g) {
      g_shift[c] = static_cast<float>(sum_g[c] / rows);
      x_coeff[c] = static_cast<float>(static_cast<double>(rstd[c]) * rstd[c] * sum_gx[c] / rows);
    }
  }
  input_gradient<kRelu>(dx, dout, x, mean, affine_params, input_scale.data(), g_shift.data(), x_coeff.data(), M, C);
}

template <bool kRelu>
static void batchnorm_backward_impl(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                                    const float* weight, const float* bias, const float* mean, const float* rstd,
                                    int64_t M, int64_t C, bool training) {
  const ChannelAffine affine_params(weight, bias, rstd, C);
  const bool params = dweight || dbias;
  std::vector<double> sum_g(C, 0.0), sum_gx(C, 0.0);
  if (params || (dx && training)) gradient_sums<kRelu>(sum_g.data(), sum_gx.data(), dout, x, mean, affine_params, M, C);
  for (int64_t c = 0; c < C; c++) {
    if (dweight) dweight[c] += static_cast<float>(sum_gx[c] * rstd[c]);  // sum(g * normalised x)
    if (dbias) dbias[c] += static_cast<float>(sum_g[c]);
  }
  if (!dx) return;
  input_gradient_from_sums<kRelu>(dx, dout, x, weight, mean, rstd, affine_params, training ? sum_g.data() : nullptr,
                                  sum_gx.data(), static_cast<double>(M), M, C);
}

// dx (M,C) +=, dweight, dbias (C) += from dout (M,C), x (M,C), weight, bias, mean, rstd (C)
void batchnorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* weight, const float* bias, const float* mean, const float* rstd, int64_t M,
                        int64_t C, bool training, bool relu) {
  if (M == 0 || (!dx && !dweight && !dbias)) return;
  if (relu) batchnorm_backward_impl<true>(dx, dweight, dbias, dout, x, weight, bias, mean, rstd, M, C, training);
  else batchnorm_backward_impl<false>(dx, dweight, dbias, dout, x, weight, bias, mean, rstd, M, C, training);
}

// sum_g, sum_gx (C) = from dout (M,C), x (M,C), weight, bias, mean, rstd (C)
void batchnorm_gradient_sums(double* sum_g, double* sum_gx, const float* dout, const float* x, const float* weight,
                             const float* bias, const float* mean, const float* rstd, int64_t M, int64_t C, bool relu) {
  std::fill(sum_g, sum_g + C, 0.0);
  std::fill(sum_gx, sum_gx + C, 0.0);
  if (M == 0) return;
  const ChannelAffine affine_params(weight, bias, rstd, C);
  if (relu) gradient_sums<true>(sum_g, sum_gx, dout, x, mean, affine_params, M, C);
  else gradient_sums<false>(sum_g, sum_gx, dout, x, mean, affine_params, M, C);
}

// dx (M,C) += from dout (M,C), x (M,C), weight, bias, mean, rstd (C) and sums over `rows` rows
void batchnorm_input_gradient(float* dx, const float* dout, const float* x, const float* weight, const float* bias,
                              const float* mean, const float* rstd, const double* sum_g, const double* sum_gx,
                              double rows, int64_t M, int64_t C, bool relu) {
  if (M == 0) return;
  const ChannelAffine affine_params(weight, bias, rstd, C);
  if (relu)
    input_gradient_from_sums<true>(dx, dout, x, weight, mean, rstd, affine_params, sum_g, sum_gx, rows, M, C);
  else
    input_gradient_from_sums<false>(dx, dout, x, weight, mean, rstd, affine_params, sum_g, sum_gx, rows, M, C);
}

TG_CPU_ISA_END
}  // namespace tg::cpu
