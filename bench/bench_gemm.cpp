// SGEMM throughput: tg::cpu::gemm against this machine's measured FMA peak and, when OpenBLAS is
// installed, against OpenBLAS on the same shape in the same run with the same thread count. The
// header also gives the bf16 peak (vdpbf16ps); bench_gemm_bf16 measures the bf16 GEMMs against it.
//
//   build/bench/bench_gemm            square sizes + every GEMM of a GPT training step, two configs
//   build/bench/bench_gemm --quick    a short subset
//   build/bench/bench_gemm --csv      name,m,n,k,ms,gflops,peer_gflops (peer 0 without OpenBLAS)
//
// OpenBLAS picks its kernels from OPENBLAS_CORETYPE when the library loads, and 0.3.21 does not
// know Zen 5, so this program first times each candidate core type (Zen, Haswell, SkylakeX,
// Cooperlake, and any inherited OPENBLAS_CORETYPE) in a child process and re-runs itself with the
// fastest, so the peer is OpenBLAS at its best on this machine. BENCH_OPENBLAS_CORETYPE=X forces X.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#if defined(TG_HAVE_OPENBLAS)
#include <cblas.h>
#endif

#include "bench/bench_common.h"
#include "ops/cpu/gemm.h"
#include "tensor/tensor.h"

namespace {

using tg::bench::add_linear_gemms;
using tg::bench::GemmShape;

void add_gpt(std::vector<GemmShape>& shapes, const std::string& config, int64_t tokens, int64_t C, int64_t vocab) {
  add_linear_gemms(shapes, config + ".qkv", tokens, C, 3 * C);
  add_linear_gemms(shapes, config + ".attn_proj", tokens, C, C);
  add_linear_gemms(shapes, config + ".fc", tokens, C, 4 * C);
  add_linear_gemms(shapes, config + ".mlp_proj", tokens, 4 * C, C);
  add_linear_gemms(shapes, config + ".lm_head", tokens, C, vocab);
}

std::vector<GemmShape> all_shapes(bool quick) {
  std::vector<GemmShape> shapes;
  for (int64_t s : quick ? std::vector<int64_t>{512, 2048} : std::vector<int64_t>{256, 512, 1024, 2048, 4096})
    shapes.push_back({"square" + std::to_string(s), false, false, s, s, s, 0.0f});
  if (quick) {
    add_linear_gemms(shapes, "b.fc", 16384, 384, 1536);
    return shapes;
  }
  // (a) 4 layers, C 128, block 64, batch 12: 768 tokens. (b) 6 layers, C 384, block 256, batch 64:
  // 16384 tokens. Both with a 65-character vocabulary.
  add_gpt(shapes, "a", 12 * 64, 128, 65);
  add_gpt(shapes, "b", 64 * 256, 384, 65);
  return shapes;
}

struct Operands {
  tg::Tensor a, b, c;
  int64_t lda, ldb;
};

Operands make_operands(const GemmShape& s) {
  tg::Generator gen(42);
  Operands o;
  o.a = s.trans_a ? tg::Tensor::randn({s.k, s.m}, &gen) : tg::Tensor::randn({s.m, s.k}, &gen);
  o.b = s.trans_b ? tg::Tensor::randn({s.n, s.k}, &gen) : tg::Tensor::randn({s.k, s.n}, &gen);
  o.c = tg::Tensor::zeros({s.m, s.n});
  o.lda = s.trans_a ? s.m : s.k;
  o.ldb = s.trans_b ? s.k : s.n;
  return o;
}


#if defined(TG_HAVE_OPENBLAS)
double openblas_ms(const GemmShape& s, Operands& o) {
  return tg::bench::best_ms_after_pause([&] {
    cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans, s.trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, o.a.data<float>(),
                static_cast<int>(o.lda), o.b.data<float>(), static_cast<int>(o.ldb), s.beta, o.c.data<float>(),
                static_cast<int>(s.n));
  });
}

// Child mode: OpenBLAS GFLOP/s at 2048^3 under whatever OPENBLAS_CORETYPE this process started with.
int probe_openblas() {
  openblas_set_num_threads(omp_get_max_threads());
  GemmShape s{"probe", false, false, 2048, 2048, 2048, 0.0f};
  Operands o = make_operands(s);
  double ms = openblas_ms(s, o);
  std::printf("%.3f\n", 2.0 * s.m * s.n * s.k / (ms * 1e-3) * 1e-9);
  return 0;
}

// Times each candidate core type in a child process and re-executes this program with the fastest.
// The re-executed program finds TG_BENCH_GEMM_CORES set and goes straight to the benchmark.
void pick_openblas_coretype(char** argv) {
  if (std::getenv("TG_BENCH_GEMM_CORES")) return;
  std::string summary;
  if (const char* forced = std::getenv("BENCH_OPENBLAS_CORETYPE")) {
    setenv("OPENBLAS_CORETYPE", forced, 1);
    summary = std::string("forced by BENCH_OPENBLAS_CORETYPE=") + forced;
  } else {
    // The inherited value is a candidate like the others, not trusted blindly: some environments
    // preset it to a conservative type (this one ships OPENBLAS_CORETYPE=Haswell).
    std::vector<std::string> candidates = {"Zen", "Haswell", "SkylakeX", "Cooperlake"};
    const char* inherited = std::getenv("OPENBLAS_CORETYPE");
    if (inherited && std::find(candidates.begin(), candidates.end(), inherited) == candidates.end())
      candidates.push_back(inherited);
    std::string best;
    double best_gflops = 0;
    for (const std::string& core : candidates) {
      std::string cmd = "OPENBLAS_CORETYPE=" + core + " TG_BENCH_GEMM_CORES=probe '" + argv[0] + "' --probe-openblas";
      FILE* pipe = popen(cmd.c_str(), "r");
      if (!pipe) continue;
      double gflops = 0;
      if (std::fscanf(pipe, "%lf", &gflops) != 1) gflops = 0;
      pclose(pipe);
      char line[64];
      std::snprintf(line, sizeof line, "%s%s %.0f", summary.empty() ? "" : ", ", core.c_str(), gflops);
      summary += line;
      if (gflops > best_gflops) { best_gflops = gflops; best = core; }
    }
    if (best.empty()) return;
    summary = "probed GFLOP/s at 2048^3: " + summary;
    setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
  }
  setenv("TG_BENCH_GEMM_CORES", summary.c_str(), 1);
  execv("/proc/self/exe", argv);
  std::perror("bench_gemm: re-exec with the chosen OPENBLAS_CORETYPE failed; using OpenBLAS's own choice");
}
#endif

int run(bool csv, bool quick) {
  const int threads = omp_get_max_threads();
#if defined(TG_HAVE_OPENBLAS)
  openblas_set_num_threads(threads);
#endif
  const double peak = tg::bench::measured_fma_peak_gflops(threads);
  if (csv) {
    std::printf("name,m,n,k,ms,gflops,peer_gflops\n");
  } else {
    // Other processes on these 2 cores skew both the peak and the timings: say how busy it was.
    double load = 0;
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf", &load) != 1) load = 0;
      std::fclose(f);
    }
    std::printf("SIMD %s, %d threads, measured FMA peak %.1f GFLOP/s, load average %.2f at start\n",
                tg::bench::simd_name().c_str(), threads, peak, load);
    // The bf16 peak beside it, for what the same cores do with half the bytes; the bf16 GEMMs
    // themselves, against that peak and against this f32 GEMM, are bench_gemm_bf16's table.
    if (const double bf16_peak = tg::bench::measured_bf16_peak_gflops(threads); bf16_peak > 0)
      std::printf("measured bf16 peak (vdpbf16ps) %.1f GFLOP/s, %.2fx the FMA peak: bf16 GEMMs in bench_gemm_bf16\n",
                  bf16_peak, bf16_peak / peak);
    else
      std::printf("bf16 peak: this CPU has no AVX512_BF16 (bf16 GEMMs run through f32; see bench_gemm_bf16)\n");
#if defined(TG_HAVE_OPENBLAS)
    const char* cores = std::getenv("TG_BENCH_GEMM_CORES");
    std::printf("peer: %s, %d threads, core %s (%s)\n", openblas_get_config(), threads, openblas_get_corename(),
                cores ? cores : "OPENBLAS_CORETYPE as inherited");
    std::printf("ms: best of ~0.5 s of repeats; %%peak: of the FMA peak above; ours/OB: GFLOP/s ratio\n");
    std::printf("%-20s %6s %6s %6s %9s %9s %7s %10s %7s\n", "shape", "m", "n", "k", "ms", "GFLOP/s", "%peak",
                "OpenBLAS", "ours/OB");
#else
    std::printf("peer: OpenBLAS was not found at build time; `make deps-bench` installs it, then `make bench`\n");
    std::printf("ms: best of ~0.5 s of repeats; %%peak: of the FMA peak above\n");
    std::printf("%-20s %6s %6s %6s %9s %9s %7s\n", "shape", "m", "n", "k", "ms", "GFLOP/s", "%peak");
#endif
  }
  for (const GemmShape& s : all_shapes(quick)) {
    Operands o = make_operands(s);
    double ms = tg::bench::best_ms_after_pause([&] {
      tg::cpu::gemm(s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, o.a.data<float>(), o.lda, o.b.data<float>(), o.ldb,
                    s.beta, o.c.data<float>(), s.n);
    });
    const double flops = 2.0 * s.m * s.n * s.k;
    const double gflops = flops / (ms * 1e-3) * 1e-9;
    double peer = 0;
#if defined(TG_HAVE_OPENBLAS)
    peer = flops / (openblas_ms(s, o) * 1e-3) * 1e-9;
#endif
    if (csv) {
      std::printf("%s,%lld,%lld,%lld,%.4f,%.2f,%.2f\n", s.name.c_str(), static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), ms, gflops, peer);
    } else {
      std::printf("%-20s %6lld %6lld %6lld %9.3f %9.1f %6.1f%%", s.name.c_str(), static_cast<long long>(s.m),
                  static_cast<long long>(s.n), static_cast<long long>(s.k), ms, gflops, 100.0 * gflops / peak);
      if (peer > 0) std::printf(" %10.1f %7.2f", peer, gflops / peer);
      std::printf("\n");
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool csv = false, quick = false;
  tg::FlagSet flags("bench_gemm", "[flags]",
                    "SGEMM throughput: tg::cpu::gemm against this machine's measured FMA peak and, when OpenBLAS is\n"
                    "installed, against OpenBLAS on the same shape in the same run with the same thread count, at\n"
                    "square sizes and every GEMM of a GPT training step in two configs. OpenBLAS runs with the core\n"
                    "type (OPENBLAS_CORETYPE) that a probe finds fastest here; BENCH_OPENBLAS_CORETYPE=X forces X.");
  flags.add_switch("quick", &quick, "a short subset: 512^3, 2048^3 and one fc layer's GEMMs");
  flags.add_switch("csv", &csv, "name,m,n,k,ms,gflops,peer_gflops (peer 0 without OpenBLAS)");
#if defined(TG_HAVE_OPENBLAS)
  bool probe = false;
  flags.add_switch("probe-openblas", &probe,
                   "internal, the probe's child: print OpenBLAS's GFLOP/s at 2048^3 under the inherited core type");
#endif
  // Parsing comes first, so --help and a bad argument end the program before it probes or re-executes itself.
  return tg::bench::run_main(flags, argc, argv, [&] {
#if defined(TG_HAVE_OPENBLAS)
    if (probe) return probe_openblas();
    pick_openblas_coretype(argv);  // re-executes the program, once, under the fastest core type
#endif
    return run(csv, quick);
  });
}
