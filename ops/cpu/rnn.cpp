#include "ops/cpu/rnn.h"

#include "ops/cpu/fast_math.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Below this many elements per step one thread is faster than waking the team (one step of a
// small layer is a few microseconds of work).
static constexpr int64_t kParallelMin = 1 << 14;

// sigmoid(x) = 1 / (1 + exp(-x)), written with the vectorizable exp. Past |x| = 80 the answer is
// settled in float (1, or below 2e-35), so the argument is capped there to keep exp in range.
static inline float sigmoid(float x) {
  float arg = -x;
  arg = arg > 80.0f ? 80.0f : (arg < -80.0f ? -80.0f : arg);
  return 1.0f / (1.0f + fast_exp_in_range(arg));
}

void lstm_cell_forward(float* h, float* c, float* gates, const float* gates_x, const float* gates_h,
                       const float* c_prev, int64_t B, int64_t H) {
#pragma omp parallel for schedule(static) if (B * H >= kParallelMin)
  for (int64_t b = 0; b < B; b++) {
    const float* gx = gates_x + b * 4 * H;
    const float* gh = gates_h + b * 4 * H;
    float* act = gates + b * 4 * H;
    const float* cp = c_prev + b * H;
    float* hb = h + b * H;
    float* cb = c + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
      float i = sigmoid(gx[j] + gh[j]);
      float f = sigmoid(gx[H + j] + gh[H + j]);
      float g = fast_tanh(gx[2 * H + j] + gh[2 * H + j]);
      float o = sigmoid(gx[3 * H + j] + gh[3 * H + j]);
      float cn = f * cp[j] + i * g;
      act[j] = i;
      act[H + j] = f;
      act[2 * H + j] = g;
      act[3 * H + j] = o;
      cb[j] = cn;
      hb[j] = o * fast_tanh(cn);
    }
  }
}

void lstm_cell_backward(float* dgates_x, float* dgates_h, float* dc_prev, const float* gates, const float* c_prev,
                        const float* c, const float* dh, const float* dc, int64_t B, int64_t H) {
#pragma omp parallel for schedule(static) if (B * H >= kParallelMin)
  for (int64_t b = 0; b < B; b++) {
    const float* act = gates + b * 4 * H;
    const float* cp = c_prev + b * H;
    const float* cb = c + b * H;
    const float* dhb = dh + b * H;
    const float* dcb = dc + b * H;
    float* dgx = dgates_x ? dgates_x + b * 4 * H : nullptr;
    float* dgh = dgates_h ? dgates_h + b * 4 * H : nullptr;
    float* dcp = dc_prev ? dc_prev + b * H : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
      float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
      // tanh(c) is recomputed rather than saved: one more pass of (B,H) memory per step would cost
      // more than the few multiply-adds.
      float tc = fast_tanh(cb[j]);
      float dcell = dcb[j] + dhb[j] * o * (1.0f - tc * tc);
      // The derivatives in terms of the activations: sigmoid' = s (1 - s), tanh' = 1 - t^2.
      float di = dcell * g * i * (1.0f - i);
      float df = dcell * cp[j] * f * (1.0f - f);
      float dg = dcell * i * (1.0f - g * g);
      float d_o = dhb[j] * tc * o * (1.0f - o);
      if (dgx) {
        dgx[j] += di;
        dgx[H + j] += df;
        dgx[2 * H + j] += dg;
        dgx[3 * H + j] += d_o;
      }
      if (dgh) {
        dgh[j] += di;
        dgh[H + j] += df;
        dgh[2 * H + j] += dg;
        dgh[3 * H + j] += d_o;
      }
      if (dcp) dcp[j] += dcell * f;
    }
  }
}

void gru_cell_forward(float* h, float* saved, const float* gates_x, const float* gates_h, const float* h_prev,
                      int64_t B, int64_t H) {
#pragma omp parallel for schedule(static) if (B * H >= kParallelMin)
  for (int64_t b = 0; b < B; b++) {
    const float* gx = gates_x + b * 3 * H;
    const float* gh = gates_h + b * 3 * H;
    const float* hp = h_prev + b * H;
    float* sv = saved + b * 4 * H;
    float* hb = h + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
      float r = sigmoid(gx[j] + gh[j]);
      float z = sigmoid(gx[H + j] + gh[H + j]);
      float hn = gh[2 * H + j];
      float n = fast_tanh(gx[2 * H + j] + r * hn);
      sv[j] = r;
      sv[H + j] = z;
      sv[2 * H + j] = n;
      sv[3 * H + j] = hn;
      // (1 - z) n + z h_prev as n + z (h_prev - n): one multiply fewer, and exact at z = 0 and 1.
      hb[j] = n + z * (hp[j] - n);
    }
  }
}

void gru_cell_backward(float* dgates_x, float* dgates_h, float* dh_prev, const float* saved, const float* h_prev,
                       const float* dh, int64_t B, int64_t H) {
#pragma omp parallel for schedule(static) if (B * H >= kParallelMin)
  for (int64_t b = 0; b < B; b++) {
    const float* sv = saved + b * 4 * H;
    const float* hp = h_prev + b * H;
    const float* dhb = dh + b * H;
    float* dgx = dgates_x ? dgates_x + b * 3 * H : nullptr;
    float* dgh = dgates_h ? dgates_h + b * 3 * H : nullptr;
    float* dhp = dh_prev ? dh_prev + b * H : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
      float r = sv[j], z = sv[H + j], n = sv[2 * H + j], hn = sv[3 * H + j];
      float g = dhb[j];
      float dn = g * (1.0f - z) * (1.0f - n * n);  // through n's tanh
      float dz = g * (hp[j] - n) * z * (1.0f - z);
      float dr = dn * hn * r * (1.0f - r);
      if (dgx) {
        dgx[j] += dr;
        dgx[H + j] += dz;
        dgx[2 * H + j] += dn;
      }
      if (dgh) {
        dgh[j] += dr;
        dgh[H + j] += dz;
        dgh[2 * H + j] += dn * r;
      }
      if (dhp) dhp[j] += g * z;
    }
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
