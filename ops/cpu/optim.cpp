#include "ops/cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ops/cpu/half_convert.h"
#include "ops/optim_math.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// 8192 floats = 32 KB per array: the four arrays AdamW streams stay within one core's L2, and a
// GPT-2 sized model still splits into tens of thousands of blocks for the threads to share.
static constexpr int64_t kBlock = 8192;

static int64_t block_count(int64_t n) { return (n + kBlock - 1) / kBlock; }

// The scalar factors are formed in double and rounded once to f32, as PyTorch does with its Python
// float hyperparameters. The elementwise arithmetic follows PyTorch's kernels op for op:
//   param *= 1 - lr*wd                              (mul_)
//   m = fma(g, 1-beta1, m*beta1)                    (mul_, then add_ with alpha: a fused multiply-add)
//   v = v*beta2 + ((1-beta2)*g)*g                   (mul_, then addcmul_)
//   denom = sqrt(v) / sqrt(1-beta2^t) + eps
//   param = param + (-(lr / (1-beta1^t)) * m) / denom  (addcdiv_)
struct AdamWConstants {
  float decay, beta1, beta2, one_minus_beta1, one_minus_beta2, neg_step_size, bias_correction2_sqrt, eps;
};

// param, grad, m, v (count): one block. Every element goes through the same instructions (the
// ragged end of a block uses masked loads and stores, not a scalar loop), so an element's result
// never depends on where it sits. The vector paths exist because `#pragma omp simd` will not
// vectorize sqrtf while -fmath-errno is on (the default).
static void adamw_block(float* param, const float* grad, float* m, float* v, int64_t count, const AdamWConstants& c) {
#if defined(__AVX512F__)
  const __m512 decay = _mm512_set1_ps(c.decay), beta1 = _mm512_set1_ps(c.beta1), beta2 = _mm512_set1_ps(c.beta2);
  const __m512 one_minus_beta1 = _mm512_set1_ps(c.one_minus_beta1), one_minus_beta2 = _mm512_set1_ps(c.one_minus_beta2);
  const __m512 neg_step_size = _mm512_set1_ps(c.neg_step_size), eps = _mm512_set1_ps(c.eps);
  const __m512 bias_correction2_sqrt = _mm512_set1_ps(c.bias_correction2_sqrt);
  for (int64_t i = 0; i < count; i += 16) {
    // Masked-off lanes load zeros, for which every step below is finite (denom = eps), and are not stored.
    const __mmask16 k = count - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (count - i)) - 1);
    __m512 g = _mm512_maskz_loadu_ps(k, grad + i);
    __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, param + i), decay);
    __m512 mi = _mm512_fmadd_ps(g, one_minus_beta1, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, m + i), beta1));
    __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, v + i), beta2),
                              _mm512_mul_ps(_mm512_mul_ps(one_minus_beta2, g), g));
    __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_maskz_sqrt_ps(k, vi), bias_correction2_sqrt), eps);
    _mm512_mask_storeu_ps(m + i, k, mi);
    _mm512_mask_storeu_ps(v + i, k, vi);
    _mm512_mask_storeu_ps(param + i, k, _mm512_add_ps(p, _mm512_div_ps(_mm512_mul_ps(neg_step_size, mi), denom)));
  }
#elif defined(__AVX2__) && defined(__FMA__)
  const __m256 decay = _mm256_set1_ps(c.decay), beta1 = _mm256_set1_ps(c.beta1), beta2 = _mm256_set1_ps(c.beta2);
  const __m256 one_minus_beta1 = _mm256_set1_ps(c.one_minus_beta1), one_minus_beta2 = _mm256_set1_ps(c.one_minus_beta2);
  const __m256 neg_step_size = _mm256_set1_ps(c.neg_step_size), eps = _mm256_set1_ps(c.eps);
  const __m256 bias_correction2_sqrt = _mm256_set1_ps(c.bias_correction2_sqrt);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t i = 0; i < count; i += 8) {
    const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(count - i, 8))), lane);
    __m256 g = _mm256_maskload_ps(grad + i, k);
    __m256 p = _mm256_mul_ps(_mm256_maskload_ps(param + i, k), decay);
    __m256 mi = _mm256_fmadd_ps(g, one_minus_beta1, _mm256_mul_ps(_mm256_maskload_ps(m + i, k), beta1));
    __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_maskload_ps(v + i, k), beta2),
                              _mm256_mul_ps(_mm256_mul_ps(one_minus_beta2, g), g));
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bias_correction2_sqrt), eps);
    _mm256_maskstore_ps(m + i, k, mi);
    _mm256_maskstore_ps(v + i, k, vi);
    _mm256_maskstore_ps(param + i, k, _mm256_add_ps(p, _mm256_div_ps(_mm256_mul_ps(neg_step_size, mi), denom)));
  }
#else
  for (int64_t i = 0; i < count; i++) {
    float g = grad[i];
    float p = param[i] * c.decay;
    float mi = std::fma(g, c.one_minus_beta1, m[i] * c.beta1);
    float vi = v[i] * c.beta2 + c.one_minus_beta2 * g * g;
    float denom = std::sqrt(vi) / c.bias_correction2_sqrt + c.eps;
    m[i] = mi;
    v[i] = vi;
    param[i] = p + c.neg_step_size * mi / denom;
  }
#endif
}

static AdamWConstants adamw_constants(float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const optim_math::AdamWFactors f = optim_math::adamw_factors(lr, beta1, beta2, weight_decay, step);
  AdamWConstants c;
  c.decay = f.decay;
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  c.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  c.neg_step_size = f.neg_step_size;
  c.bias_correction2_sqrt = f.bias_correction2_sqrt;
  c.eps = eps;
  return c;
}

// param, grad, m, v (n)
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step) {
  const AdamWConstants c = adamw_constants(lr, beta1, beta2, eps, weight_decay, step);
  const int64_t blocks = block_count(n);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t begin = b * kBlock;
    adamw_block(param + begin, grad + begin, m + begin, v + begin, std::min(n - begin, kBlock), c);
  }
}

// param, grad (n) half bits; master, m, v (n) f32. Each block widens its gradients into an f32
// buffer and runs the very adamw_block of the f32 path on the master, so a half model's masters
// follow an f32 model's weights bit for bit when the gradients are equal.
void adamw_update_half(DType dtype, uint16_t* param, const uint16_t* grad, float* master, float* m, float* v,
                       int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                       bool stochastic, uint64_t rounding_key) {
  const AdamWConstants c = adamw_constants(lr, beta1, beta2, eps, weight_decay, step);
  const int64_t blocks = block_count(n);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t begin = b * kBlock, count = std::min(n - begin, kBlock);
    alignas(64) float grad32[kBlock];
    half_to_f32_array(dtype, grad + begin, grad32, count);
    adamw_block(master + begin, grad32, m + begin, v + begin, count, c);
    if (!stochastic) {
      f32_to_half_array(dtype, master + begin, param + begin, count);
      continue;
    }
    for (int64_t i = begin; i < begin + count; i++) {
      const uint64_t random = optim_math::rounding_bits(rounding_key, i);
      param[i] = dtype == DType::BF16 ? optim_math::stochastic_round_bf16(master[i], random)
                                      : optim_math::stochastic_round_f16(master[i], random);
    }
  }
}

// param, grad, low (n) 16-bit; m, v (n) f32. Each block rebuilds its masters from the parameters
// and their low bits into an f32 buffer, runs the very adamw_block of the other paths on it, and
// splits the results back: the masters follow an f32 master's bit for bit.
void adamw_update_bf16_split(uint16_t* param, const uint16_t* grad, uint16_t* low, float* m, float* v, int64_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const AdamWConstants c = adamw_constants(lr, beta1, beta2, eps, weight_decay, step);
  const int64_t blocks = block_count(n);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t begin = b * kBlock, count = std::min(n - begin, kBlock);
    alignas(64) float grad32[kBlock];
    alignas(64) float master[kBlock];
    half_to_f32_array(DType::BF16, grad + begin, grad32, count);
    uint16_t* p = param + begin;
    uint16_t* l = low + begin;
#pragma omp simd
    for (int64_t i = 0; i < count; i++) master[i] = optim_math::join_master(p[i], l[i]);
    adamw_block(master, grad32, m + begin, v + begin, count, c);
#pragma omp simd
    for (int64_t i = 0; i < count; i++) {
      p[i] = optim_math::master_bf16(master[i]);
      l[i] = optim_math::master_low_bits(master[i]);
    }
  }
}

// PyTorch's order: d = g + wd*p; buf = first ? d : buf*momentum + (1-dampening)*d;
// d = nesterov ? d + momentum*buf : buf; p += -lr*d. With momentum 0 there is no buffer and d is
// applied directly.
// param, grad, momentum_buf (n; null when momentum == 0)
void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step) {
  const float neg_lr = static_cast<float>(-static_cast<double>(lr));
  const float one_minus_dampening = static_cast<float>(1.0 - dampening);
  const bool use_momentum = momentum != 0.0f;
  const int64_t blocks = block_count(n);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t end = std::min(n, (b + 1) * kBlock);
#pragma omp simd
    for (int64_t i = b * kBlock; i < end; i++) {
      float p = param[i];
      float d = grad[i];
      if (weight_decay != 0.0f) d = d + weight_decay * p;
      if (use_momentum) {
        float buf = first_step ? d : momentum_buf[i] * momentum + one_minus_dampening * d;
        momentum_buf[i] = buf;
        d = nesterov ? d + momentum * buf : buf;
      }
      param[i] = p + neg_lr * d;
    }
  }
}

static double block_sum_of_squares(const float* x, int64_t count) {
  double acc = 0.0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < count; i++) acc += static_cast<double>(x[i]) * x[i];
  return acc;
}

// x (n) -> sum x^2. Block partials land in a fixed slot and are added in block order, so the
// result does not depend on how many threads ran. `block(begin, count, scratch)` returns the f32
// values of a block: x itself, or a widened copy in `scratch` (one block of f32 per thread).
template <class Block>
static double sum_of_squares_blocks(int64_t n, Block block) {
  const int64_t blocks = block_count(n);
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    alignas(64) float scratch[kBlock];
    const int64_t begin = b * kBlock, count = std::min(n - begin, kBlock);
    partial[static_cast<size_t>(b)] = block_sum_of_squares(block(begin, count, scratch), count);
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

double sum_of_squares(const float* x, int64_t n) {
  return sum_of_squares_blocks(n, [x](int64_t begin, int64_t, float*) { return x + begin; });
}

double sum_of_squares_half(DType dtype, const uint16_t* x, int64_t n) {
  return sum_of_squares_blocks(n, [x, dtype](int64_t begin, int64_t count, float* scratch) {
    half_to_f32_array(dtype, x + begin, scratch, count);
    return static_cast<const float*>(scratch);
  });
}

// Whether a block of stored values holds an inf or NaN: x - x is 0 for finite x and NaN for inf
// and NaN, a test the vectorizer keeps branch-free.
static bool block_has_non_finite(const float* y, int64_t count) {
  int found = 0;
#pragma omp simd reduction(| : found)
  for (int64_t i = 0; i < count; i++) found |= y[i] - y[i] != 0.0f;
  return found != 0;
}

// x (n) *= s a block at a time: `block(begin, count, scratch)` scales its block in place and
// returns the stored values as f32 for the check (x itself, or a widened copy in `scratch`, one
// block of f32 per thread).
template <class Block>
static bool scale_blocks(int64_t n, bool check, Block block) {
  const int64_t blocks = block_count(n);
  int non_finite = 0;
#pragma omp parallel for schedule(static) reduction(| : non_finite) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    alignas(64) float scratch[kBlock];
    const int64_t begin = b * kBlock, count = std::min(n - begin, kBlock);
    const float* stored = block(begin, count, scratch);
    if (check && block_has_non_finite(stored, count)) non_finite = 1;
  }
  return non_finite != 0;
}

// x (n) *= s
bool scale(float* x, int64_t n, float s, bool check) {
  return scale_blocks(n, check, [x, s](int64_t begin, int64_t count, float*) {
    float* y = x + begin;
#pragma omp simd
    for (int64_t i = 0; i < count; i++) y[i] *= s;
    return static_cast<const float*>(y);
  });
}

// Widened, scaled and rounded back with half_convert's vector conversions; the check reads the
// stored (rounded) values widened again, since a finite f32 product can round to infinity in f16.
bool scale_half(DType dtype, uint16_t* x, int64_t n, float s, bool check) {
  return scale_blocks(n, check, [x, s, dtype, check](int64_t begin, int64_t count, float* scratch) {
    half_to_f32_array(dtype, x + begin, scratch, count);
#pragma omp simd
    for (int64_t i = 0; i < count; i++) scratch[i] *= s;
    f32_to_half_array(dtype, scratch, x + begin, count);
    if (check) half_to_f32_array(dtype, x + begin, scratch, count);
    return static_cast<const float*>(scratch);
  });
}

TG_CPU_ISA_END
}  // namespace tg::cpu
