// Causal self-attention on CUDA: launchers for ops/attention.cpp. The layout is the CPU kernel's
// (ops/cpu/attention.h): qkv (B, T, 3C) holds q, k, v side by side along the last dimension and
// head h owns columns [h*HS, (h+1)*HS) of each third (HS = C / NH); scale 1/sqrt(HS), causal.
//
// bf16/f16 with HS 32, 64 or 128 run on tensor cores (flash-style forward, FA2-style backward);
// every other case (f32, other head sizes, rows not 16-byte aligned) runs a SIMT kernel computing
// in f32. Head sizes above kAttentionMaxHeadSize throw tg::Error naming HS. Kernels are
// asynchronous on cuda::stream(); nothing here synchronizes with the host.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// The largest head size served (the SIMT kernels keep HS / 32 output columns per lane).
constexpr int64_t kAttentionMaxHeadSize = 256;

// qkv (B,T,3C) -> out (B,T,C), both `dtype` (F32, BF16 or F16); lse (B,NH,T) f32, the per-row
// log-sum-exp of the scaled, masked scores (natural log).
void attention_forward(DType dtype, void* out, float* lse, const void* qkv, int64_t B, int64_t T, int64_t C,
                       int64_t NH);

// dout (B,T,C), qkv (B,T,3C), out (B,T,C), all `dtype`, lse (B,NH,T) f32 -> dqkv (B,T,3C) +=
// gradient (`dtype`). delta (B,NH,T) f32 is scratch (rowsum(dout * out), written here).
// Deterministic: no atomics; every sum runs in a fixed order.
void attention_backward(DType dtype, void* dqkv, const void* dout, const void* qkv, const void* out,
                        const float* lse, float* delta, int64_t B, int64_t T, int64_t C, int64_t NH);

}  // namespace tg::cuda
