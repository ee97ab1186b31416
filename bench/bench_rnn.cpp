// LSTM training throughput: forward + backward of tg::LSTM on x (T, B, I) with the loss
// sum(output * w), in ms and GFLOP/s against this machine's measured FMA peak, next to PyTorch's
// CPU nn.LSTM on the same sizes in the same run (bench/torch_rnn.py, with as many threads).
//
//   build/bench/bench_rnn                       T=256, B=64, I=H=384, one layer, best of 3
//   build/bench/bench_rnn T B I H LAYERS REPEATS   (or the first few of them; the rest keep their defaults)
//   build/bench/bench_rnn ... --no-torch        without the PyTorch peer
//
// Run from the repository root (the peer script is found at bench/torch_rnn.py). FLOPs count the
// GEMMs only: forward 2·T·B·4H·(I + H) per layer (the input projection and the recurrent one),
// backward twice that (the input and the weight gradients); the pointwise cells are O(T·B·H).
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "bench/bench_common.h"
#include "nn/rnn.h"

using namespace tg;

namespace {

struct Sizes {
  int64_t T = 256, B = 64, I = 384, H = 384, layers = 1, repeats = 3;
};

int run(const Sizes& sizes, bool torch_peer) {
  const int64_t T = sizes.T, B = sizes.B, I = sizes.I, H = sizes.H, layers = sizes.layers, repeats = sizes.repeats;
  const int threads = omp_get_max_threads();

  Generator gen(1);
  LSTM lstm(I, H, layers, false, 0.0f, true, &gen);
  Tensor x = Tensor::randn({T, B, I}, &gen).requires_grad_();
  Tensor w = Tensor::randn({T, B, H}, &gen);
  auto step = [&] {
    for (Tensor& p : lstm.parameters()) p.set_grad(Tensor());
    x.set_grad(Tensor());
    RNNOutput out = lstm.forward(x);
    backward(sum(out.output * w));
  };
  bench::Timing t = bench::time_runs(step, static_cast<int>(repeats), 1);

  double flops = 0;
  for (int64_t k = 0; k < layers; k++) flops += 3.0 * 2.0 * T * B * 4 * H * ((k == 0 ? I : H) + H);
  const double peak = bench::measured_fma_peak_gflops(threads);
  std::printf("LSTM forward+backward  T=%lld B=%lld I=%lld H=%lld layers=%lld  (%d threads, %s, best of %lld)\n",
              (long long)T, (long long)B, (long long)I, (long long)H, (long long)layers, threads,
              bench::simd_name().c_str(), (long long)repeats);
  std::printf("  tilegrad  %9.1f ms best  %9.1f ms median  %6.1f GFLOP/s  (%.0f%% of the measured %.0f GFLOP/s FMA"
              " peak)\n",
              t.best_ms, t.median_ms, flops / t.best_ms * 1e-6, 100.0 * flops / t.best_ms * 1e-6 / peak, peak);

  if (!torch_peer) return 0;
  char cmd[256];
  std::snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/torch_rnn.py %lld %lld %lld %lld %lld %lld %d 2>/dev/null",
                (long long)T, (long long)B, (long long)I, (long long)H, (long long)layers, (long long)repeats, threads);
  FILE* pipe = popen(cmd, "r");
  double best = 0, median = 0;
  if (!pipe || std::fscanf(pipe, "%lf %lf", &best, &median) != 2) {
    if (pipe) pclose(pipe);
    std::printf("  PyTorch   not measured (running bench/torch_rnn.py with /usr/bin/python3 failed; run from the"
                " repository root)\n");
    return 0;
  }
  pclose(pipe);
  std::printf("  PyTorch   %9.1f ms best  %9.1f ms median  %6.1f GFLOP/s  (nn.LSTM, %d threads)  -> tilegrad %.2fx"
              " faster\n",
              best, median, flops / best * 1e-6, threads, best / t.best_ms);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Sizes sizes;
  bool no_torch = false;
  FlagSet flags("bench_rnn", "[T [B [I [H [LAYERS [REPEATS]]]]]] [--no-torch]",
                "LSTM training throughput: forward + backward of tg::LSTM on x (T, B, I) with the loss\n"
                "sum(output * w), in ms and GFLOP/s against this machine's FMA peak measured in the same run, next to\n"
                "PyTorch's CPU nn.LSTM on the same sizes with as many threads (bench/torch_rnn.py, run with\n"
                "/usr/bin/python3: run from the repository root). FLOPs count the GEMMs only.");
  flags.add_int_argument("T", &sizes.T, "time steps", 1, 1 << 20);
  flags.add_int_argument("B", &sizes.B, "batch", 1, 1 << 16);
  flags.add_int_argument("I", &sizes.I, "input features", 1, 1 << 16);
  flags.add_int_argument("H", &sizes.H, "hidden features", 1, 1 << 16);
  flags.add_int_argument("LAYERS", &sizes.layers, "stacked layers", 1, 64);
  flags.add_int_argument("REPEATS", &sizes.repeats, "timed runs after one warm-up (best and median)", 1, 10000);
  flags.add_switch("no-torch", &no_torch, "without the PyTorch peer");
  return bench::run_main(flags, argc, argv, [&] { return run(sizes, !no_torch); });
}
