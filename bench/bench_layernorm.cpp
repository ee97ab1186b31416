// LayerNorm, fused softmax + cross-entropy, and embedding, forward and backward, at GPT training
// sizes. All three are memory-bound, so each line prints the bytes the op must move at least once
// (read + written, counted below per op) over its median time, against the copy bandwidth measured
// in the same run.
//
// Reading the percentages: the copy counts 8 bytes per element, but the hardware moves 12 (each
// destination line is read for ownership before it is written). A kernel that writes a fresh
// output pays the same hidden read, so its % compares like with like; a backward that accumulates
// (dx += ...) reads its output anyway, counts that read, and can pass 100%. Sizes under the
// last-level cache (the V = 65 loss: 4 MB) run from cache and measure per-row overhead instead.
//
//   make build/bench/bench_layernorm && ./build/bench/bench_layernorm [--quick]
#include <omp.h>

#include <cstdio>
#include <functional>
#include <string>

#include "bench/bench_common.h"
#include "ops/crossentropy.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "tensor/tensor.h"

using namespace tg;

static double g_copy_gbs = 0;

static void report(const std::string& name, const std::string& size, double bytes, const std::function<void()>& fn,
                   int repeats) {
  double ms = bench::time_ms(fn, repeats, 1);
  double gbs = bytes / (ms * 1e-3) * 1e-9;
  std::printf("%-20s %-18s %8.1f MB %9.3f ms %7.1f GB/s  %5.1f%% of copy\n", name.c_str(), size.c_str(), bytes * 1e-6, ms,
              gbs, 100.0 * gbs / g_copy_gbs);
  std::fflush(stdout);
}

static Tensor random_ints(int64_t n, int64_t below, Generator& gen) {
  Tensor t = Tensor::empty({n}, DType::I32);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < n; i++) p[i] = static_cast<int32_t>(gen.below(static_cast<uint64_t>(below)));
  return t;
}

// Random normal floats are slow to draw at these sizes; a cheap pattern is as good for timing.
static Tensor pattern(const Shape& shape, float scale) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) p[i] = scale * static_cast<float>((i * 2654435761u) % 1000) / 1000.0f;
  return t;
}

static void bench_layernorm(int64_t N, int64_t C, int repeats) {
  Tensor x = pattern({N, C}, 4.0f), w = pattern({C}, 1.0f), b = pattern({C}, 1.0f);
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  Tensor dy = pattern({N, C}, 1.0f), dx = Tensor::zeros({N, C}), dw = Tensor::zeros({C}), db = Tensor::zeros({C});
  const double row = 4.0 * N * C;
  std::string size = "N=" + std::to_string(N) + " C=" + std::to_string(C);
  // Forward: read x, write y (mean, rstd: 8 bytes a row).
  report("layernorm forward", size, 2 * row + 8.0 * N, [&] { ops::layernorm_forward(y, mean, rstd, x, w, b, 1e-5f); },
         repeats);
  // Backward: read dy and x, read and write dx (it accumulates).
  report("layernorm backward", size, 4 * row + 8.0 * N,
         [&] { ops::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd); }, repeats);
}

static void bench_crossentropy(int64_t N, int64_t V, int repeats) {
  Generator gen(1);
  Tensor logits = pattern({N, V}, 8.0f), targets = random_ints(N, V, gen);
  Tensor loss = Tensor::empty({}), lse = Tensor::empty({N}), dlogits = Tensor::zeros({N, V}), dloss = Tensor::scalar(1.0f);
  const double all = 4.0 * N * V;
  std::string size = "N=" + std::to_string(N) + " V=" + std::to_string(V);
  // Forward: read the logits (the second pass over a row hits L2), write lse.
  report("cross_entropy fwd", size, all + 8.0 * N, [&] { ops::crossentropy_forward(loss, lse, logits, targets, -1); },
         repeats);
  // Backward: read the logits, read and write dlogits.
  report("cross_entropy bwd", size, 3 * all + 8.0 * N,
         [&] { ops::crossentropy_backward(dlogits, dloss, logits, targets, lse, -1); }, repeats);
}

static void bench_embedding(int64_t N, int64_t V, int64_t C, int repeats) {
  Generator gen(2);
  Tensor ids = random_ints(N, V, gen), weight = pattern({V, C}, 1.0f);
  Tensor out = Tensor::empty({N, C}), dout = pattern({N, C}, 1.0f), dweight = Tensor::zeros({V, C});
  const double rows = 4.0 * N * C;
  std::string size = "N=" + std::to_string(N) + " C=" + std::to_string(C);
  // Forward: read N rows of weight, write out.
  report("embedding forward", size, 2 * rows + 4.0 * N, [&] { ops::embedding_forward(out, ids, weight); }, repeats);
  // Backward: read dout, read and write the N rows of dweight it lands in.
  report("embedding backward", size, 3 * rows + 4.0 * N, [&] { ops::embedding_backward(dweight, dout, ids); }, repeats);
}

namespace {

int run(bool quick) {
  const int repeats = quick ? 3 : 10;
  g_copy_gbs = bench::measured_copy_bandwidth_gbs();
  std::printf("SIMD: %s, OpenMP threads: %d, copy bandwidth (read + write): %.1f GB/s\n", bench::simd_name().c_str(),
              omp_get_max_threads(), g_copy_gbs);
  std::printf("%-20s %-18s %11s %12s %12s\n", "op", "size", "bytes", "median", "bandwidth");
  bench_layernorm(16384, 384, repeats);
  bench_layernorm(16384, 768, repeats);
  bench_layernorm(65536, 768, repeats);
  bench_crossentropy(16384, 65, repeats);
  bench_crossentropy(8192, 50304, quick ? 2 : 5);
  bench_embedding(16384, 50304, 384, repeats);
  bench_embedding(16384, 50304, 768, repeats);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  FlagSet flags("bench_layernorm", "[flags]",
                "LayerNorm, fused softmax + cross-entropy and embedding, forward and backward, at GPT training\n"
                "sizes, each against the copy bandwidth measured in the same run.");
  flags.add_switch("quick", &quick, "fewer repeats (3 instead of 10; 2 instead of 5 for the V = 50304 loss)");
  return bench::run_main(flags, argc, argv, [&] { return run(quick); });
}
