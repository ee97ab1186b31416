// The optimizer kernels of ops/cpu/optim.h on one flat parameter of the small GPT preset's size
// (10,773,888 weights; any n as the argument): AdamW for an f32 model, for a bf16 model (its master
// kept as the 16 low bits beside the bf16 weight) and for an f16 model (an f32 master), and the
// gradient-norm sum of squares and the scale that clipping and the loss scaler run. All are
// memory-bound: each line prints the bytes the kernel must move (read + written, per weight in the
// table below) over its best time, against the copy bandwidth measured in the same run.
// PyTorch's CPU AdamW on the same n is the peer: bench/torch/adamw_cpu.py.
//
//   make bench && ./build/bench/bench_optim [n]
#include <omp.h>

#include <cstdio>
#include <functional>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cpu/optim.h"
#include "tensor/dtype.h"
#include "tensor/random.h"

using namespace tg;

namespace {

struct Line {
  const char* name;
  double bytes_per_weight;  // read + written
  std::function<void()> run;
};

int run(int64_t n) {
  const double copy_gbs = bench::measured_copy_bandwidth_gbs();
  std::printf("SIMD: %s, OpenMP threads: %d, copy bandwidth (read + write): %.1f GB/s, n = %lld weights\n",
              bench::simd_name().c_str(), omp_get_max_threads(), copy_gbs, static_cast<long long>(n));

  // Values of a model in training: weights and gradients of unit scale, moments already warm.
  Generator gen(1);
  const size_t size = static_cast<size_t>(n);
  bench::AlignedVector<float> param(size), grad(size), m(size), v(size), master(size);
  bench::AlignedVector<uint16_t> param16(size), grad16(size), low(size, 0x7fff), f16_param(size), f16_grad(size);
  for (size_t i = 0; i < size; i++) {
    param[i] = master[i] = gen.normal();
    grad[i] = 0.01f * gen.normal();
    m[i] = 0.001f * gen.normal();
    v[i] = 1e-4f * (1.0f + gen.uniform());
    param16[i] = f32_to_bf16(param[i]);
    grad16[i] = f32_to_bf16(grad[i]);
    f16_param[i] = f32_to_f16(param[i]);
    f16_grad[i] = f32_to_f16(grad[i]);
  }
  const float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, decay = 0.1f;
  int64_t step = 100;  // bias correction well away from its first steps; each run adds one

  // Bytes per weight: AdamW reads the gradient, the master (or the f32 weight, or the bf16 weight
  // and its low bits) and both moments, and writes the weight, the master and both moments.
  const std::vector<Line> lines = {
      {"adamw f32", 4 + 4 + 8 + 4 + 8,
       [&] {
         cpu::adamw_update(param.data(), grad.data(), m.data(), v.data(), n, lr, beta1, beta2, eps, decay, ++step);
       }},
      {"adamw bf16 (split)", 2 + 2 + 2 + 8 + 2 + 2 + 8,
       [&] {
         cpu::adamw_update_bf16_split(param16.data(), grad16.data(), low.data(), m.data(), v.data(), n, lr, beta1,
                                      beta2, eps, decay, ++step);
       }},
      {"adamw f16 (master)", 2 + 4 + 8 + 2 + 4 + 8,
       [&] {
         cpu::adamw_update_half(DType::F16, f16_param.data(), f16_grad.data(), master.data(), m.data(), v.data(), n,
                                lr, beta1, beta2, eps, decay, ++step, false, 0);
       }},
      {"sum_of_squares f32", 4, [&] { (void)cpu::sum_of_squares(grad.data(), n); }},
      {"sum_of_squares bf16", 2, [&] { (void)cpu::sum_of_squares_half(DType::BF16, grad16.data(), n); }},
      {"scale f32 (checked)", 8, [&] { (void)cpu::scale(grad.data(), n, 1.0f, true); }},
  };
  std::printf("%-22s %9s %16s %10s %8s\n", "kernel", "B/weight", "ms best (median)", "GB/s", "% copy");
  for (const Line& line : lines) {
    const bench::Timing t = bench::time_runs(line.run, 20, 3);
    const double gbs = line.bytes_per_weight * static_cast<double>(n) / (t.best_ms * 1e6);
    std::printf("%-22s %9.0f %7.2f (%6.2f) %10.1f %7.0f%%\n", line.name, line.bytes_per_weight, t.best_ms, t.median_ms,
                gbs, 100 * gbs / copy_gbs);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 10773888;
  FlagSet flags("bench_optim", "[n]",
                "AdamW for f32, bf16 and f16 models, the gradient-norm sum of squares and the clipping scale on one\n"
                "flat parameter, against the copy bandwidth measured in the same run. Peer: PyTorch's CPU AdamW,\n"
                "bench/torch/adamw_cpu.py.");
  // The upper bound only keeps the sizes far from overflow; it is no memory check (30 bytes a weight).
  flags.add_int_argument("n", &n, "weights in the parameter, a positive number (the small preset's by default)", 1,
                         int64_t(1) << 32);
  return bench::run_main(flags, argc, argv, [&] { return run(n); });
}
