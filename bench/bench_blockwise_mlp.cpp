// The blockwise MLP (ops/blockwise_mlp.h) against the unfused block it replaces, forward and
// backward apart, at the GPT presets' shapes: LayerNorm -> c_fc -> GELU -> c_proj (+ residual) over
// `rows` tokens of width C, hidden H = 4C, f32 on the CPU. The unfused block is the op sequence the
// GPT runs without --blockwise (every activation kept for the backward); the blockwise one runs
// chunks of m rows, one chunk per thread, and recomputes c_fc in its backward (one GEMM of five
// more: the step's extra work), so a ratio near 6/5 on the backward is the recomputation alone.
//
//   make CUDA=0 BUILD=build-cpu build-cpu/bench/bench_blockwise_mlp
//   OMP_WAIT_POLICY=passive ./build-cpu/bench/bench_blockwise_mlp [rows C chunk]   (default: small and medium)
//   perf record ./build-cpu/bench/bench_blockwise_mlp rows C chunk unfused|blockwise   (one path, 20 times)
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <string>

#include "bench/bench_common.h"
#include "ops/accumulate.h"
#include "ops/activation.h"
#include "ops/blockwise_mlp.h"
#include "ops/gemm.h"
#include "ops/layernorm.h"
#include "tensor/error.h"
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
  const int64_t mb = ops::blockwise_mlp_backward_chunk_rows(m);
  for (int i = 0; i < repeats; i++) {
    if (which == "unfused") {
      b.unfused_forward();
      b.unfused_backward();
    } else {
      ops::blockwise_mlp_forward(b.out, b.x, b.p, m);
      ops::blockwise_mlp_backward(b.g, b.dout, b.x, b.p, mb);
    }
  }
}

double process_cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

// The fastest wall time and the least process CPU time (all threads) of `repeats` runs of fn, in ms.
// On a machine shared with other jobs the wall time of a run that lost a core is worthless; its CPU
// time still measures the work (run with OMP_WAIT_POLICY=passive, or it also counts the threads'
// spinning at the end of each parallel region).
struct Best {
  double wall_ms = 1e30, cpu_ms = 1e30;
};
Best best_of(const std::function<void()>& fn, int repeats) {
  fn();  // warm-up: first touch of the buffers, the GEMM's pack buffers
  Best best;
  for (int i = 0; i < repeats; i++) {
    const double cpu0 = process_cpu_ms();
    const auto wall0 = std::chrono::steady_clock::now();
    fn();
    const double wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall0).count();
    best.wall_ms = std::min(best.wall_ms, wall);
    best.cpu_ms = std::min(best.cpu_ms, process_cpu_ms() - cpu0);
  }
  return best;
}

void print_pair(const char* what, const Best& unfused, const Best& blockwise) {
  std::printf("  %-9s wall %8.2f -> %8.2f ms (x%.3f)   cpu %8.2f -> %8.2f ms (x%.3f)\n", what, unfused.wall_ms,
              blockwise.wall_ms, blockwise.wall_ms / unfused.wall_ms, unfused.cpu_ms, blockwise.cpu_ms,
              blockwise.cpu_ms / unfused.cpu_ms);
}

void run(int64_t rows, int64_t C, int64_t m, int repeats) {
  Block b(rows, C);
  const int64_t mb = ops::blockwise_mlp_backward_chunk_rows(m);  // as the autograd node runs it
  // Interleaved, unfused then blockwise, so that a change of load hits both alike.
  Best f_un, f_bw, b_un, b_bw, s_un, s_bw;
  for (int round = 0; round < 3; round++) {
    auto keep = [](Best& into, const Best& got) {
      into.wall_ms = std::min(into.wall_ms, got.wall_ms);
      into.cpu_ms = std::min(into.cpu_ms, got.cpu_ms);
    };
    keep(f_un, best_of([&] { b.unfused_forward(); }, repeats));
    keep(f_bw, best_of([&] { ops::blockwise_mlp_forward(b.out, b.x, b.p, m); }, repeats));
    keep(b_un, best_of([&] { b.unfused_backward(); }, repeats));
    keep(b_bw, best_of([&] { ops::blockwise_mlp_backward(b.g, b.dout, b.x, b.p, mb); }, repeats));
    keep(s_un, best_of([&] { b.unfused_forward(), b.unfused_backward(); }, repeats));
    keep(s_bw, best_of([&] {
      ops::blockwise_mlp_forward(b.out, b.x, b.p, m);
      ops::blockwise_mlp_backward(b.g, b.dout, b.x, b.p, mb);
    }, repeats));
  }
  std::printf("rows %lld, C %lld, H %lld, chunk m %lld, backward %lld (unfused -> blockwise, best of %d x 3)\n",
              static_cast<long long>(rows), static_cast<long long>(C), static_cast<long long>(4 * C),
              static_cast<long long>(m), static_cast<long long>(mb), repeats);
  print_pair("forward", f_un, f_bw);
  print_pair("backward", b_un, b_bw);
  print_pair("both", s_un, s_bw);
  std::fflush(stdout);
}

// The defaults are the small preset's shape (batch 12 x block 256, the planner's chunk), which the
// help shows; without arguments the medium preset runs after it.
struct Arguments {
  int64_t rows = 3072, C = 384, chunk = 168;
  std::string mode;
};

int run_arguments(const FlagSet& flags, const Arguments& a) {
  std::printf("blockwise MLP against unfused, f32, %d threads, %s kernels\n", omp_get_max_threads(),
              bench::simd_name().c_str());
  if (flags.given("mode")) {
    run_only(a.rows, a.C, a.chunk, a.mode, 20);
    return 0;
  }
  run(a.rows, a.C, a.chunk, 5);                       // the sizes given, or the small preset
  if (!flags.given("rows")) run(6144, 512, 126, 3);  // then the medium preset: batch 12 x block 512
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Arguments a;
  FlagSet flags("bench_blockwise_mlp", "[rows C chunk [unfused|blockwise]]",
                "The blockwise MLP (ops/blockwise_mlp.h) against the unfused block it replaces, forward and\n"
                "backward apart: LayerNorm -> c_fc -> GELU -> c_proj (+ residual) over rows tokens of width C,\n"
                "hidden 4C, f32 on the CPU; wall and process CPU time, best of the runs. Without arguments, the\n"
                "small and medium GPT presets' shapes. Run with OMP_WAIT_POLICY=passive, or the CPU time counts\n"
                "spinning threads.");
  flags.add_int_argument("rows", &a.rows, "tokens; rows, C and chunk go together (none: small, then medium)", 1,
                         int64_t(1) << 24);
  flags.add_int_argument("C", &a.C, "width; the hidden is 4C", 1, 16384);
  flags.add_int_argument("chunk", &a.chunk, "rows per forward chunk (the backward's from it, as the op runs)", 1,
                         int64_t(1) << 24);
  flags.add_string_argument("mode", &a.mode, "only this path, forward and backward 20 times (for perf record)",
                            {"unfused", "blockwise"});
  // Either no sizes (the presets), or rows C chunk, with or without the one path to run: the
  // arguments are filled in order, so a missing chunk means a partial set.
  auto check = [&] {
    if (flags.given("rows") && !flags.given("chunk"))
      throw Error("rows, C and chunk go together: expected rows C chunk [unfused|blockwise], or no arguments for "
                  "the small and medium presets");
  };
  return bench::run_main(flags, argc, argv, [&] { return run_arguments(flags, a); }, check);
}
