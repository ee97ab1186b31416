// Matrix products on Tensors: the device-dispatching front of the GEMM family (ops/cpu/gemm.h).
#pragma once
#include "tensor/tensor.h"

namespace tg::cpu {
class PackedB;  // ops/cpu/gemm.h
}

namespace tg::ops {

// out = op(a) @ op(b) + beta * out, where op(x) is x, or x with its last two dims swapped when
// trans_x. a, b and out share one float dtype: f32, bf16 or f16 (halves: f32 accumulation, out
// rounded once; on the CPU bf16 runs on AVX512_BF16 where the CPU has it, f16 widened to f32). beta == 0 overwrites out (its old contents, even NaN, are
// ignored); beta == 1 accumulates (the backward passes add into gradient buffers this way, with no temporaries).
//   2-D:   op(a) (M,K) @ op(b) (K,N) -> out (M,N)
//   3-D:   op(a) (B,M,K) @ op(b) (B,K,N) -> out (B,M,N); a 2-D a or b is shared by every item
// a and b must be row-major in their last two dims (row stride >= row length) or a transposed
// view of that (strides (1, ld)): a transposed view is read as the opposite trans flag, never
// copied. Batch strides are free. out must be contiguous. Throws tg::Error naming "matmul" and
// the shapes when they do not fit.
// packed_b, when given, is b already packed for the CPU's f32 GEMM (cpu::PackedB of b's storage,
// read as this call reads it: checked), for many products with one b, such as the blockwise MLP's
// chunks times one weight; the result is bit for bit the unpacked call's. It needs 2-D f32 operands
// on the CPU.
void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false,
            float beta = 0.0f, const cpu::PackedB* packed_b = nullptr);

// True when matmul can read t's last two dims in place (row-major or a transposed view);
// otherwise call t.contiguous() first.
bool matmul_readable(const Tensor& t);

// True when a GEMM of `dtype` on `device` runs on the CPU's bf16 dot-product instruction
// (vdpbf16ps, AVX512_BF16), whose peak is not the FMA units': the profiler judges it against that.
bool gemm_runs_on_bf16_dot(DType dtype, Device device);

// What ops::linear fuses after x W^T + b (on CUDA into the GEMM's epilogue; on the CPU as
// separate passes with the same result):
//   gelu       out = gelu(v) instead of v (the tanh approximation of ops/activation.h); in bf16 or
//              f16, gelu(u) of u = v rounded to the dtype, the pre-activation as stored
//   pre_gelu   with gelu, when defined: receives v, the pre-activation a backward needs
//   residual   when defined: out = residual + ..., added last (residual may be out itself)
// pre_gelu and residual have out's shape and dtype and are contiguous.
struct LinearEpilogue {
  bool gelu = false;
  Tensor pre_gelu;
  Tensor residual;
};

// out (M, OUT) = x (M, IN) @ weight (OUT, IN)^T + bias (OUT), then the epilogue. bias may be
// undefined (no bias). x and weight as matmul reads them (row-major or a transposed view); out
// contiguous; all one float dtype (f32, bf16 or f16). On CUDA this is one GEMM with bias, GELU and
// residual in its epilogue; on the CPU the bias rows, a GEMM adding onto them, then the GELU and
// residual passes (in bf16/f16: on an f32 copy of v, out rounded once, as on CUDA).
// packed_weight: weight^T already packed for the CPU's f32 GEMM, as matmul's packed_b.
void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
            const LinearEpilogue& epilogue = LinearEpilogue(), const cpu::PackedB* packed_weight = nullptr);

// out (M,N): every row = bias (N). The start of a Linear output, before its GEMM adds with beta = 1.
void broadcast_rows(Tensor& out, const Tensor& bias);

// dbias (N) += column sums of dout (M,N): the bias gradient of Linear. Deterministic on both
// devices (fixed summation order).
void column_sums_accumulate(Tensor& dbias, const Tensor& dout);

}  // namespace tg::ops
