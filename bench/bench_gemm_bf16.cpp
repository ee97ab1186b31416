// bf16 GEMM throughput: tg::cpu::gemm_bf16 against this machine's measured bf16 peak (vdpbf16ps)
// and against our f32 GEMM on the same shape in the same run.
//
//   build/bench/bench_gemm_bf16            2048^3 + every GEMM of the small GPT preset's training step
//   build/bench/bench_gemm_bf16 --quick    2048^3 and the preset's fc GEMMs
//   build/bench/bench_gemm_bf16 --f32-path adds a column for the path CPUs without AVX512_BF16 take
//   build/bench/bench_gemm_bf16 --csv      name,m,n,k,f32_gflops,bf16_gflops,bf16_f32out_gflops[,f32path_gflops]
//   build/bench/bench_gemm_bf16 --shape m,n,k,ta,tb[,beta]   only this shape (repeatable); ta/tb 0 or 1
//   build/bench/bench_gemm_bf16 --rounds N rounds per shape (default 3; see run)
//
// Columns: f32 is cpu::gemm on f32 copies of the operands; bf16 is gemm_bf16 with a bf16 C (the
// forward and dx of a bf16 Linear), f32out with an f32 C (a weight gradient accumulated in f32);
// peak is the bf16 peak measured in the shape's own rounds, %peak the bf16 column over it; x f32
// the bf16 column's ratio to the f32 column.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/gemm_bf16.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/random.h"
#include "programs/lib/machine_peak.h"
#include "tensor/tensor.h"

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


// Tensors, as bench_gemm's: their storage is 64-byte aligned as every tensor's is. (A large
// std::vector's is 16 bytes past a page, which made every 64-byte load of the packers and of the
// direct-B kernel, and every tile row's store, span two cache lines.)
struct Operands {
  tg::Tensor a, b, c16, a32, b32, c32;
  int64_t lda, ldb;
};

uint16_t* half_data(const tg::Tensor& t) { return static_cast<uint16_t*>(t.data_raw()); }

Operands make_operands(const GemmShape& s) {
  tg::Generator gen(42);
  Operands o;
  o.a = tg::Tensor::randn({s.m * s.k}, &gen).to(tg::DType::BF16);
  o.b = tg::Tensor::randn({s.k * s.n}, &gen).to(tg::DType::BF16);
  o.a32 = o.a.to(tg::DType::F32);  // exact: the f32 GEMM multiplies the same values
  o.b32 = o.b.to(tg::DType::F32);
  o.c16 = tg::Tensor::zeros({s.m * s.n}, tg::DType::BF16);
  o.c32 = tg::Tensor::zeros({s.m * s.n});
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

struct Options {
  bool csv = false, quick = false, f32_path = false;
  int64_t rounds = 3;
  std::vector<GemmShape> chosen;
};

int run(const Options& opt) {
  const int threads = omp_get_max_threads();
  const double fma_peak = tg::bench::measured_fma_peak_gflops(threads);
  const double bf16_peak = tg::bench::measured_bf16_peak_gflops(threads);
  const tg::cpu::GemmBf16Path path = tg::cpu::gemm_bf16_path();
  if (opt.csv) {
    std::printf("name,m,n,k,f32_gflops,bf16_gflops,bf16_f32out_gflops,bf16_peak_gflops%s\n",
                opt.f32_path ? ",f32path_gflops" : "");
  } else {
    double load = 0;
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf", &load) != 1) load = 0;
      std::fclose(f);
    }
    std::printf("bf16 GEMM path %s, %d threads, measured peaks at start: bf16 %.1f GFLOP/s (vdpbf16ps), f32 FMA %.1f"
                " GFLOP/s; load average %.2f\n",
                tg::cpu::gemm_bf16_path_name(path), threads, bf16_peak, fma_peak, load);
    std::printf("GFLOP/s: the best of %lld rounds, each the bf16 peak and then every column for ~0.5 s of repeats;\n"
                "%%peak: bf16 over the peak of the same rounds; x f32: bf16 over f32\n",
                static_cast<long long>(opt.rounds));
    std::printf("%-20s %6s %6s %6s %9s %9s %7s %7s %9s %7s%s\n", "shape", "m", "n", "k", "f32", "bf16", "%peak",
                "x f32", "f32out", "peak", opt.f32_path ? "  f32-path" : "");
  }
  for (const GemmShape& s : opt.chosen.empty() ? all_shapes(opt.quick) : opt.chosen) {
    Operands o = make_operands(s);
    const uint16_t *a = half_data(o.a), *b = half_data(o.b);
    uint16_t* c16 = half_data(o.c16);
    float* c32 = o.c32.data<float>();
    const double flops = 2.0 * s.m * s.n * s.k;
    auto best_gflops = [&](double& best, const std::function<void()>& fn) {
      best = std::max(best, flops / (tg::bench::best_ms_after_pause(fn) * 1e-3) * 1e-9);
    };
    // The machine's speed moves by about +-10% over seconds on this shared host, which a peak taken
    // at the start and one window per column turned into +-10% on %peak (a shape at 104% of the
    // peak in one run): rounds interleave the columns and the peak, and each column keeps its best.
    double f32 = 0, bf16 = 0, f32out = 0, fallback = 0, peak = 0;
    for (int64_t round = 0; round < opt.rounds; round++) {
      peak = std::max(peak, tg::cpu_bf16_peak_gflops(threads, 5000000));
      best_gflops(f32, [&] {
        tg::cpu::gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, o.a32.data<float>(), o.lda, o.b32.data<float>(),
                      o.ldb, s.beta, c32, s.n);
      });
      best_gflops(bf16, [&] {
        tg::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a, o.lda, b, o.ldb, s.beta, c16, s.n);
      });
      best_gflops(f32out, [&] {
        tg::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a, o.lda, b, o.ldb, s.beta, c32, s.n);
      });
      if (opt.f32_path) {
        tg::cpu::force_gemm_bf16_f32_path(true);
        best_gflops(fallback, [&] {
          tg::cpu::gemm_bf16(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a, o.lda, b, o.ldb, s.beta, c16, s.n);
        });
        tg::cpu::force_gemm_bf16_f32_path(false);
      }
    }
    if (opt.csv) {
      std::printf("%s,%lld,%lld,%lld,%.2f,%.2f,%.2f,%.2f", s.name.c_str(), static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), f32, bf16, f32out, peak);
      if (opt.f32_path) std::printf(",%.2f", fallback);
      std::printf("\n");
    } else {
      std::printf("%-20s %6lld %6lld %6lld %9.1f %9.1f %6.1f%% %7.2f %9.1f %7.1f", s.name.c_str(),
                  static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k), f32, bf16,
                  peak > 0 ? 100.0 * bf16 / peak : 0.0, bf16 / f32, f32out, peak);
      if (opt.f32_path) std::printf(" %9.1f", fallback);
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  tg::FlagSet flags("bench_gemm_bf16", "[flags]",
                    "bf16 GEMM (tg::cpu::gemm_bf16) against this machine's bf16 peak, measured with vdpbf16ps, and\n"
                    "against our f32 GEMM on the same shapes in the same run: 2048^3 and every GEMM of the small\n"
                    "GPT preset's training step.");
  flags.add_switch("quick", &opt.quick, "2048^3 and the preset's fc GEMMs only");
  flags.add_switch("f32-path", &opt.f32_path, "add a column for the path CPUs without AVX512_BF16 take");
  flags.add_switch("csv", &opt.csv,
                   "name,m,n,k,f32_gflops,bf16_gflops,bf16_f32out_gflops,bf16_peak_gflops[,f32path_gflops]");
  flags.add_int("rounds", &opt.rounds, "rounds of the peak and every column per shape, each keeping its best", 1,
                100);
  flags.add_list(
      "shape",
      [&](const std::string& text) {
        GemmShape shape;
        if (!parse_shape(text, shape))
          throw tg::Error("expected m,n,k,ta,tb[,beta] (positive sizes, ta/tb 0 or 1), got '" + text + "'");
        opt.chosen.push_back(shape);
      },
      "m,n,k,ta,tb[,beta]: only this shape; ta/tb 0 or 1");
  return tg::bench::run_main(flags, argc, argv, [&] { return run(opt); });
}
