// conv2d throughput (NHWC, f32) per layer of the reference CNN and of a small ResNet: forward,
// input gradient and weight gradient, in GFLOP/s and as a fraction of this machine's measured FMA
// peak, next to the textbook peer: an explicit im2col of the whole batch followed by OpenBLAS
// sgemm (and col2im for the input gradient), when OpenBLAS is installed.
//
//   build/bench/bench_conv            cnn-ref and ResNet layers, batch 128
//   build/bench/bench_conv --quick    cnn-ref layers only
//   build/bench/bench_conv --nchw     also the cnn-ref forward in NCHW (bench-only code, below), to
//                                     measure the layout choice
//   OMP_NUM_THREADS=1 build/bench/bench_conv --cpu-time
//                                     one thread timed by its CPU time instead of wall time: on a
//                                     machine shared with other jobs, time spent descheduled is not
//                                     counted. (With more threads CPU time misleads: a thread that
//                                     sleeps at a barrier stops counting, so it is refused.)
//
// The peer's time includes its im2col / col2im passes (OpenMP over images): they are part of that
// algorithm, and what the implicit GEMM avoids. OpenBLAS 0.3.21 does not know Zen 5; its SkylakeX
// kernels were the fastest in bench_gemm's probe on this machine, so this program re-runs itself
// with OPENBLAS_CORETYPE=SkylakeX (BENCH_OPENBLAS_CORETYPE=X picks another).
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#if defined(TG_HAVE_OPENBLAS)
#include <cblas.h>
#endif

#include "bench/bench_common.h"
#include "bench/conv_layers.h"
#include "ops/conv2d.h"
#include "ops/cpu/gemm.h"
#include "programs/lib/machine_peak.h"
#include "tensor/tensor.h"

namespace {

using Layer = tg::bench::ConvLayer;

// The cnn-ref layers (and with quick off, the ResNet's) at batch 128.
std::vector<Layer> layers(bool quick) { return tg::bench::conv_layers(128, quick); }

// Best of enough repeats for about half a second (at least 3), after a pause that lets the other
// library's spinning threads go to sleep (see bench_gemm.cpp). Best, not median: the machine is
// shared, and the fastest run is the least disturbed.
bool g_cpu_time = false;

// One run of fn in milliseconds: wall time, or (--cpu-time, one thread) process CPU time.
double run_ms(const std::function<void()>& fn) {
  if (!g_cpu_time) return tg::bench::time_ms(fn, 1, 0);
  timespec a, b;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
  fn();
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
  return (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) * 1e-6;
}

double time_best_ms(const std::function<void()>& fn) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  fn();  // warm-up
  const double once = run_ms(fn);
  const int repeats = std::clamp(static_cast<int>(500.0 / std::max(once, 1e-3)), 3, 100);
  double best = once;
  for (int i = 0; i < repeats; i++) best = std::min(best, run_ms(fn));
  return best;
}

// The one-thread FMA peak by CPU time, like the --cpu-time figures: the wall-clock peak scaled by
// wall / CPU time of the same run (a run that lost the core to another job counts only the time it
// ran), best of five.
double cpu_time_fma_peak_gflops() {
  double best = 0;
  for (int i = 0; i < 5; i++) {
    timespec wall0, wall1, cpu0, cpu1;
    clock_gettime(CLOCK_MONOTONIC, &wall0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
    const double gflops = tg::cpu_peak_gflops(1, 20000000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
    clock_gettime(CLOCK_MONOTONIC, &wall1);
    const double wall = (wall1.tv_sec - wall0.tv_sec) + (wall1.tv_nsec - wall0.tv_nsec) * 1e-9;
    const double cpu = (cpu1.tv_sec - cpu0.tv_sec) + (cpu1.tv_nsec - cpu0.tv_nsec) * 1e-9;
    best = std::max(best, gflops * wall / cpu);
  }
  return best;
}

#if defined(TG_HAVE_OPENBLAS)
// The peer: cols (N*P*Q, R*S*C) built from x, then sgemm; col2im for the input gradient.
struct Peer {
  const Layer& l;
  int64_t P, Q;
  tg::bench::AlignedVector<float> cols, w_krsc;

  explicit Peer(const Layer& layer) : l(layer) {
    P = (l.H + 2 * l.pad - l.R) / l.stride + 1;
    Q = (l.W + 2 * l.pad - l.S) / l.stride + 1;
    cols.resize(static_cast<size_t>(l.N * P * Q * l.R * l.S * l.C));
  }
  int64_t rsc() const { return l.R * l.S * l.C; }
  void im2col(const float* x) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < l.N * P * Q; i++) {
      const int64_t n = i / (P * Q), p = i % (P * Q) / Q, q = i % Q;
      float* row = cols.data() + i * rsc();
      for (int64_t r = 0; r < l.R; r++)
        for (int64_t s = 0; s < l.S; s++) {
          const int64_t h = p * l.stride - l.pad + r, w = q * l.stride - l.pad + s;
          float* dst = row + (r * l.S + s) * l.C;
          if (h < 0 || h >= l.H || w < 0 || w >= l.W) std::memset(dst, 0, sizeof(float) * l.C);
          else std::memcpy(dst, x + ((n * l.H + h) * l.W + w) * l.C, sizeof(float) * l.C);
        }
    }
  }
  void col2im(float* dx) {  // threads own whole images
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < l.N; n++)
      for (int64_t pq = 0; pq < P * Q; pq++) {
        const int64_t p = pq / Q, q = pq % Q;
        const float* row = cols.data() + (n * P * Q + pq) * rsc();
        for (int64_t r = 0; r < l.R; r++)
          for (int64_t s = 0; s < l.S; s++) {
            const int64_t h = p * l.stride - l.pad + r, w = q * l.stride - l.pad + s;
            if (h < 0 || h >= l.H || w < 0 || w >= l.W) continue;
            float* d = dx + ((n * l.H + h) * l.W + w) * l.C;
            const float* src = row + (r * l.S + s) * l.C;
            for (int64_t c = 0; c < l.C; c++) d[c] += src[c];
          }
      }
  }
  int M() const { return static_cast<int>(l.N * P * Q); }
  void forward(float* out, const float* x, const float* w) {
    im2col(x);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M(), static_cast<int>(l.K), static_cast<int>(rsc()), 1.0f,
                cols.data(), static_cast<int>(rsc()), w, static_cast<int>(rsc()), 0.0f, out, static_cast<int>(l.K));
  }
  void backward_input(float* dx, const float* dout, const float* w) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M(), static_cast<int>(rsc()), static_cast<int>(l.K), 1.0f,
                dout, static_cast<int>(l.K), w, static_cast<int>(rsc()), 0.0f, cols.data(), static_cast<int>(rsc()));
    col2im(dx);
  }
  void backward_weight(float* dw, const float* dout, const float* x) {
    im2col(x);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(l.K), static_cast<int>(rsc()), M(), 1.0f,
                dout, static_cast<int>(l.K), cols.data(), static_cast<int>(rsc()), 1.0f, dw, static_cast<int>(rsc()));
  }
};

void use_fast_openblas_kernels(char** argv) {
  if (std::getenv("TG_BENCH_CONV_REEXEC")) return;
  const char* core = std::getenv("BENCH_OPENBLAS_CORETYPE");
  setenv("OPENBLAS_CORETYPE", core ? core : "SkylakeX", 1);
  setenv("TG_BENCH_CONV_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  std::perror("bench_conv: re-exec with OPENBLAS_CORETYPE failed; using OpenBLAS's own choice");
}
#endif

// ---- the NCHW alternative (forward only, for the layout decision) ------------------------------
// In NCHW the natural implicit GEMM per image is out (K, P*Q) = weight (K, C*R*S) @ patches^T
// (C*R*S, P*Q): the weight is the A operand as stored, and the patch matrix the B operand, packed
// here from x (C,H,W): for tap (c, r, s), NR consecutive output pixels of one output row read
// consecutive input pixels of one input row (stride 1), so each sliver row is a few copies.
class NchwPatchPackB : public tg::cpu::GemmPackB {
 public:
  NchwPatchPackB(const float* x, int64_t H, int64_t W, int64_t R, int64_t S, int64_t pad, int64_t Q)
      : x_(x), H_(H), W_(W), R_(R), S_(S), pad_(pad), Q_(Q) {}
  void pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const override {
    const int64_t NR = nr;
    for (int64_t t0 = 0; t0 < n; t0 += NR) {
      float* sliver = b_pack + t0 * k;
      const int64_t cols = std::min(NR, n - t0);
      for (int64_t kk = 0; kk < k; kk++) {
        const int64_t crs = p0 + kk, c = crs / (R_ * S_), r = crs / S_ % R_, s = crs % S_;
        float* dst = sliver + kk * NR;
        std::memset(dst, 0, sizeof(float) * NR);
        // Output pixels j0+t0 .. +cols, one output row (p) at a time.
        for (int64_t j = 0; j < cols;) {
          const int64_t pixel = j0 + t0 + j, p = pixel / Q_, q = pixel % Q_;
          const int64_t run = std::min(cols - j, Q_ - q), h = p - pad_ + r;
          if (h >= 0 && h < H_) {
            // Input columns w = q' - pad + s for q' in [q, q + run), clipped to [0, W).
            const int64_t w0 = q - pad_ + s, lo = std::max<int64_t>(0, -w0), hi = std::min(run, W_ - w0);
            if (hi > lo) std::memcpy(dst + j + lo, x_ + (c * H_ + h) * W_ + w0 + lo, sizeof(float) * (hi - lo));
          }
          j += run;
        }
      }
    }
  }

 private:
  const float* x_;
  int64_t H_, W_, R_, S_, pad_, Q_;
};

// x (N,C,H,W), weight (K,C,R,S) -> out (N,K,P,Q), stride 1; images split over the threads.
void conv2d_nchw_forward(float* out, const float* x, const float* weight, const Layer& l) {
  const int64_t P = l.H + 2 * l.pad - l.R + 1, Q = l.W + 2 * l.pad - l.S + 1, CRS = l.C * l.R * l.S;
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < l.N; n++)
    tg::cpu::gemm_packed(l.K, P * Q, CRS, 1.0f, tg::cpu::MatrixPackA(false, weight, CRS),
                         NchwPatchPackB(x + n * l.C * l.H * l.W, l.H, l.W, l.R, l.S, l.pad, Q), 0.0f,
                         out + n * l.K * P * Q, P * Q);
}

// The benchmark, once the command line is checked: the re-exec (with OpenBLAS; without it argv goes
// unused) runs this program again with main's argv, so --help and a bad argument stop before it,
// and the second run parses the same arguments as the first.
int run([[maybe_unused]] char** argv, bool quick, bool nchw) {
  if (g_cpu_time && omp_get_max_threads() != 1) {
    std::fprintf(stderr, "bench_conv: --cpu-time times one thread; run it with OMP_NUM_THREADS=1 (found %d threads)\n",
                 omp_get_max_threads());
    return 2;
  }
#if defined(TG_HAVE_OPENBLAS)
  use_fast_openblas_kernels(argv);
  openblas_set_num_threads(omp_get_max_threads());
#endif
  const double peak = g_cpu_time ? cpu_time_fma_peak_gflops() : tg::bench::measured_fma_peak_gflops();
  double load = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  std::printf("SIMD %s, %d threads, measured FMA peak %.1f GFLOP/s, load average %.2f at start\n",
              tg::bench::simd_name().c_str(), omp_get_max_threads(), peak, load);
#if defined(TG_HAVE_OPENBLAS)
  std::printf("peer: explicit im2col + OpenBLAS sgemm (+ col2im), %s, OPENBLAS_CORETYPE=%s\n", openblas_get_config(),
              std::getenv("OPENBLAS_CORETYPE"));
  const char* peer_columns = "; OB: the peer's GFLOP/s";
#else
  std::printf("peer: OpenBLAS was not found at build time; `make deps-bench` installs it, then `make bench`\n");
  const char* peer_columns = "";
#endif
  std::printf("GFLOP/s = 2*N*P*Q*K*R*S*C / best %s (Winograd's counted the same: effective FLOPs); %%peak of the "
              "FMA peak; algo: what the front chose (TG_CONV_ALGO)%s\n",
              g_cpu_time ? "CPU time" : "wall time", peer_columns);
  std::printf("%-24s %-5s %-8s %9s %9s %7s", "layer", "pass", "algo", "ms", "GFLOP/s", "%peak");
  if (*peer_columns) std::printf(" %9s %7s", "OB", "ours/OB");
  std::printf("\n");
  for (const Layer& l : layers(quick)) {
    tg::Generator gen(7);
    tg::Conv2dParams p;
    p.stride_h = p.stride_w = l.stride;
    p.pad_h = p.pad_w = l.pad;
    tg::Tensor x = tg::Tensor::randn({l.N, l.H, l.W, l.C}, &gen);
    tg::Tensor w = tg::Tensor::randn({l.K, l.C, l.R, l.S}, &gen);
    tg::Tensor b = tg::Tensor::randn({l.K}, &gen);
    tg::Tensor out = tg::Tensor::empty(tg::ops::conv2d_output_shape(x, w, p));
    tg::Tensor dout = tg::Tensor::randn(out.shape(), &gen);
    tg::Tensor dx = tg::Tensor::zeros(x.shape()), dw = tg::Tensor::zeros(w.shape()), db = tg::Tensor::zeros({l.K});
    const double flops = 2.0 * out.numel() * l.R * l.S * l.C;
    struct Pass {
      const char* name;
      std::function<void()> ours, peer;
      const char* algo;
    };
    auto algo_name = [&](tg::ops::ConvPass pass) {
      return tg::ops::conv2d_algorithm(x, w, p, pass) == tg::ops::ConvAlgo::Winograd ? "winograd" : "im2col";
    };
#if defined(TG_HAVE_OPENBLAS)
    Peer peer(l);
    // The peer reads the weight in (K, R, S, C) order (what it would keep); ours repacks per call.
    tg::bench::AlignedVector<float> w_krsc(static_cast<size_t>(w.numel()));
    tg::bench::AlignedVector<float> dw_peer(w_krsc.size(), 0.0f);
    for (int64_t k = 0; k < l.K; k++)
      for (int64_t c = 0; c < l.C; c++)
        for (int64_t rs = 0; rs < l.R * l.S; rs++)
          w_krsc[(k * l.R * l.S + rs) * l.C + c] = w.data<float>()[(k * l.C + c) * l.R * l.S + rs];
#endif
    std::vector<Pass> passes = {
        {"fwd", [&] { tg::ops::conv2d_forward(out, x, w, b, p); }, nullptr, algo_name(tg::ops::ConvPass::Forward)},
        {"dgrad", [&] { tg::ops::conv2d_backward_input(dx, dout, w, p); }, nullptr,
         algo_name(tg::ops::ConvPass::InputGradient)},
        {"wgrad", [&] { tg::ops::conv2d_backward_weight(dw, db, dout, x, p); }, nullptr, "im2col"},
    };
#if defined(TG_HAVE_OPENBLAS)
    passes[0].peer = [&] { peer.forward(out.data<float>(), x.data<float>(), w_krsc.data()); };
    passes[1].peer = [&] { peer.backward_input(dx.data<float>(), dout.data<float>(), w_krsc.data()); };
    passes[2].peer = [&] { peer.backward_weight(dw_peer.data(), dout.data<float>(), x.data<float>()); };
#endif
    for (const Pass& pass : passes) {
      const double gflops = flops / (time_best_ms(pass.ours) * 1e-3) * 1e-9;
      std::printf("%-24s %-5s %-8s %9.3f %9.1f %6.1f%%", l.name.c_str(), pass.name, pass.algo, flops / gflops * 1e-6,
                  gflops, 100.0 * gflops / peak);
      if (pass.peer) {
        const double peer_gflops = flops / (time_best_ms(pass.peer) * 1e-3) * 1e-9;
        std::printf(" %9.1f %7.2f", peer_gflops, gflops / peer_gflops);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  if (nchw) {
    std::printf("\nlayout: the cnn-ref forward in NCHW (implicit GEMM out = weight @ patches^T per image)\n");
    std::printf("%-24s %-5s %9s %9s %7s %9s\n", "layer", "pass", "ms", "GFLOP/s", "%peak", "NHWC speedup");
    for (const Layer& l : layers(true)) {
      tg::Generator gen(7);
      tg::Conv2dParams p;
      p.pad_h = p.pad_w = l.pad;
      tg::Tensor x = tg::Tensor::randn({l.N, l.H, l.W, l.C}, &gen), w = tg::Tensor::randn({l.K, l.C, l.R, l.S}, &gen);
      tg::Tensor out = tg::Tensor::empty(tg::ops::conv2d_output_shape(x, w, p));
      tg::bench::AlignedVector<float> out_nchw(static_cast<size_t>(out.numel()));
      const double flops = 2.0 * out.numel() * l.R * l.S * l.C;
      // x in NCHW, and a check that both layouts compute the same convolution.
      tg::bench::AlignedVector<float> x_nchw(static_cast<size_t>(x.numel()));
      for (int64_t n = 0; n < l.N; n++)
        for (int64_t hw = 0; hw < l.H * l.W; hw++)
          for (int64_t c = 0; c < l.C; c++)
            x_nchw[(n * l.C + c) * l.H * l.W + hw] = x.data<float>()[(n * l.H * l.W + hw) * l.C + c];
      const double nchw_ms =
          time_best_ms([&] { conv2d_nchw_forward(out_nchw.data(), x_nchw.data(), w.data<float>(), l); });
      const double nhwc_ms = time_best_ms([&] { tg::ops::conv2d_forward(out, x, w, tg::Tensor(), p); });
      const int64_t PQ = out.size(1) * out.size(2);
      double max_diff = 0;
      for (int64_t n = 0; n < l.N; n++)
        for (int64_t pq = 0; pq < PQ; pq++)
          for (int64_t k = 0; k < l.K; k++)
            max_diff = std::max(max_diff, static_cast<double>(std::fabs(out_nchw[(n * l.K + k) * PQ + pq] -
                                                                        out.data<float>()[(n * PQ + pq) * l.K + k])));
      const double gflops = flops / (nchw_ms * 1e-3) * 1e-9;
      std::printf("%-24s %-5s %9.3f %9.1f %6.1f%% %9.2f   (max |NCHW - NHWC| %.1e)\n", l.name.c_str(), "fwd", nchw_ms,
                  gflops, 100.0 * gflops / peak, nchw_ms / nhwc_ms, max_diff);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, nchw = false;
  tg::FlagSet flags("bench_conv", "[flags]",
                    "conv2d throughput (NHWC, f32) per layer of the reference CNN and of a small ResNet, batch\n"
                    "128: forward, input gradient and weight gradient, in GFLOP/s and as a fraction of this\n"
                    "machine's FMA peak measured in the same run, next to an explicit im2col of the whole batch\n"
                    "followed by OpenBLAS sgemm (and col2im for the input gradient), when OpenBLAS is installed.\n"
                    "The program re-runs itself with OPENBLAS_CORETYPE=SkylakeX (BENCH_OPENBLAS_CORETYPE=X picks\n"
                    "another).");
  flags.add_switch("quick", &quick, "the cnn-ref layers only");
  flags.add_switch("nchw", &nchw, "also the cnn-ref forward in NCHW, to measure the layout choice");
  // The why (time descheduled on a shared machine is not counted) is in the header comment.
  flags.add_switch("cpu-time", &g_cpu_time, "one thread timed by its CPU time, not wall time (OMP_NUM_THREADS=1)");
  return tg::bench::run_main(flags, argc, argv, [&] { return run(argv, quick, nchw); });
}
