// LayerNorm over the last dimension, f32, rows of C contiguous floats.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// inp (N,C) -> out (N,C); mean, rstd (N). weight, bias (C), either may be null (scale 1, shift 0).
// Biased variance, as PyTorch: rstd = 1 / sqrt(mean((x - mean)^2) + eps).
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps);

// a, b (N,C) -> residual (N,C) = a + b; out (N,C) = layernorm(residual); mean, rstd (N): the residual
// add of a transformer block and the LayerNorm after it in one pass over each row, bit for bit the
// two ops in turn. weight, bias as above.
void add_layernorm_forward(float* residual, float* out, float* mean, float* rstd, const float* a, const float* b,
                           const float* weight, const float* bias, int64_t N, int64_t C, float eps);

// dinp (N,C) +=, dweight (C) +=, dbias (C) += from dout (N,C), inp (N,C), weight (C), mean, rstd (N).
// Any of dinp, dweight, dbias may be null (not wanted); weight may be null (scale 1). The parameter
// gradients are summed over fixed row chunks and then in chunk order, so their bits depend on N and
// C only: not on the thread count or the schedule.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C);

// The pieces of layernorm_backward, for a caller that feeds it a few rows at a time (the bf16/f16
// front stages rows into f32 scratch): chunk k of layernorm_backward_chunks(N) covers rows
// [k*N/chunks, (k+1)*N/chunks). Running layernorm_backward_rows over each chunk's rows in order (in
// one call or several), each chunk into its own zeroed partial rows, then adding the partials into
// dweight and dbias with layernorm_backward_add_partials gives layernorm_backward's bits.
int64_t layernorm_backward_chunks(int64_t N);
// rows of dout, inp (rows,C) -> dinp (rows,C) +=; partial_dweight, partial_dbias (C) += the rows'
// terms, row by row. dinp, or both partials, may be null; weight may not (pass ones).
void layernorm_backward_rows(float* dinp, float* partial_dweight, float* partial_dbias, const float* dout,
                             const float* inp, const float* weight, const float* mean, const float* rstd, int64_t rows,
                             int64_t C);
// partial (chunks, 2, C): each chunk's dweight row then dbias row -> dweight, dbias (C) += their
// sum in chunk order (either may be null).
void layernorm_backward_add_partials(float* dweight, float* dbias, const float* partial, int64_t chunks, int64_t C);

TG_CPU_ISA_END
}  // namespace tg::cpu
