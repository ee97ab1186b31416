#include "ops/blockwise_mlp.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "ops/accumulate.h"
#include "ops/activation.h"
#include "ops/check.h"
#include "ops/cpu/gemm.h"
#include "ops/flops.h"
#include "ops/gemm.h"
#include "ops/layernorm.h"
#include "ops/profiler.h"

namespace tg::ops {

namespace {

constexpr const char* kOp = "blockwise_mlp";

// The threads that share a call's chunks: the OpenMP threads on the CPU (one when called from
// inside a parallel region), one on CUDA, where the chunks queue on the stream in order.
int chunk_threads(const Tensor& x, int64_t chunks) {
  if (!x.device().is_cpu() || omp_in_parallel()) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), chunks)));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The forward's chunk, from the asked m: chunk i runs on thread i % threads, so a count of chunks
// that is not a multiple of the threads leaves a thread idle in the last round (small's 3,072 rows
// in chunks of 168 are 19 chunks: 10 on one thread, 9 on the other). The same number of rounds,
// in chunks of at most m rows as equal as they can be, rounded up to the GEMM's row tile where the
// count stays a multiple of the threads (168 -> 154 = 11 tiles of 14, 20 chunks). Every row's
// values come out of the same per-row kernels whatever the chunk, so the output does not change.
int64_t balanced_chunk_rows(int64_t rows, int64_t m, int threads, int64_t tile) {
  if (threads <= 1 || rows <= m) return m;
  const int64_t slots = ceil_div(ceil_div(rows, m), threads) * threads;
  const int64_t even = ceil_div(rows, slots), tiled = ceil_div(even, tile) * tile;
  return tiled <= m && ceil_div(rows, tiled) % threads == 0 ? tiled : even;
}

// Calls body(thread, first_row, rows) for every chunk of m rows; chunk i runs on thread
// i % team, so which thread sums which chunks, and in what order, is fixed for a thread count.
// The kernels the body calls run on its thread alone (nested OpenMP regions get one thread). The
// first exception of any thread is rethrown after the region.
template <class Body>
void for_each_chunk(int64_t rows, int64_t m, int threads, const Body& body) {
  const int64_t chunks = (rows + m - 1) / m;
  std::exception_ptr error;
  std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads(), t = omp_get_thread_num();
    FlopCounter inner;  // the front counts the call's FLOPs once; the inner fronts' counts end here
    try {
      for (int64_t i = t; i < chunks; i += team) body(t, i * m, std::min(m, rows - i * m));
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Each thread's recomputed chunk: the normalised rows and the hidden (and the pre-activation and
// the gradients the backward needs), m rows each, reused by every chunk of the thread.
struct ChunkScratch {
  Tensor normalized, d_normalized, pre, hidden, d_hidden, mean, rstd;
  ChunkScratch(int64_t m, int64_t C, int64_t H, DType dtype, Device device, bool backward) {
    normalized = Tensor::empty({m, C}, dtype, device);
    hidden = Tensor::empty({m, H}, dtype, device);
    mean = Tensor::empty({m}, DType::F32, device);
    rstd = Tensor::empty({m}, DType::F32, device);
    if (!backward) return;
    d_normalized = Tensor::empty({m, C}, dtype, device);
    pre = Tensor::empty({m, H}, dtype, device);
    d_hidden = Tensor::empty({m, H}, dtype, device);
  }
};

// The first n rows of a scratch buffer (a chunk may be shorter than m).
Tensor rows_of(const Tensor& t, int64_t n) { return t.narrow(0, 0, n); }

// op(w) of a weight w (rows, cols) packed once for the chunks' f32 GEMMs on the CPU: x w^T (trans,
// linear) or x w (matmul). Each chunk's GEMM would otherwise re-pack the whole weight for its few
// rows; measured on the small preset's shapes (bench/bench_blockwise_mlp.cpp), that packing was a
// tenth of the blockwise MLP's time. Null where the fronts read w themselves: other devices and
// dtypes, or a w that is not contiguous.
std::unique_ptr<cpu::PackedB> pack_weight(const Tensor& w, bool trans) {
  if (!w.device().is_cpu() || w.dtype() != DType::F32 || !w.is_contiguous()) return nullptr;
  const int64_t rows = w.size(0), cols = w.size(1);
  return std::make_unique<cpu::PackedB>(trans, w.data<float>(), cols, trans ? cols : rows, trans ? rows : cols);
}

// A zeroed partial sum shaped like `grad`, or undefined when the gradient is not wanted.
Tensor zeroed_like(const Tensor& grad) {
  return grad.defined() ? Tensor::zeros(grad.shape(), grad.dtype(), grad.device()) : Tensor();
}

}  // namespace

int64_t check_blockwise_mlp(const Tensor& x, const MlpParams& p, int64_t chunk_rows) {
  check_defined(kOp, x, "x");
  check_defined(kOp, p.fc_weight, "fc_weight");
  check_defined(kOp, p.proj_weight, "proj_weight");
  check_dim(kOp, x, "x", 2);
  if (chunk_rows <= 0)
    throw Error(std::string(kOp) + ": chunk_rows must be positive, found " + std::to_string(chunk_rows));
  const int64_t C = x.size(1);
  check_dim(kOp, p.fc_weight, "fc_weight", 2);
  const int64_t H = p.fc_weight.size(0);
  const char* why = "C is x's last dimension, H is fc_weight's first";
  check_shape(kOp, p.fc_weight, "fc_weight", {H, C}, why);
  check_shape(kOp, p.proj_weight, "proj_weight", {C, H}, why);
  if (p.ln_weight.defined()) check_shape(kOp, p.ln_weight, "ln_weight", {C}, why);
  if (p.ln_bias.defined()) check_shape(kOp, p.ln_bias, "ln_bias", {C}, why);
  if (p.fc_bias.defined()) check_shape(kOp, p.fc_bias, "fc_bias", {H}, why);
  if (p.proj_bias.defined()) check_shape(kOp, p.proj_bias, "proj_bias", {C}, why);
  return H;
}

void blockwise_mlp_forward(Tensor& out, const Tensor& x, const MlpParams& p, int64_t chunk_rows) {
  const int64_t H = check_blockwise_mlp(x, p, chunk_rows);
  check_shape(kOp, out, "out", x.shape(), "x's shape");
  check_contiguous(kOp, out, "out");
  check_contiguous(kOp, x, "x");
  const int64_t rows = x.size(0), C = x.size(1), asked = std::min(chunk_rows, std::max<int64_t>(rows, 1));
  const double flops = 2.0 * 2.0 * static_cast<double>(rows) * static_cast<double>(C) * static_cast<double>(H);
  count_flops(flops);  // c_fc and c_proj; the inner fronts' counts are dropped (for_each_chunk)
  ProfiledOp profiled(kOp, [&](OpCost& c) {
    c.reads("x", x).reads("fc_weight", p.fc_weight).reads("proj_weight", p.proj_weight).writes("out", out);
    c.flops = flops;
    c.bf16_dot = gemm_runs_on_bf16_dot(x.dtype(), x.device());
  });
  const int threads = chunk_threads(x, ceil_div(rows, asked));
  const int64_t m = balanced_chunk_rows(rows, asked, threads, x.device().is_cpu() ? cpu::gemm_mr() : 1);
  std::vector<ChunkScratch> scratch;
  for (int t = 0; t < threads; t++) scratch.emplace_back(m, C, H, x.dtype(), x.device(), false);
  const auto fc_t = pack_weight(p.fc_weight, true), proj_t = pack_weight(p.proj_weight, true);
  for_each_chunk(rows, m, threads, [&](int t, int64_t r0, int64_t n) {
    const ChunkScratch& s = scratch[static_cast<size_t>(t)];
    Tensor x_c = x.narrow(0, r0, n), out_c = out.narrow(0, r0, n);
    Tensor norm = rows_of(s.normalized, n), hidden = rows_of(s.hidden, n);
    Tensor mean = rows_of(s.mean, n), rstd = rows_of(s.rstd, n);
    layernorm_forward(norm, mean, rstd, x_c, p.ln_weight, p.ln_bias, p.ln_eps);
    LinearEpilogue gelu;
    gelu.gelu = true;
    linear(hidden, norm, p.fc_weight, p.fc_bias, gelu, fc_t.get());  // hidden = gelu(norm W_fc^T + b_fc)
    LinearEpilogue residual;
    residual.residual = x_c;
    linear(out_c, hidden, p.proj_weight, p.proj_bias, residual, proj_t.get());  // out = x + hidden W_proj^T + b_proj
  });
}

void blockwise_mlp_backward(MlpGrads& g, const Tensor& dout, const Tensor& x, const MlpParams& p,
                            int64_t chunk_rows) {
  const int64_t H = check_blockwise_mlp(x, p, chunk_rows);
  check_shape(kOp, dout, "dout", x.shape(), "x's shape");
  check_contiguous(kOp, dout, "dout");
  check_contiguous(kOp, x, "x");
  if (g.x.defined()) check_shape(kOp, g.x, "dx", x.shape(), "x's shape");
  const int64_t rows = x.size(0), C = x.size(1), m = std::min(chunk_rows, std::max<int64_t>(rows, 1));
  // The recomputed c_fc, then dW_proj, d hidden, dW_fc and d normalized: five GEMMs of 2 rows C H.
  const double flops = 5.0 * 2.0 * static_cast<double>(rows) * static_cast<double>(C) * static_cast<double>(H);
  count_flops(flops);
  ProfiledOp profiled("blockwise_mlp_backward", [&](OpCost& c) {
    c.reads("dout", dout).reads("x", x).reads("fc_weight", p.fc_weight).reads("proj_weight", p.proj_weight);
    c.updates("dx", g.x).updates("dfc_weight", g.fc_weight).updates("dproj_weight", g.proj_weight);
    c.flops = flops;
    c.bf16_dot = gemm_runs_on_bf16_dot(x.dtype(), x.device());
  });
  const bool wants_hidden_grad =
      g.x.defined() || g.ln_weight.defined() || g.ln_bias.defined() || g.fc_weight.defined() || g.fc_bias.defined();
  const bool wants_ln_grad = g.x.defined() || g.ln_weight.defined() || g.ln_bias.defined();

  const int threads = chunk_threads(x, (rows + m - 1) / m);
  std::vector<ChunkScratch> scratch;
  // Thread 0 adds into the gradients themselves, every other thread into zeroed partials of its own,
  // added in thread order below: the result does not depend on which thread finishes first.
  std::vector<MlpGrads> partial(static_cast<size_t>(threads));
  for (int t = 0; t < threads; t++) {
    scratch.emplace_back(m, C, H, x.dtype(), x.device(), true);
    if (t == 0) continue;
    MlpGrads& q = partial[static_cast<size_t>(t)];
    q.ln_weight = zeroed_like(g.ln_weight);
    q.ln_bias = zeroed_like(g.ln_bias);
    q.fc_weight = zeroed_like(g.fc_weight);
    q.fc_bias = zeroed_like(g.fc_bias);
    q.proj_weight = zeroed_like(g.proj_weight);
    q.proj_bias = zeroed_like(g.proj_bias);
  }

  const auto fc_t = pack_weight(p.fc_weight, true);
  const auto proj = wants_hidden_grad ? pack_weight(p.proj_weight, false) : nullptr;
  const auto fc = wants_ln_grad ? pack_weight(p.fc_weight, false) : nullptr;

  for_each_chunk(rows, m, threads, [&](int t, int64_t r0, int64_t n) {
    const ChunkScratch& s = scratch[static_cast<size_t>(t)];
    MlpGrads& sums = t == 0 ? g : partial[static_cast<size_t>(t)];
    Tensor x_c = x.narrow(0, r0, n), dy = dout.narrow(0, r0, n);
    Tensor dx = g.x.defined() ? g.x.narrow(0, r0, n) : Tensor();
    Tensor norm = rows_of(s.normalized, n), dnorm = rows_of(s.d_normalized, n);
    Tensor pre = rows_of(s.pre, n), hidden = rows_of(s.hidden, n), dhidden = rows_of(s.d_hidden, n);
    Tensor mean = rows_of(s.mean, n), rstd = rows_of(s.rstd, n);
    if (dx.defined()) accumulate(dx, dy);  // the residual: dx += dout
    // Recompute the chunk: the same kernels on the same rows give the forward's values.
    layernorm_forward(norm, mean, rstd, x_c, p.ln_weight, p.ln_bias, p.ln_eps);
    LinearEpilogue gelu;
    gelu.gelu = true;
    gelu.pre_gelu = pre;
    linear(hidden, norm, p.fc_weight, p.fc_bias, gelu, fc_t.get());
    // c_proj: dW_proj (C, H) += dy^T hidden; db_proj += column sums of dy.
    if (sums.proj_weight.defined()) matmul(sums.proj_weight, dy, hidden, true, false, 1.0f);
    if (sums.proj_bias.defined()) column_sums_accumulate(sums.proj_bias, dy);
    if (!wants_hidden_grad) return;
    // d hidden = dy W_proj; d pre = gelu'(pre) d hidden, built in hidden's buffer (read for the
    // last time above) because gelu_backward adds into a zeroed output.
    matmul(dhidden, dy, p.proj_weight, false, false, 0.0f, proj.get());
    Tensor dpre = hidden;
    dpre.zero_();
    gelu_backward(dpre, pre, dhidden);
    // c_fc: dW_fc (H, C) += dpre^T norm; db_fc += column sums of dpre.
    if (sums.fc_weight.defined()) matmul(sums.fc_weight, dpre, norm, true, false, 1.0f);
    if (sums.fc_bias.defined()) column_sums_accumulate(sums.fc_bias, dpre);
    if (!wants_ln_grad) return;
    matmul(dnorm, dpre, p.fc_weight, false, false, 0.0f, fc.get());  // d normalized = dpre W_fc
    layernorm_backward(dx, sums.ln_weight, sums.ln_bias, dnorm, x_c, p.ln_weight, mean, rstd);
  });

  for (int t = 1; t < threads; t++) {
    const MlpGrads& q = partial[static_cast<size_t>(t)];
    for (auto [sum, part] : {std::pair<Tensor*, const Tensor*>{&g.ln_weight, &q.ln_weight},
                             {&g.ln_bias, &q.ln_bias},
                             {&g.fc_weight, &q.fc_weight},
                             {&g.fc_bias, &q.fc_bias},
                             {&g.proj_weight, &q.proj_weight},
                             {&g.proj_bias, &q.proj_bias}})
      if (sum->defined()) accumulate(*sum, *part);
  }
}

int64_t blockwise_mlp_backward_chunk_rows(int64_t chunk_rows) {
  return std::max(chunk_rows, kBlockwiseBackwardMinRows);
}

}  // namespace tg::ops
