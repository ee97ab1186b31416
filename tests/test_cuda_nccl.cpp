// The NCCL engine on one rank, and the stream-aware CUDA allocator: skipped without a GPU (and the
// engine's tests without NCCL in the build). One rank is all one GPU allows (NCCL 2.28 refuses two
// ranks on one device), so each collective is checked against the one-rank reduction, which is the
// input itself, exactly: a wrong count, offset, dtype or root, or a result read before the
// collective finished, shows as a mismatch. Several ranks need several GPUs (see the README).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "dist/nccl_communicator.h"
#include "tensor/cuda_allocator.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

#ifdef TG_CUDA
#include <cuda_runtime.h>
#endif

using namespace tg;
using namespace tg::dist;
using tg::test::gpu;

namespace {

#define TG_REQUIRE_NCCL()                                                                   \
  do {                                                                                      \
    TG_REQUIRE_GPU();                                                                       \
    if (!built_with_nccl()) GTEST_SKIP() << no_nccl_reason();                               \
  } while (0)

// A world of one, bootstrapped through a rendezvous store on a free port of this machine.
std::unique_ptr<NcclCommunicator> one_rank(std::chrono::seconds timeout = std::chrono::seconds(60)) {
  LaunchInfo launch{0, 1, 0, "torchrun-style variables", "127.0.0.1", 0};
  return std::make_unique<NcclCommunicator>(gpu(), launch, timeout);
}

const DType kDTypes[] = {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8};
const int64_t kSizes[] = {1, 7, 4099, 100003};  // odd sizes: no multiple of a vector width

// n values exactly representable in `dtype` (small integers for i32 and u8), on the CPU.
Tensor input(Generator& gen, int64_t n, DType dtype) {
  std::vector<float> values(static_cast<size_t>(n));
  for (float& v : values) {
    if (dtype == DType::I32) v = static_cast<float>(static_cast<int64_t>(gen.below(2000001)) - 1000000);
    else if (dtype == DType::U8) v = static_cast<float>(gen.below(256));
    else v = gen.normal();
  }
  return Tensor::from_vector(values, {n}, dtype);
}

}  // namespace

TEST(CudaNccl, EveryCollectiveOnOneRankGivesTheInputExactly) {
  TG_REQUIRE_NCCL();
  auto comm = one_rank();
  EXPECT_EQ(comm->engine(), "NCCL");
  EXPECT_EQ(comm->world_size(), 1);
  Generator gen(1101);
  for (DType dtype : kDTypes) {
    for (int64_t n : kSizes) {
      std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(n);
      Tensor host = input(gen, n, dtype);
      std::vector<float> want = host.to_vector();

      Tensor x = host.to(gpu());  // the copy runs on the compute stream: the collective must wait for it
      comm->all_reduce(x, ReduceOp::Sum, "x");
      EXPECT_EQ(x.to(Device::cpu()).to_vector(), want) << "all_reduce sum " << what;
      if (is_floating(dtype)) {
        comm->all_reduce_async(x, ReduceOp::Average, "x").wait();
        EXPECT_EQ(x.to(Device::cpu()).to_vector(), want) << "all_reduce average " << what;
      }
      comm->broadcast_async(x, 0, "x").wait();
      EXPECT_EQ(x.to(Device::cpu()).to_vector(), want) << "broadcast " << what;

      Tensor gathered = Tensor::full({n}, 3.0f, dtype, gpu());
      comm->all_gather_async(x, gathered, "x").wait();
      EXPECT_EQ(gathered.to(Device::cpu()).to_vector(), want) << "all_gather " << what;
      Tensor scattered = Tensor::full({n}, 3.0f, dtype, gpu());
      comm->reduce_scatter(x, scattered, ReduceOp::Sum, "x");
      EXPECT_EQ(scattered.to(Device::cpu()).to_vector(), want) << "reduce_scatter " << what;
    }
  }
  comm->barrier();
  comm->barrier_async().wait();
}

TEST(CudaNccl, AViewMovesItsOwnElementsOnly) {
  TG_REQUIRE_NCCL();
  auto comm = one_rank();
  Tensor whole = Tensor::arange(20).to(gpu());
  Tensor middle = whole.narrow(0, 5, 9);  // offset 5: the data pointer, not the storage's start
  comm->broadcast(middle, 0, "middle");
  std::vector<float> want(20);
  for (int i = 0; i < 20; i++) want[static_cast<size_t>(i)] = static_cast<float>(i);
  EXPECT_EQ(whole.to(Device::cpu()).to_vector(), want);
}

TEST(CudaNccl, BadArgumentsAreNamed) {
  TG_REQUIRE_NCCL();
  auto comm = one_rank();
  Tensor cpu = Tensor::zeros({4});
  EXPECT_ERROR_MENTIONS(comm->all_reduce(cpu, ReduceOp::Sum, "w"), "rank 0 of 1", "all_reduce", "w",
                        "NCCL engine moves CUDA tensors", "cpu");
  Tensor ints = Tensor::zeros({4}, DType::I32, gpu());
  EXPECT_ERROR_MENTIONS(comm->all_reduce(ints, ReduceOp::Average, "counts"), "counts", "i32", "floating-point");
  Tensor small = Tensor::zeros({3}, DType::F32, gpu()), big = Tensor::zeros({4}, DType::F32, gpu());
  EXPECT_ERROR_MENTIONS(comm->all_gather(small, big, "p"), "all_gather", "output has 4 elements");
  EXPECT_ERROR_MENTIONS(comm->broadcast(small, 1, "p"), "broadcast", "root 1 is not a rank");
}

#ifdef TG_CUDA

namespace {

// Holds a stream at a host function until release(): work queued after it waits, as behind a
// long collective. Released at destruction at the latest.
class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) {
    EXPECT_EQ(cudaLaunchHostFunc(stream, &StreamGate::hold, &open_), cudaSuccess);
  }
  ~StreamGate() { release(); }
  void release() { open_.store(true); }

 private:
  static void hold(void* flag) {
    while (!static_cast<std::atomic<bool>*>(flag)->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::atomic<bool> open_{false};
};

}  // namespace

TEST(CudaStreamAwareAllocator, ABlockFreedWhileAnotherStreamUsesItWaits) {
  TG_REQUIRE_GPU();
  cudaStream_t side = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
  const size_t bytes = 3 << 20;  // its own 2 MiB-rounded size, unlikely to be cached by other tests
  void* used = cuda_allocate(bytes, gpu());
  {
    StreamGate gate(side);  // the side stream is "still using" the block
    cuda_record_stream(used, gpu(), side);
    cuda_deallocate(used, gpu());
    EXPECT_EQ(cuda_memory_stats(gpu()).pending_bytes, 4u << 20);
    void* other = cuda_allocate(bytes, gpu());
    EXPECT_NE(other, used) << "a block still in use by another stream was handed out";
    cuda_deallocate(other, gpu());
    gate.release();
    ASSERT_EQ(cudaStreamSynchronize(side), cudaSuccess);
  }
  // The side stream is done: the block is free again, and the next allocation of its size may get it.
  void* again = cuda_allocate(bytes, gpu());
  EXPECT_EQ(cuda_memory_stats(gpu()).pending_bytes, 0u);
  EXPECT_ERROR_MENTIONS(cuda_record_stream(static_cast<char*>(again) + 16, gpu(), side), "cuda_record_stream",
                        "not a live block of cuda:0", "the storage's data()");
  cuda_deallocate(again, gpu());
  cudaStreamDestroy(side);
}

TEST(CudaNccl, AStuckCollectiveIsAbortedWithinTheTimeoutNamingIt) {
  TG_REQUIRE_NCCL();
  auto comm = one_rank(std::chrono::seconds(1));
  Tensor x = Tensor::ones({1000}, DType::F32, gpu());
  // The compute stream stops at the gate, so the collective, ordered after it, never starts.
  StreamGate gate(cudaStreamLegacy);
  // Whatever happens, the stream moves again after 3 s: ncclCommAbort may wait for the device, which
  // a host function (unlike a stuck NCCL kernel) does not leave on the abort flag.
  std::thread safety([&gate] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    gate.release();
  });
  auto start = std::chrono::steady_clock::now();
  Work work = comm->all_reduce_async(x, ReduceOp::Sum, "bucket 0");
  EXPECT_ERROR_MENTIONS(work.wait(), "rank 0 of 1", "all_reduce (sum) of bucket 0 (f32, shape (1000))",
                        "this rank's collective #1", "did not complete within 1 s", "--dist-timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(15));
  gate.release();
  safety.join();
  EXPECT_ERROR_MENTIONS(comm->barrier(), "aborted after", "bucket 0");
}

#endif  // TG_CUDA
