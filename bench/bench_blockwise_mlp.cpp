// The blockwise MLP (ops/blockwise_mlp.h) against the unfused block it replaces, forward and
// backward apart, at the GPT presets' shapes: LayerNorm -> c_fc -> GELU -> c_proj (+ residual) over
// `rows` tokens of width C, hidden H = 4C, f32 on the CPU. The unfused block is the op sequence the
// GPT runs without --blockwise (every activation kept for the backward); the blockwise one runs
// chunks of m rows, one chunk per thread, and recomputes c_fc in its backward (one GEMM of five
// more: the step's extra work), so a ratio near 6/5 on the backward is the recomputation alone.
//
//   make CUDA=0 BUILD=build-cpu build-cpu/bench/bench_blockwise_mlp
//   ./build-cpu/bench/bench_blockwise_mlp [rows C m]   (default: the small and medium presets)
//   perf record ./build-cpu/bench/bench_blockwise_mlp rows C m unfused|blockwise   (one path, 20 times)
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench/bench_common.h"
#include "ops/accumulate.h"
#include "ops/activation.h"
#include "ops/blockwise_mlp.h"
#include "ops/gemm.h"
#include "ops/layernorm.h"
#include "tensor/tensor.h"

using namespace tg;

namespace {

// A cheap deterministic pattern in [-scale, scale): random draws are slow at these sizes and a
// pattern times the same.
Tensor pattern(const Shape& shape, float scale, uint32_t salt) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); i++)
    p[i] = scale * (static_cast<float>(((i + salt) * 2654435761u) % 2000) / 1000.0f - 1.0f);
  return t;
}

struct Block {
  int64_t rows, C, H;
  ops::MlpParams p;
  Tensor x, dout;
  // The unfused block's saved activations and outputs.
  Tensor norm, mean, rstd, pre, hidden, out, dhidden, dpre, dnorm;
  ops::MlpGrads g;

  Block(int64_t rows_, int64_t C_) : rows(rows_), C(C_), H(4 * C_) {
    p.ln_weight = pattern({C}, 1.0f, 1);
    p.ln_bias = pattern({C}, 0.1f, 2);
    p.fc_weight = pattern({H, C}, 0.05f, 3);
    p.fc_bias = pattern({H}, 0.1f, 4);
    p.proj_weight = pattern({C, H}, 0.05f, 5);
    p.proj_bias = pattern({C}, 0.1f, 6);
    x = pattern({rows, C}, 2.0f, 7);
    dout = pattern({rows, C}, 0.01f, 8);
    norm = Tensor::empty({rows, C});
    mean = Tensor::empty({rows});
    rstd = Tensor::empty({rows});
    pre = Tensor::empty({rows, H});
    hidden = Tensor::empty({rows, H});
    out = Tensor::empty({rows, C});
    dhidden = Tensor::empty({rows, H});
    dpre = Tensor::empty({rows, H});
    dnorm = Tensor::empty({rows, C});
    g.x = Tensor::zeros({rows, C});
    g.ln_weight = Tensor::zeros({C});
    g.ln_bias = Tensor::zeros({C});
    g.fc_weight = Tensor::zeros({H, C});
    g.fc_bias = Tensor::zeros({H});
    g.proj_weight = Tensor::zeros({C, H});
    g.proj_bias = Tensor::zeros({C});
  }

  void unfused_forward() {
    ops::layernorm_forward(norm, mean, rstd, x, p.ln_weight, p.ln_bias, p.ln_eps);
    ops::LinearEpilogue gelu;
    gelu.gelu = true;
    gelu.pre_gelu = pre;
    ops::linear(hidden, norm, p.fc_weight, p.fc_bias, gelu);
    ops::LinearEpilogue residual;
    residual.residual = x;
    ops::linear(out, hidden, p.proj_weight, p.proj_bias, residual);
  }

  // As the autograd nodes run it: residual, c_proj, GELU, c_fc, LayerNorm.
  void unfused_backward() {
    ops::accumulate(g.x, dout);
    ops::matmul(g.proj_weight, dout, hidden, true, false, 1.0f);
    ops::column_sums_accumulate(g.proj_bias, dout);
    ops::matmul(dhidden, dout, p.proj_weight);
    dpre.zero_();
    ops::gelu_backward(dpre, pre, dhidden);
    ops::matmul(g.fc_weight, dpre, norm, true, false, 1.0f);
    ops::column_sums_accumulate(g.fc_bias, dpre);
    ops::matmul(dnorm, dpre, p.fc_weight);
    ops::layernorm_backward(g.x, g.ln_weight, g.ln_bias, dnorm, x, p.ln_weight, mean, rstd);
  }
};

// Only one path, `which` ("unfused" or "blockwise"), forward and backward `repeats` times: for
// perf record, whose profile would otherwise mix the two.
void run_only(int64_t rows, int64_t C, int64_t m, const std::string& which, int repeats) {
  Block b(rows, C);
  for (int i = 0; i < repeats; i++) {
    if (which == "unfused") {
      b.unfused_forward();
      b.unfused_backward();
    } else {
      ops::blockwise_mlp_forward(b.out, b.x, b.p, m);
      ops::blockwise_mlp_backward(b.g, b.dout, b.x, b.p, m);
    }
  }
}

void run(int64_t rows, int64_t C, int64_t m) {
  Block b(rows, C);
  const double f_un = bench::best_ms_after_pause([&] { b.unfused_forward(); });
  const double f_bw = bench::best_ms_after_pause([&] { ops::blockwise_mlp_forward(b.out, b.x, b.p, m); });
  const double b_un = bench::best_ms_after_pause([&] { b.unfused_backward(); });
  const double b_bw = bench::best_ms_after_pause([&] { ops::blockwise_mlp_backward(b.g, b.dout, b.x, b.p, m); });
  std::printf("rows %5lld C %4lld H %5lld m %4lld | forward %7.2f -> %7.2f ms (x%.3f) | backward %7.2f -> %7.2f ms "
              "(x%.3f) | both %7.2f -> %7.2f ms (x%.3f)\n",
              static_cast<long long>(rows), static_cast<long long>(C), static_cast<long long>(4 * C),
              static_cast<long long>(m), f_un, f_bw, f_bw / f_un, b_un, b_bw, b_bw / b_un, f_un + b_un, f_bw + b_bw,
              (f_bw + b_bw) / (f_un + b_un));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("blockwise MLP against unfused, f32, %d threads, %s kernels (best of repeats; unfused -> blockwise)\n",
              omp_get_max_threads(), bench::simd_name().c_str());
  if (argc == 5) {
    run_only(std::atoll(argv[1]), std::atoll(argv[2]), std::atoll(argv[3]), argv[4], 20);
    return 0;
  }
  if (argc == 4) {
    run(std::atoll(argv[1]), std::atoll(argv[2]), std::atoll(argv[3]));
    return 0;
  }
  run(3072, 384, 168);  // the small preset: batch 12 x block 256, the planner's chunk
  run(6144, 512, 126);  // the medium preset
  return 0;
}
