// Elementwise arithmetic kernels: a op b with broadcasting, and tensor-scalar ops.
//
// Binary ops take each operand as a pointer plus element strides over the output's shape (0 along
// broadcast dimensions), so one kernel serves same-shape, bias-like "(.., C) op (C)" and general
// broadcasting; it picks a flat loop when both operands are dense, a row loop when one is a single
// broadcast row, and a strided walk otherwise. Backward kernels ADD into their gradient buffers and
// accept nullptr for an operand whose gradient is not needed.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// out (shape, contiguous) = a op b; a, b given by their strides over `shape` (0 = broadcast)
void add_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);
void sub_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);
void mul_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);
void div_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);

// The backward kernels below cover the two layouts worth a fused pass: a and b both dense (N), and
// "rows": a (rows, C) dense with b one broadcast row (C). In the rows layout db is a column sum,
// computed per thread in float blocks and combined in double so long columns stay accurate.
// General broadcasting backward is composed in ops/elementwise.cpp from mul_forward and sum_to.

// dout (N) -> da (N) += dout; db (N) += sign * dout   (sign +1 for add, -1 for sub)
void add_backward(float* da, float* db, const float* dout, int64_t n, float sign);
// dout (rows, C) -> da (rows, C) += dout; db (C) += sign * column sums of dout
void add_rows_backward(float* da, float* db, const float* dout, int64_t rows, int64_t C, float sign);
// dout, a, b (N) -> da (N) += dout * b; db (N) += dout * a
void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
// dout, a (rows, C), b (C) -> da (rows, C) += dout * b; db (C) += column sums of dout * a
void mul_rows_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t rows, int64_t C);
// dout, a, b (N) -> da (N) += dout / b; db (N) -= dout * a / b^2
void div_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n);
// dout, a (rows, C), b (C) -> da (rows, C) += dout / b; db (C) -= column sums of dout * a / b^2
void div_rows_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t rows, int64_t C);

// inp (N) -> out (N) = inp * s
void scale_forward(float* out, const float* inp, float s, int64_t n);
// dout (N) -> dinp (N) += dout * s
void scale_backward(float* dinp, const float* dout, float s, int64_t n);
// inp (N) -> out (N) = inp + s
void add_scalar_forward(float* out, const float* inp, float s, int64_t n);

TG_CPU_ISA_END
}  // namespace tg::cpu
