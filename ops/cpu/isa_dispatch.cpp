// The public entry points of the CPU kernels, which are compiled once per instruction-set level
// (ISA_SRCS in the Makefile: every kernel file of ops/cpu/): each forwards to the active level's
// copy (ops/cpu/isa.h). Compiled for baseline x86-64 like the rest of the library; the one place
// that lists what is dispatched.
#include <algorithm>

#include "ops/cpu/accumulate.h"
#include "ops/cpu/activation.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/batchnorm.h"
#include "ops/cpu/concat.h"
#include "ops/cpu/conv2d.h"
#include "ops/cpu/conv2d_depthwise.h"
#include "ops/cpu/conv2d_winograd.h"
#include "ops/cpu/crossentropy.h"
#include "ops/cpu/dropout.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/embedding.h"
#include "ops/cpu/fma_peak.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/half_convert.h"
#include "ops/cpu/isa.h"
#include "ops/cpu/layernorm.h"
#include "ops/cpu/optim.h"
#include "ops/cpu/pool.h"
#include "ops/cpu/reduce.h"
#include "ops/cpu/rnn.h"
#include "ops/cpu/softmax.h"
#include "tensor/cpu_allocator.h"

namespace tg::cpu {

// ---- gemm.h ---------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(gemm)
TG_CPU_ISA_DECLARE(gemm_batched)
TG_CPU_ISA_DECLARE(broadcast_rows)
TG_CPU_ISA_DECLARE(column_sums_accumulate)
TG_CPU_ISA_DECLARE(broadcast_rows_half)
TG_CPU_ISA_DECLARE(column_sums_accumulate_half)
TG_CPU_ISA_DECLARE(linear_epilogue_half)
TG_CPU_ISA_DECLARE(gemm_kernel_name)
TG_CPU_ISA_DECLARE(gemm_packed)
TG_CPU_ISA_DECLARE(gemm_mr)
TG_CPU_ISA_DECLARE(gemm_nr)
TG_CPU_ISA_DECLARE(gemm_kc)
TG_CPU_ISA_DECLARE(gemm_pack_matrix_a)
TG_CPU_ISA_DECLARE(gemm_pack_matrix_b)
TG_CPU_ISA_DECLARE(pack_a_rows)

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  TG_CPU_ISA_CALL(gemm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch, int64_t stride_a,
                  int64_t stride_b, int64_t stride_c) {
  TG_CPU_ISA_CALL(gemm_batched, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a,
                  stride_b, stride_c);
}

void broadcast_rows(float* out, const float* bias, int64_t M, int64_t N) {
  TG_CPU_ISA_CALL(broadcast_rows, out, bias, M, N);
}

void column_sums_accumulate(float* dbias, const float* dout, int64_t M, int64_t N) {
  TG_CPU_ISA_CALL(column_sums_accumulate, dbias, dout, M, N);
}

void broadcast_rows_half(DType dtype, uint16_t* out, const uint16_t* bias, int64_t M, int64_t N) {
  TG_CPU_ISA_CALL(broadcast_rows_half, dtype, out, bias, M, N);
}

void column_sums_accumulate_half(DType dtype, uint16_t* dbias, const uint16_t* dout, int64_t M, int64_t N) {
  TG_CPU_ISA_CALL(column_sums_accumulate_half, dtype, dbias, dout, M, N);
}

void linear_epilogue_half(DType dtype, uint16_t* out, uint16_t* pre_gelu, const float* v, bool gelu,
                          const uint16_t* residual, int64_t n) {
  TG_CPU_ISA_CALL(linear_epilogue_half, dtype, out, pre_gelu, v, gelu, residual, n);
}

const char* gemm_kernel_name() { return TG_CPU_ISA_CALL(gemm_kernel_name); }

void gemm_packed(int64_t M, int64_t N, int64_t K, float alpha, const GemmPackA& a, const GemmPackB& b, float beta,
                 float* C, int64_t ldc) {
  TG_CPU_ISA_CALL(gemm_packed, M, N, K, alpha, a, b, beta, C, ldc);
}

int gemm_mr() { return TG_CPU_ISA_CALL(gemm_mr); }
int gemm_nr() { return TG_CPU_ISA_CALL(gemm_nr); }
int64_t gemm_kc() { return TG_CPU_ISA_CALL(gemm_kc); }

void gemm_pack_matrix_a(bool trans, const float* a, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t k, int mr,
                        float* a_pack) {
  TG_CPU_ISA_CALL(gemm_pack_matrix_a, trans, a, ld, i0, m, p0, k, mr, a_pack);
}

void gemm_pack_matrix_b(bool trans, const float* b, int64_t ld, int64_t p0, int64_t k, int64_t j0, int64_t n, int nr,
                        float* b_pack) {
  TG_CPU_ISA_CALL(gemm_pack_matrix_b, trans, b, ld, p0, k, j0, n, nr, b_pack);
}

void pack_a_rows(const float* const* rows, int64_t k, int mr, float* sliver) {
  TG_CPU_ISA_CALL(pack_a_rows, rows, k, mr, sliver);
}

// The stored-matrix packers are shared by every level's GEMM: they pack for the tile it asks.
void MatrixPackA::pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const {
  gemm_pack_matrix_a(trans_, a_, ld_, i0, m, p0, k, mr, a_pack);
}

void MatrixPackB::pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const {
  gemm_pack_matrix_b(trans_, b_, ld_, p0, k, j0, n, nr, b_pack);
}

void PackedB::Free::operator()(float* p) const { cpu_deallocate(p, bytes); }

PackedB::PackedB(bool trans, const float* b, int64_t ld, int64_t K, int64_t N)
    : source_(trans, b, ld), K_(std::max<int64_t>(K, 0)), N_(std::max<int64_t>(N, 0)), kc_(gemm_kc()), nr_(gemm_nr()),
      panels_(nullptr, Free{0}) {
  const int64_t n_padded = (N_ + nr_ - 1) / nr_ * nr_;
  // 16 floats of slack past the end, as every pack buffer has (GemmPackB::pack may write there).
  const size_t bytes = (static_cast<size_t>(K_ * n_padded) + 16) * sizeof(float);
  panels_ = std::unique_ptr<float, Free>(static_cast<float*>(cpu_allocate(bytes)), Free{bytes});
  // K block by K block, each written whole by one pack call (its slivers in order, which is what
  // the slack rule of pack() asks), in the layout packed() hands out.
  for (int64_t p0 = 0; p0 < K_; p0 += kc_)
    source_.pack(p0, std::min(kc_, K_ - p0), 0, N_, nr_, panels_.get() + p0 * n_padded);
}

void PackedB::pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const {
  source_.pack(p0, k, j0, n, nr, b_pack);
}

const float* PackedB::packed(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr) const {
  // Only a block the stored layout holds as one run: this tile, a whole K block of this blocking,
  // and whole slivers (the last may end at N).
  if (nr != nr_ || p0 % kc_ != 0 || k != std::min(kc_, K_ - p0) || j0 % nr_ != 0 || n <= 0 || j0 + n > N_ ||
      (n % nr_ != 0 && j0 + n != N_))
    return nullptr;
  const int64_t n_padded = (N_ + nr_ - 1) / nr_ * nr_;
  return panels_.get() + p0 * n_padded + j0 * k;
}

// ---- conv2d.h -------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(conv2d_forward)
TG_CPU_ISA_DECLARE(conv2d_backward_input)
TG_CPU_ISA_DECLARE(conv2d_backward_weight)

void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dGeometry& g) {
  TG_CPU_ISA_CALL(conv2d_forward, out, x, weight, bias, g);
}

void conv2d_backward_input(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g) {
  TG_CPU_ISA_CALL(conv2d_backward_input, dx, dout, weight, g);
}

void conv2d_backward_weight(float* dweight, float* dbias, const float* dout, const float* x, const Conv2dGeometry& g) {
  TG_CPU_ISA_CALL(conv2d_backward_weight, dweight, dbias, dout, x, g);
}

// ---- crossentropy.h -------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(crossentropy_forward)
TG_CPU_ISA_DECLARE(crossentropy_backward)
TG_CPU_ISA_DECLARE(vector_exp)

void crossentropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                          int32_t ignore_index, float label_smoothing) {
  TG_CPU_ISA_CALL(crossentropy_forward, loss, lse, logits, targets, N, V, ignore_index, label_smoothing);
}

void crossentropy_backward(float* dlogits, const float* dloss, const float* logits, const int32_t* targets,
                           const float* lse, int64_t N, int64_t V, int32_t ignore_index, float label_smoothing) {
  TG_CPU_ISA_CALL(crossentropy_backward, dlogits, dloss, logits, targets, lse, N, V, ignore_index, label_smoothing);
}

void vector_exp(float* out, const float* in, int64_t n) { TG_CPU_ISA_CALL(vector_exp, out, in, n); }

// ---- attention.h ----------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(attention_forward)
TG_CPU_ISA_DECLARE(attention_backward)

void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t C, int64_t NH) {
  TG_CPU_ISA_CALL(attention_forward, out, lse, qkv, B, T, C, NH);
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse, int64_t B,
                        int64_t T, int64_t C, int64_t NH) {
  TG_CPU_ISA_CALL(attention_backward, dqkv, dout, qkv, out, lse, B, T, C, NH);
}

// ---- optim.h --------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(adamw_update)
TG_CPU_ISA_DECLARE(adamw_update_half)
TG_CPU_ISA_DECLARE(adamw_update_bf16_split)
TG_CPU_ISA_DECLARE(sgd_update)
TG_CPU_ISA_DECLARE(sum_of_squares)
TG_CPU_ISA_DECLARE(sum_of_squares_half)
TG_CPU_ISA_DECLARE(scale)
TG_CPU_ISA_DECLARE(scale_half)

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
  TG_CPU_ISA_CALL(adamw_update, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

void adamw_update_half(DType dtype, uint16_t* param, const uint16_t* grad, float* master, float* m, float* v, int64_t n,
                       float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step, bool stochastic,
                       uint64_t rounding_key) {
  TG_CPU_ISA_CALL(adamw_update_half, dtype, param, grad, master, m, v, n, lr, beta1, beta2, eps, weight_decay, step,
                  stochastic, rounding_key);
}

void adamw_update_bf16_split(uint16_t* param, const uint16_t* grad, uint16_t* low, float* m, float* v, int64_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  TG_CPU_ISA_CALL(adamw_update_bf16_split, param, grad, low, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
}

void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step) {
  TG_CPU_ISA_CALL(sgd_update, param, grad, momentum_buf, n, lr, momentum, dampening, weight_decay, nesterov,
                  first_step);
}

double sum_of_squares(const float* x, int64_t n) { return TG_CPU_ISA_CALL(sum_of_squares, x, n); }

double sum_of_squares_half(DType dtype, const uint16_t* x, int64_t n) {
  return TG_CPU_ISA_CALL(sum_of_squares_half, dtype, x, n);
}

bool scale(float* x, int64_t n, float s, bool check) { return TG_CPU_ISA_CALL(scale, x, n, s, check); }

bool scale_half(DType dtype, uint16_t* x, int64_t n, float s, bool check) {
  return TG_CPU_ISA_CALL(scale_half, dtype, x, n, s, check);
}

// ---- accumulate.h -------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(accumulate_strided)

void accumulate_strided(float* dst, const std::vector<int64_t>& dst_strides, const float* src,
                        const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape) {
  TG_CPU_ISA_CALL(accumulate_strided, dst, dst_strides, src, src_strides, shape);
}

// ---- activation.h -------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(gelu_forward)
TG_CPU_ISA_DECLARE(gelu_backward)
TG_CPU_ISA_DECLARE(relu_forward)
TG_CPU_ISA_DECLARE(relu_backward)
TG_CPU_ISA_DECLARE(tanh_forward)
TG_CPU_ISA_DECLARE(tanh_backward)
TG_CPU_ISA_DECLARE(sigmoid_forward)
TG_CPU_ISA_DECLARE(sigmoid_backward)
TG_CPU_ISA_DECLARE(silu_forward)
TG_CPU_ISA_DECLARE(silu_backward)

void gelu_forward(float* out, const float* inp, int64_t n) { TG_CPU_ISA_CALL(gelu_forward, out, inp, n); }

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  TG_CPU_ISA_CALL(gelu_backward, dinp, inp, dout, n);
}

void relu_forward(float* out, const float* inp, int64_t n) { TG_CPU_ISA_CALL(relu_forward, out, inp, n); }

void relu_backward(float* dinp, const float* out, const float* dout, int64_t n) {
  TG_CPU_ISA_CALL(relu_backward, dinp, out, dout, n);
}

void tanh_forward(float* out, const float* inp, int64_t n) { TG_CPU_ISA_CALL(tanh_forward, out, inp, n); }

void tanh_backward(float* dinp, const float* out, const float* dout, int64_t n) {
  TG_CPU_ISA_CALL(tanh_backward, dinp, out, dout, n);
}

void sigmoid_forward(float* out, const float* inp, int64_t n) { TG_CPU_ISA_CALL(sigmoid_forward, out, inp, n); }

void sigmoid_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  TG_CPU_ISA_CALL(sigmoid_backward, dinp, inp, dout, n);
}

void silu_forward(float* out, const float* inp, int64_t n) { TG_CPU_ISA_CALL(silu_forward, out, inp, n); }

void silu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  TG_CPU_ISA_CALL(silu_backward, dinp, inp, dout, n);
}

// ---- batchnorm.h --------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(batchnorm_forward_train)
TG_CPU_ISA_DECLARE(batchnorm_forward_eval)
TG_CPU_ISA_DECLARE(batchnorm_backward)
TG_CPU_ISA_DECLARE(batchnorm_moments)
TG_CPU_ISA_DECLARE(batchnorm_normalise)
TG_CPU_ISA_DECLARE(batchnorm_gradient_sums)
TG_CPU_ISA_DECLARE(batchnorm_input_gradient)

void batchnorm_moments(double* mean, double* m2, const float* x, int64_t M, int64_t C) {
  TG_CPU_ISA_CALL(batchnorm_moments, mean, m2, x, M, C);
}

void batchnorm_normalise(float* out, const float* x, const float* weight, const float* bias, const float* mean,
                         const float* rstd, int64_t M, int64_t C, bool relu) {
  TG_CPU_ISA_CALL(batchnorm_normalise, out, x, weight, bias, mean, rstd, M, C, relu);
}

void batchnorm_gradient_sums(double* sum_g, double* sum_gx, const float* dout, const float* x, const float* weight,
                             const float* bias, const float* mean, const float* rstd, int64_t M, int64_t C, bool relu) {
  TG_CPU_ISA_CALL(batchnorm_gradient_sums, sum_g, sum_gx, dout, x, weight, bias, mean, rstd, M, C, relu);
}

void batchnorm_input_gradient(float* dx, const float* dout, const float* x, const float* weight, const float* bias,
                              const float* mean, const float* rstd, const double* sum_g, const double* sum_gx,
                              double rows, int64_t M, int64_t C, bool relu) {
  TG_CPU_ISA_CALL(batchnorm_input_gradient, dx, dout, x, weight, bias, mean, rstd, sum_g, sum_gx, rows, M, C, relu);
}

void batchnorm_forward_train(float* out, float* mean, float* rstd, float* running_mean, float* running_var,
                             const float* x, const float* weight, const float* bias, int64_t M, int64_t C,
                             float momentum, float eps, bool relu) {
  TG_CPU_ISA_CALL(batchnorm_forward_train, out, mean, rstd, running_mean, running_var, x, weight, bias, M, C, momentum,
                  eps, relu);
}

void batchnorm_forward_eval(float* out, float* mean, float* rstd, const float* x, const float* weight,
                            const float* bias, const float* running_mean, const float* running_var, int64_t M,
                            int64_t C, float eps, bool relu) {
  TG_CPU_ISA_CALL(batchnorm_forward_eval, out, mean, rstd, x, weight, bias, running_mean, running_var, M, C, eps, relu);
}

void batchnorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x, const float* weight,
                        const float* bias, const float* mean, const float* rstd, int64_t M, int64_t C, bool training,
                        bool relu) {
  TG_CPU_ISA_CALL(batchnorm_backward, dx, dweight, dbias, dout, x, weight, bias, mean, rstd, M, C, training, relu);
}

// ---- concat.h -----------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(concat_forward)

void concat_forward(void* out, const std::vector<const void*>& inputs, const std::vector<int64_t>& run_bytes,
                    int64_t outer) {
  TG_CPU_ISA_CALL(concat_forward, out, inputs, run_bytes, outer);
}

// ---- conv2d_depthwise.h -------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(conv2d_depthwise_forward)
TG_CPU_ISA_DECLARE(conv2d_depthwise_backward_input)
TG_CPU_ISA_DECLARE(conv2d_depthwise_backward_weight)

void conv2d_depthwise_forward(float* out, const float* x, const float* weight, const float* bias,
                              const Conv2dGeometry& g) {
  TG_CPU_ISA_CALL(conv2d_depthwise_forward, out, x, weight, bias, g);
}

void conv2d_depthwise_backward_input(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g) {
  TG_CPU_ISA_CALL(conv2d_depthwise_backward_input, dx, dout, weight, g);
}

void conv2d_depthwise_backward_weight(float* dweight, const float* dout, const float* x, const Conv2dGeometry& g) {
  TG_CPU_ISA_CALL(conv2d_depthwise_backward_weight, dweight, dout, x, g);
}

// ---- dropout.h ----------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(dropout_forward)
TG_CPU_ISA_DECLARE(dropout_backward)

void dropout_forward(float* out, const float* inp, int64_t n, float p, uint64_t key) {
  TG_CPU_ISA_CALL(dropout_forward, out, inp, n, p, key);
}

void dropout_backward(float* dinp, const float* dout, int64_t n, float p, uint64_t key) {
  TG_CPU_ISA_CALL(dropout_backward, dinp, dout, n, p, key);
}

// ---- elementwise.h ------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(add_forward)
TG_CPU_ISA_DECLARE(sub_forward)
TG_CPU_ISA_DECLARE(mul_forward)
TG_CPU_ISA_DECLARE(div_forward)
TG_CPU_ISA_DECLARE(add_backward)
TG_CPU_ISA_DECLARE(add_rows_backward)
TG_CPU_ISA_DECLARE(mul_backward)
TG_CPU_ISA_DECLARE(mul_rows_backward)
TG_CPU_ISA_DECLARE(div_backward)
TG_CPU_ISA_DECLARE(div_rows_backward)
TG_CPU_ISA_DECLARE(scale_forward)
TG_CPU_ISA_DECLARE(scale_backward)
TG_CPU_ISA_DECLARE(add_scalar_forward)

void add_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  TG_CPU_ISA_CALL(add_forward, out, a, a_strides, b, b_strides, shape);
}

void sub_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  TG_CPU_ISA_CALL(sub_forward, out, a, a_strides, b, b_strides, shape);
}

void mul_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  TG_CPU_ISA_CALL(mul_forward, out, a, a_strides, b, b_strides, shape);
}

void div_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  TG_CPU_ISA_CALL(div_forward, out, a, a_strides, b, b_strides, shape);
}

void add_backward(float* da, float* db, const float* dout, int64_t n, float sign) {
  TG_CPU_ISA_CALL(add_backward, da, db, dout, n, sign);
}

void add_rows_backward(float* da, float* db, const float* dout, int64_t rows, int64_t C, float sign) {
  TG_CPU_ISA_CALL(add_rows_backward, da, db, dout, rows, C, sign);
}

void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
  TG_CPU_ISA_CALL(mul_backward, da, db, dout, a, b, n);
}

void mul_rows_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t rows,
                       int64_t C) {
  TG_CPU_ISA_CALL(mul_rows_backward, da, db, dout, a, b, rows, C);
}

void div_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
  TG_CPU_ISA_CALL(div_backward, da, db, dout, a, b, n);
}

void div_rows_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t rows,
                       int64_t C) {
  TG_CPU_ISA_CALL(div_rows_backward, da, db, dout, a, b, rows, C);
}

void scale_forward(float* out, const float* inp, float s, int64_t n) { TG_CPU_ISA_CALL(scale_forward, out, inp, s, n); }

void scale_backward(float* dinp, const float* dout, float s, int64_t n) {
  TG_CPU_ISA_CALL(scale_backward, dinp, dout, s, n);
}

void add_scalar_forward(float* out, const float* inp, float s, int64_t n) {
  TG_CPU_ISA_CALL(add_scalar_forward, out, inp, s, n);
}

// ---- embedding.h --------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(embedding_forward)
TG_CPU_ISA_DECLARE(embedding_backward)

void embedding_forward(float* out, const int32_t* ids, const float* weight, int64_t N, int64_t C) {
  TG_CPU_ISA_CALL(embedding_forward, out, ids, weight, N, C);
}

void embedding_backward(float* dweight, const float* dout, const int32_t* ids, int64_t N, int64_t C) {
  TG_CPU_ISA_CALL(embedding_backward, dweight, dout, ids, N, C);
}

// ---- layernorm.h --------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(layernorm_forward)
TG_CPU_ISA_DECLARE(add_layernorm_forward)
TG_CPU_ISA_DECLARE(layernorm_backward)
TG_CPU_ISA_DECLARE(layernorm_backward_chunks)
TG_CPU_ISA_DECLARE(layernorm_backward_rows)
TG_CPU_ISA_DECLARE(layernorm_backward_add_partials)

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps) {
  TG_CPU_ISA_CALL(layernorm_forward, out, mean, rstd, inp, weight, bias, N, C, eps);
}

void add_layernorm_forward(float* residual, float* out, float* mean, float* rstd, const float* a, const float* b,
                           const float* weight, const float* bias, int64_t N, int64_t C, float eps) {
  TG_CPU_ISA_CALL(add_layernorm_forward, residual, out, mean, rstd, a, b, weight, bias, N, C, eps);
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) {
  TG_CPU_ISA_CALL(layernorm_backward, dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

int64_t layernorm_backward_chunks(int64_t N) { return TG_CPU_ISA_CALL(layernorm_backward_chunks, N); }

void layernorm_backward_rows(float* dinp, float* partial_dweight, float* partial_dbias, const float* dout,
                             const float* inp, const float* weight, const float* mean, const float* rstd, int64_t rows,
                             int64_t C) {
  TG_CPU_ISA_CALL(layernorm_backward_rows, dinp, partial_dweight, partial_dbias, dout, inp, weight, mean, rstd, rows, C);
}

void layernorm_backward_add_partials(float* dweight, float* dbias, const float* partial, int64_t chunks, int64_t C) {
  TG_CPU_ISA_CALL(layernorm_backward_add_partials, dweight, dbias, partial, chunks, C);
}

// ---- pool.h -------------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(maxpool2d_forward)
TG_CPU_ISA_DECLARE(maxpool2d_backward)
TG_CPU_ISA_DECLARE(avgpool2d_forward)
TG_CPU_ISA_DECLARE(avgpool2d_backward)

void maxpool2d_forward(float* out, int32_t* argmax, const float* x, int64_t N, int64_t C, const MaxPoolGeometry& g) {
  TG_CPU_ISA_CALL(maxpool2d_forward, out, argmax, x, N, C, g);
}

void maxpool2d_backward(float* dx, const float* dout, const int32_t* argmax, int64_t N, int64_t C,
                        const MaxPoolGeometry& g) {
  TG_CPU_ISA_CALL(maxpool2d_backward, dx, dout, argmax, N, C, g);
}

void avgpool2d_forward(float* out, const float* x, int64_t N, int64_t H, int64_t W, int64_t C, const PoolBin* h_bins,
                       int64_t P, const PoolBin* w_bins, int64_t Q) {
  TG_CPU_ISA_CALL(avgpool2d_forward, out, x, N, H, W, C, h_bins, P, w_bins, Q);
}

void avgpool2d_backward(float* dx, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, const PoolBin* h_bins,
                        int64_t P, const PoolBin* w_bins, int64_t Q) {
  TG_CPU_ISA_CALL(avgpool2d_backward, dx, dout, N, H, W, C, h_bins, P, w_bins, Q);
}

// ---- reduce.h -----------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(sum_forward)
TG_CPU_ISA_DECLARE(sum_backward)

void sum_forward(float* out, const float* inp, int64_t outer, int64_t size, int64_t inner, float scale) {
  TG_CPU_ISA_CALL(sum_forward, out, inp, outer, size, inner, scale);
}

void sum_backward(float* dinp, const float* dout, int64_t outer, int64_t size, int64_t inner, float scale) {
  TG_CPU_ISA_CALL(sum_backward, dinp, dout, outer, size, inner, scale);
}

// ---- rnn.h --------------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(lstm_cell_forward)
TG_CPU_ISA_DECLARE(lstm_cell_backward)
TG_CPU_ISA_DECLARE(gru_cell_forward)
TG_CPU_ISA_DECLARE(gru_cell_backward)

void lstm_cell_forward(float* h, float* c, float* gates, const float* gates_x, const float* gates_h,
                       const float* c_prev, int64_t B, int64_t H) {
  TG_CPU_ISA_CALL(lstm_cell_forward, h, c, gates, gates_x, gates_h, c_prev, B, H);
}

void lstm_cell_backward(float* dgates_x, float* dgates_h, float* dc_prev, const float* gates, const float* c_prev,
                        const float* c, const float* dh, const float* dc, int64_t B, int64_t H) {
  TG_CPU_ISA_CALL(lstm_cell_backward, dgates_x, dgates_h, dc_prev, gates, c_prev, c, dh, dc, B, H);
}

void gru_cell_forward(float* h, float* saved, const float* gates_x, const float* gates_h, const float* h_prev,
                      int64_t B, int64_t H) {
  TG_CPU_ISA_CALL(gru_cell_forward, h, saved, gates_x, gates_h, h_prev, B, H);
}

void gru_cell_backward(float* dgates_x, float* dgates_h, float* dh_prev, const float* saved, const float* h_prev,
                       const float* dh, int64_t B, int64_t H) {
  TG_CPU_ISA_CALL(gru_cell_backward, dgates_x, dgates_h, dh_prev, saved, h_prev, dh, B, H);
}

// ---- softmax.h ----------------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(softmax_forward)
TG_CPU_ISA_DECLARE(softmax_backward)
TG_CPU_ISA_DECLARE(log_softmax_forward)
TG_CPU_ISA_DECLARE(log_softmax_backward)

void softmax_forward(float* out, const float* inp, int64_t rows, int64_t C) {
  TG_CPU_ISA_CALL(softmax_forward, out, inp, rows, C);
}

void softmax_backward(float* dinp, const float* out, const float* dout, int64_t rows, int64_t C) {
  TG_CPU_ISA_CALL(softmax_backward, dinp, out, dout, rows, C);
}

void log_softmax_forward(float* out, const float* inp, int64_t rows, int64_t C) {
  TG_CPU_ISA_CALL(log_softmax_forward, out, inp, rows, C);
}

void log_softmax_backward(float* dinp, const float* out, const float* dout, int64_t rows, int64_t C) {
  TG_CPU_ISA_CALL(log_softmax_backward, dinp, out, dout, rows, C);
}

// ---- conv2d_winograd.h -------------------------------------------------------------------------
// Overloaded, so each level's form with a tile is declared by its type.
using WinogradForward = void(float*, const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                             int64_t, int64_t, int64_t, WinogradTile);
using WinogradBackwardInput = void(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                   int64_t, int64_t, WinogradTile);
#define TG_DECLARE_WINOGRAD(level, unused)              \
  namespace level {                                     \
  WinogradForward conv2d_winograd_forward;              \
  WinogradBackwardInput conv2d_winograd_backward_input; \
  }
TG_CPU_ISA_LEVELS(TG_DECLARE_WINOGRAD, none)

void conv2d_winograd_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N, int64_t H,
                             int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w, WinogradTile tile) {
  cpu_isa_pick<WinogradForward>({TG_CPU_ISA_LEVELS(TG_CPU_ISA_ADDRESS_ONE, conv2d_winograd_forward)})(
      out, x, weight, bias, N, H, W, C, K, pad_h, pad_w, tile);
}

void conv2d_winograd_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N, int64_t H,
                             int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w) {
  const WinogradTile tile = winograd_default_tile(H + 2 * pad_h - 2, W + 2 * pad_w - 2);
  conv2d_winograd_forward(out, x, weight, bias, N, H, W, C, K, pad_h, pad_w, tile);
}

void conv2d_winograd_backward_input(float* dx, const float* dout, const float* weight, int64_t N, int64_t H, int64_t W,
                                    int64_t C, int64_t K, int64_t pad_h, int64_t pad_w, WinogradTile tile) {
  cpu_isa_pick<WinogradBackwardInput>({TG_CPU_ISA_LEVELS(TG_CPU_ISA_ADDRESS_ONE, conv2d_winograd_backward_input)})(
      dx, dout, weight, N, H, W, C, K, pad_h, pad_w, tile);
}

void conv2d_winograd_backward_input(float* dx, const float* dout, const float* weight, int64_t N, int64_t H, int64_t W,
                                    int64_t C, int64_t K, int64_t pad_h, int64_t pad_w) {
  conv2d_winograd_backward_input(dx, dout, weight, N, H, W, C, K, pad_h, pad_w, winograd_default_tile(H, W));
}

// ---- fma_peak.h -----------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(fma_chains)

double fma_chains(long iterations) { return TG_CPU_ISA_CALL(fma_chains, iterations); }

// ---- half_convert.h -----------------------------------------------------------------------------
TG_CPU_ISA_DECLARE(convert_half_to_f32)
TG_CPU_ISA_DECLARE(convert_f32_to_half)

void convert_half_to_f32(DType dtype, const uint16_t* src, float* dst, int64_t n) {
  TG_CPU_ISA_CALL(convert_half_to_f32, dtype, src, dst, n);
}

void convert_f32_to_half(DType dtype, const float* src, uint16_t* dst, int64_t n) {
  TG_CPU_ISA_CALL(convert_f32_to_half, dtype, src, dst, n);
}

TG_CPU_ISA_DECLARE(convert_half_to_f32_rows)
TG_CPU_ISA_DECLARE(convert_f32_to_half_rows)

void convert_half_to_f32_rows(DType dtype, const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols) {
  TG_CPU_ISA_CALL(convert_half_to_f32_rows, dtype, src, src_stride, dst, dst_stride, rows, cols);
}

void convert_f32_to_half_rows(DType dtype, const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols) {
  TG_CPU_ISA_CALL(convert_f32_to_half_rows, dtype, src, src_stride, dst, dst_stride, rows, cols);
}

}  // namespace tg::cpu
