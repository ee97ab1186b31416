// All-reduce bandwidth of the engine at hand, as nccl-tests defines it: for S bytes reduced over N
// ranks in t seconds, algbw = S / t and busbw = algbw * 2 (N - 1) / N, the traffic each rank's
// link carries in a ring all-reduce, comparable with the link's bandwidth whatever N is.
//
//   mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 build/bench/bench_dist [MAX_MB]
//   mpirun -np 8 build/bench/bench_dist 256 cuda      # NCCL, one rank per GPU (cuda:<local rank>)
//
// Sizes from 1 KB to MAX_MB (256 by default) in powers of 4; f32 sums through the communicator's
// asynchronous all-reduce and wait (what DataParallel issues), best of several repetitions after
// a barrier, timed on rank 0 (on a GPU, wait() returns once the collective's end event has
// completed). Alone (no mpirun) it measures the single-process engine: nothing moves.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "bench/bench_common.h"
#include "dist/launch.h"

using namespace tg;
using Clock = std::chrono::steady_clock;

namespace {

// The launcher's errors come out of here as exceptions, for run_main to print in one line on each
// rank.
int run(double max_mb, Device parsed) {
  Device device = dist::rank_device(parsed);
  set_device(device);
  std::unique_ptr<dist::Communicator> comm = dist::make_communicator(device);
  const int n = comm->world_size();
  if (comm->rank() == 0)
    std::printf("all-reduce (sum, f32) over %d rank(s), %s engine; best of the repetitions\n%12s %8s %12s %12s %12s\n",
                n, comm->engine().c_str(), "bytes", "reps", "time (us)", "algbw GB/s", "busbw GB/s");
  for (double bytes = 1024; bytes <= max_mb * 1048576.0; bytes *= 4) {
    int64_t count = static_cast<int64_t>(bytes / 4);
    Tensor x = Tensor::ones({count}, DType::F32, device);
    int reps = bytes < 1e6 ? 50 : bytes < 3e7 ? 10 : 3;
    double best = 1e30;
    comm->all_reduce(x);  // warm-up: connections, pages
    for (int r = 0; r < reps; r++) {
      comm->barrier();
      Clock::time_point start = Clock::now();
      comm->all_reduce_async(x, dist::ReduceOp::Sum).wait();
      best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
    }
    double algbw = bytes / best / 1e9;
    if (comm->rank() == 0)
      std::printf("%12.0f %8d %12.1f %12.3f %12.3f\n", bytes, reps, best * 1e6, algbw,
                  algbw * 2.0 * (n - 1) / std::max(n, 1));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  double max_mb = 256;
  std::string device_name = "cpu";
  FlagSet flags("bench_dist", "[MAX_MB [DEVICE]]",
                "All-reduce bandwidth of the engine at hand (MPI under mpirun on the CPU, NCCL on CUDA ranks, the\n"
                "single-process engine alone), as nccl-tests defines it: algbw = S / t, busbw = algbw * 2 (N - 1) / N\n"
                "for S bytes over N ranks. Sizes from 1 KB to MAX_MB in powers of 4, f32 sums, best of several\n"
                "repetitions after a barrier, timed on rank 0.");
  flags.add_float_argument("MAX_MB", &max_mb, "the largest message, in MB (1 KB to it in powers of 4)", 0.001, 65536);
  flags.add_string_argument("DEVICE", &device_name, "cpu, cuda or cuda:N; several CUDA ranks take cuda:<local rank>");
  // parse_device's error names the text and the accepted forms.
  Device device;
  return bench::run_main(flags, argc, argv, [&] { return run(max_mb, device); },
                         [&] { device = parse_device(device_name); });
}
