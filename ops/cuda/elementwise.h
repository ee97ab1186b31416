// CUDA launchers for the elementwise arithmetic kernels (the CUDA side of ops/cpu/elementwise.h).
// Every tensor pointer holds elements of `dtype` (F32, BF16 or F16); the kernels load, compute in
// f32 and round once on store. Backward launchers ADD into their gradient buffers (read, add in
// f32, round) and accept nullptr for a gradient that is not needed. All run on cuda::stream()
// without synchronizing.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace tg::cuda {

// out (shape, contiguous) = a op b; a, b given by element strides over `shape` (0 = broadcast).
// Dimensions are merged first as on the CPU; at most 8 may remain (throws naming the op otherwise).
// Fast paths: a and b dense, or one of them a single broadcast row (C) or element against a dense
// (rows, C) other, with 16-byte accesses when the pointers are 16-byte aligned (and C a multiple of
// the pack size); anything else takes a strided walk.
void add_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);
void sub_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);
void mul_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);
void div_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape);

// dout (N) -> da (N) += dout; db (N) += sign * dout   (sign +1 for add, -1 for sub)
void add_backward(DType dtype, void* da, void* db, const void* dout, int64_t n, float sign);
// dout, a, b (N) -> da (N) += dout * b; db (N) += dout * a
void mul_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t n);
// dout, a, b (N) -> da (N) += dout / b; db (N) -= dout * a / b^2
void div_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t n);

// The rows layout: a (rows, C) dense, b one row (C) broadcast over the rows. db is a column sum,
// computed deterministically in two passes: blocks of rows write f32 partial sums into `scratch`,
// then one thread per column adds them in a fixed order. `scratch` holds
// rows_backward_scratch_floats(rows, C) f32 elements; when that is 0 (one block of rows covers
// everything) or db is null it is not touched and may be null.
int64_t rows_backward_scratch_floats(int64_t rows, int64_t C);
// dout (rows, C) -> da (rows, C) += dout; db (C) += sign * column sums of dout
void add_rows_backward(DType dtype, void* da, void* db, const void* dout, int64_t rows, int64_t C, float sign,
                       float* scratch);
// dout, a (rows, C), b (C) -> da (rows, C) += dout * b; db (C) += column sums of dout * a
void mul_rows_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t rows,
                       int64_t C, float* scratch);
// dout, a (rows, C), b (C) -> da (rows, C) += dout / b; db (C) -= column sums of dout * a / b^2
void div_rows_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t rows,
                       int64_t C, float* scratch);

// inp (N) -> out (N) = inp * s
void scale_forward(DType dtype, void* out, const void* inp, float s, int64_t n);
// dout (N) -> dinp (N) += dout * s
void scale_backward(DType dtype, void* dinp, const void* dout, float s, int64_t n);
// inp (N) -> out (N) = inp + s
void add_scalar_forward(DType dtype, void* out, const void* inp, float s, int64_t n);

}  // namespace tg::cuda
