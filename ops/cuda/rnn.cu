// CUDA recurrent cells: one thread per (batch item, hidden unit), which reads that unit's G gate
// pre-activations (strided by H within the row, so a warp's loads of each gate are coalesced) and
// writes its state. The arithmetic is ops/cpu/rnn.cpp's, so the devices differ only by the last
// bits of exp/tanh.
#include "ops/cuda/rnn.h"

#include "ops/cuda/common.cuh"

namespace tg::cuda {

namespace {

constexpr int kThreads = 256;

// 1 / (1 + exp(-x)) with the argument capped at 80, past which the answer is settled in f32.
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(fminf(fmaxf(-x, -80.0f), 80.0f))); }

template <class T>
__device__ __forceinline__ void add_to(T* p, int64_t i, float x) {
  if (p) p[i] = from_f32<T>(to_f32(p[i]) + x);
}

// gates_x, gates_h (B,4H), c_prev (B,H) -> h, c (B,H), gates (B,4H)
template <class T>
__global__ void lstm_cell_forward_kernel(T* h, T* c, T* gates, const T* gates_x, const T* gates_h, const T* c_prev,
                                         int64_t B, int64_t H) {
  const int64_t n = B * H, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t b = e / H, j = e % H, row = b * 4 * H + j;
    const float i = sigmoid(to_f32(gates_x[row]) + to_f32(gates_h[row]));
    const float f = sigmoid(to_f32(gates_x[row + H]) + to_f32(gates_h[row + H]));
    const float g = tanhf(to_f32(gates_x[row + 2 * H]) + to_f32(gates_h[row + 2 * H]));
    const float o = sigmoid(to_f32(gates_x[row + 3 * H]) + to_f32(gates_h[row + 3 * H]));
    const float cn = f * to_f32(c_prev[e]) + i * g;
    gates[row] = from_f32<T>(i);
    gates[row + H] = from_f32<T>(f);
    gates[row + 2 * H] = from_f32<T>(g);
    gates[row + 3 * H] = from_f32<T>(o);
    c[e] = from_f32<T>(cn);
    h[e] = from_f32<T>(o * tanhf(cn));
  }
}

// gates (B,4H), c_prev, c, dh, dc (B,H) -> dgates_x, dgates_h (B,4H) +=, dc_prev (B,H) +=
template <class T>
__global__ void lstm_cell_backward_kernel(T* dgates_x, T* dgates_h, T* dc_prev, const T* gates, const T* c_prev,
                                          const T* c, const T* dh, const T* dc, int64_t B, int64_t H) {
  const int64_t n = B * H, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t b = e / H, j = e % H, row = b * 4 * H + j;
    const float i = to_f32(gates[row]), f = to_f32(gates[row + H]);
    const float g = to_f32(gates[row + 2 * H]), o = to_f32(gates[row + 3 * H]);
    const float tc = tanhf(to_f32(c[e])), g_h = to_f32(dh[e]);
    const float dcell = to_f32(dc[e]) + g_h * o * (1.0f - tc * tc);
    const float d[4] = {dcell * g * i * (1.0f - i), dcell * to_f32(c_prev[e]) * f * (1.0f - f),
                        dcell * i * (1.0f - g * g), g_h * tc * o * (1.0f - o)};
#pragma unroll
    for (int k = 0; k < 4; k++) {
      add_to(dgates_x, row + k * H, d[k]);
      add_to(dgates_h, row + k * H, d[k]);
    }
    add_to(dc_prev, e, dcell * f);
  }
}

// gates_x, gates_h (B,3H), h_prev (B,H) -> h (B,H), saved (B,4H) = r, z, n, h_n
template <class T>
__global__ void gru_cell_forward_kernel(T* h, T* saved, const T* gates_x, const T* gates_h, const T* h_prev, int64_t B,
                                        int64_t H) {
  const int64_t n = B * H, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t b = e / H, j = e % H, row = b * 3 * H + j, srow = b * 4 * H + j;
    const float r = sigmoid(to_f32(gates_x[row]) + to_f32(gates_h[row]));
    const float z = sigmoid(to_f32(gates_x[row + H]) + to_f32(gates_h[row + H]));
    const float hn = to_f32(gates_h[row + 2 * H]);
    const float nn = tanhf(to_f32(gates_x[row + 2 * H]) + r * hn);
    saved[srow] = from_f32<T>(r);
    saved[srow + H] = from_f32<T>(z);
    saved[srow + 2 * H] = from_f32<T>(nn);
    saved[srow + 3 * H] = from_f32<T>(hn);
    h[e] = from_f32<T>(nn + z * (to_f32(h_prev[e]) - nn));
  }
}

// saved (B,4H), h_prev, dh (B,H) -> dgates_x, dgates_h (B,3H) +=, dh_prev (B,H) +=
template <class T>
__global__ void gru_cell_backward_kernel(T* dgates_x, T* dgates_h, T* dh_prev, const T* saved, const T* h_prev,
                                         const T* dh, int64_t B, int64_t H) {
  const int64_t n = B * H, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t b = e / H, j = e % H, row = b * 3 * H + j, srow = b * 4 * H + j;
    const float r = to_f32(saved[srow]), z = to_f32(saved[srow + H]);
    const float nn = to_f32(saved[srow + 2 * H]), hn = to_f32(saved[srow + 3 * H]);
    const float g = to_f32(dh[e]);
    const float dn = g * (1.0f - z) * (1.0f - nn * nn);
    const float dz = g * (to_f32(h_prev[e]) - nn) * z * (1.0f - z);
    const float dr = dn * hn * r * (1.0f - r);
    add_to(dgates_x, row, dr);
    add_to(dgates_x, row + H, dz);
    add_to(dgates_x, row + 2 * H, dn);
    add_to(dgates_h, row, dr);
    add_to(dgates_h, row + H, dz);
    add_to(dgates_h, row + 2 * H, dn * r);
    add_to(dh_prev, e, g * z);
  }
}

}  // namespace

void lstm_cell_forward(DType dtype, void* h, void* c, void* gates, const void* gates_x, const void* gates_h,
                       const void* c_prev, int64_t B, int64_t H) {
  if (B * H == 0) return;
  TG_DISPATCH_FLOAT(dtype, "lstm_cell", T, {
    lstm_cell_forward_kernel<T><<<grid_for(B * H, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(h), static_cast<T*>(c), static_cast<T*>(gates), static_cast<const T*>(gates_x),
        static_cast<const T*>(gates_h), static_cast<const T*>(c_prev), B, H);
    TG_CUDA_CHECK_LAUNCH("lstm_cell_forward_kernel");
  });
}

void lstm_cell_backward(DType dtype, void* dgates_x, void* dgates_h, void* dc_prev, const void* gates,
                        const void* c_prev, const void* c, const void* dh, const void* dc, int64_t B, int64_t H) {
  if (B * H == 0) return;
  TG_DISPATCH_FLOAT(dtype, "lstm_cell_backward", T, {
    lstm_cell_backward_kernel<T><<<grid_for(B * H, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(dgates_x), static_cast<T*>(dgates_h), static_cast<T*>(dc_prev), static_cast<const T*>(gates),
        static_cast<const T*>(c_prev), static_cast<const T*>(c), static_cast<const T*>(dh), static_cast<const T*>(dc),
        B, H);
    TG_CUDA_CHECK_LAUNCH("lstm_cell_backward_kernel");
  });
}

void gru_cell_forward(DType dtype, void* h, void* saved, const void* gates_x, const void* gates_h, const void* h_prev,
                      int64_t B, int64_t H) {
  if (B * H == 0) return;
  TG_DISPATCH_FLOAT(dtype, "gru_cell", T, {
    gru_cell_forward_kernel<T><<<grid_for(B * H, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(h), static_cast<T*>(saved), static_cast<const T*>(gates_x), static_cast<const T*>(gates_h),
        static_cast<const T*>(h_prev), B, H);
    TG_CUDA_CHECK_LAUNCH("gru_cell_forward_kernel");
  });
}

void gru_cell_backward(DType dtype, void* dgates_x, void* dgates_h, void* dh_prev, const void* saved,
                       const void* h_prev, const void* dh, int64_t B, int64_t H) {
  if (B * H == 0) return;
  TG_DISPATCH_FLOAT(dtype, "gru_cell_backward", T, {
    gru_cell_backward_kernel<T><<<grid_for(B * H, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(dgates_x), static_cast<T*>(dgates_h), static_cast<T*>(dh_prev), static_cast<const T*>(saved),
        static_cast<const T*>(h_prev), static_cast<const T*>(dh), B, H);
    TG_CUDA_CHECK_LAUNCH("gru_cell_backward_kernel");
  });
}

}  // namespace tg::cuda
