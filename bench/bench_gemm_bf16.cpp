// bf16 GEMM throughput: tg::cpu::gemm_bf16 against this machine's measured bf16 peak (vdpbf16ps)
// and against our f32 GEMM on the same shape in the same run.
//
//   build/bench/bench_gemm_bf16            2048^3 + every GEMM of the small GPT preset's training step
//   build/bench/bench_gemm_bf16 --quick    2048^3 and the preset's fc GEMMs
//   build/bench/bench_gemm_bf16 --f32-path adds a column for the path CPUs without AVX512_BF16 take
//   build/bench/bench_gemm_bf16 --csv      name,m,n,k,f32_gflops,bf16_gflops,bf16_f32out_gflops[,f32path_gflops]
//   build/bench/bench_gemm_bf16 --shape m,n,k,ta,tb[,beta]   only this shape (repeatable); ta/tb 0 or 1
//
// Columns: f32 is cpu::gemm on f32 copies of the operands; bf16 is gemm_bf16 with a bf16 C (the
// forward and dx of a bf16 Linear), f32out with an f32 C (a weight gradient accumulated in f32);
// %peak is the bf16 column over the bf16 peak; x f32 its ratio to the f32 column.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/gemm_bf16.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/random.h"

namespace {

using tg::bench::add_linear_gemms;
using tg::bench::GemmShape;

// The small preset (6 layers, C 384, block 256) at batch 64: 16384 tokens, a 65-character vocabulary.
std::vector<GemmShape> all_shapes(bool quick) {
  std::vector<GemmShape> shapes = {{"square2048", false, false, 2048, 2048, 2048, 0.0f}};
  const int64_t tokens = 64 * 256, C = 384;
  if (quick) {
    add_linear_gemms(shapes, "small.fc", tokens, C, 4 * C);
    return shapes;
  }
  add_linear_gemms(shapes, "small.qkv", tokens, C, 3 * C);
  add_linear_gemms(shapes, "small.attn_proj", tokens, C, C);
  add_linear_gemms(shapes, "small.fc", tokens, C, 4 * C);
  add_linear_gemms(shapes, "small.mlp_proj", tokens, 4 * C, C);
  add_linear_gemms(shapes, "small.lm_head", tokens, C, 65);
  return shapes;
}


struct Operands {
  std::vector<uint16_t> a, b, c16;
  std::vector<float> a32, b32, c32;
  int64_t lda, ldb;
};

Operands make_operands(const GemmShape& s) {
  tg::Generator gen(42);
  Operands o;
  o.a.resize(static_cast<size_t>(s.m * s.k));
  o.b.resize(static_cast<size_t>(s.k * s.n));
  for (uint16_t& x : o.a) x = tg::f32_to_bf16(gen.normal());
  for (uint16_t& x : o.b) x = tg::f32_to_bf16(gen.normal());
  for (uint16_t x : o.a) o.a32.push_back(tg::bf16_to_f32(x));
  for (uint16_t x : o.b) o.b32.push_back(tg::bf16_to_f32(x));
  o.c16.assign(static_cast<size_t>(s.m * s.n), 0);
  o.c32.assign(static_cast<size_t>(s.m * s.n), 0.0f);
  o.lda = s.trans_a ? s.m : s.k;
  o.ldb = s.trans_b ? s.k : s.n;
  return o;
}

// "m,n,k,ta,tb[,beta]" -> a shape named after itself; false when the text is not that.
bool parse_shape(const std::string& text, GemmShape& shape) {
  long long m = 0, n = 0, k = 0;
  int ta = 0, tb = 0, used = 0;
  float beta = 0.0f;
  const int fields = std::sscanf(text.c_str(), "%lld,%lld,%lld,%d,%d%n,%f%n", &m, &n, &k, &ta, &tb, &used, &beta, &used);
  if (fields < 5 || used != static_cast<int>(text.size()) || m < 1 || n < 1 || k < 1 || (ta | tb) & ~1) return false;
  shape = GemmShape{text, ta == 1, tb == 1, m, n, k, beta};
  return true;
}

int run(bool csv, bool quick, bool f32_path, const std::vector<GemmShape>& chosen) {
  const int threads = omp_get_max_threads();
  const double fma_peak = tg::bench::measured_fma_peak_gflops(threads);
  const double bf16_peak = tg::bench::measured_bf16_peak_gflops(threads);
  const tg::cpu::GemmBf16Path path = tg::cpu::gemm_bf16_path();
  if (csv) {
    std::printf("name,m,n,k,f32_gflops,bf16_gflops,bf16_f32out_gflops%s\n", f32_path ? ",f32path_gflops" : "");
  } else {
    double load = 0;
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf", &load) != 1) load = 0;
      std::fclose(f);
    }
    std::printf("bf16 GEMM path %s, %d threads, measured peaks: bf16 %.1f GFLOP/s (vdpbf16ps), f32 FMA %.1f GFLOP/s;"
                " load average %.2f at start\n",
                tg::cpu::gemm_bf16_path_name(path), threads, bf16_peak, fma_peak, load);
    std::printf("GFLOP/s from the best of ~0.5 s of repeats; %%peak: bf16 over the bf16 peak; x f32: bf16 over f32\n");
    std::printf("%-20s %6s %6s %6s %9s %9s %7s %7s %9s%s\n", "shape", "m", "n", "k", "f32", "bf16", "%peak", "x f32",
                "f32out", f32_path ? "  f32-path" : "");
  }
  for (const GemmShape& s : chosen.empty() ? all_shapes(quick) : chosen) {
    Operands o = make_operands(s);
    const double flops = 2.0 * s.m * s.n * s.k;
    auto gflops = [&](double ms) { return flops / (ms * 1e-3) * 1e-9; };
    const double f32 = gflops(tg::bench::best_ms_after_pause([&] {
      tg::cpu::gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, o.a32.data(), o.lda, o.b32.data(), o.ldb, s.beta,
                    o.c32.data(), s.n);
    }));
    const double bf16 = gflops(tg::bench::best_ms_after_pause([&] {
      tg::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, s.beta,
                         o.c16.data(), s.n);
    }));
    const double f32out = gflops(tg::bench::best_ms_after_pause([&] {
      tg::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, s.beta,
                         o.c32.data(), s.n);
    }));
    double fallback = 0;
    if (f32_path) {
      tg::cpu::force_gemm_bf16_f32_path(true);
      fallback = gflops(tg::bench::best_ms_after_pause([&] {
        tg::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, o.a.data(), o.lda, o.b.data(), o.ldb, s.beta,
                           o.c16.data(), s.n);
      }));
      tg::cpu::force_gemm_bf16_f32_path(false);
    }
    if (csv) {
      std::printf("%s,%lld,%lld,%lld,%.2f,%.2f,%.2f", s.name.c_str(), static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), f32, bf16, f32out);
      if (f32_path) std::printf(",%.2f", fallback);
      std::printf("\n");
    } else {
      std::printf("%-20s %6lld %6lld %6lld %9.1f %9.1f %6.1f%% %7.2f %9.1f", s.name.c_str(),
                  static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k), f32, bf16,
                  bf16_peak > 0 ? 100.0 * bf16 / bf16_peak : 0.0, bf16 / f32, f32out);
      if (f32_path) std::printf(" %9.1f", fallback);
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool csv = false, quick = false, f32_path = false;
  std::vector<GemmShape> chosen;
  tg::FlagSet flags("bench_gemm_bf16", "[flags]",
                    "bf16 GEMM (tg::cpu::gemm_bf16) against this machine's bf16 peak, measured with vdpbf16ps, and\n"
                    "against our f32 GEMM on the same shapes in the same run: 2048^3 and every GEMM of the small\n"
                    "GPT preset's training step.");
  flags.add_switch("quick", &quick, "2048^3 and the preset's fc GEMMs only");
  flags.add_switch("f32-path", &f32_path, "add a column for the path CPUs without AVX512_BF16 take");
  flags.add_switch("csv", &csv, "name,m,n,k,f32_gflops,bf16_gflops,bf16_f32out_gflops[,f32path_gflops]");
  flags.add_list(
      "shape",
      [&](const std::string& text) {
        GemmShape shape;
        if (!parse_shape(text, shape))
          throw tg::Error("expected m,n,k,ta,tb[,beta] (positive sizes, ta/tb 0 or 1), got '" + text + "'");
        chosen.push_back(shape);
      },
      "m,n,k,ta,tb[,beta]: only this shape; ta/tb 0 or 1");
  return tg::bench::run_main(flags, argc, argv, [&] { return run(csv, quick, f32_path, chosen); });
}
