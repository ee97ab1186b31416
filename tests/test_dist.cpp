// dist/ in one process: the world-of-one engine, the launch detection and the engine choice, and
// the test that runs the multi-rank suite (test_dist_mpi.cpp) under mpirun.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <regex>

#include "autograd/engine.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_communicator.h"
#include "dist/nccl_communicator.h"
#include "dist/single_process_communicator.h"
#include "tests/dist_test_model.h"
#include "tests/mpi_test_util.h"
#include "tests/program_test_util.h"
#include "tests/scoped_env.h"

using namespace tg;
using namespace tg::dist;
using tg::test::ScopedEnv;

namespace {

const std::map<std::string, std::optional<std::string>> kNoLauncher = {
    {"OMPI_COMM_WORLD_SIZE", std::nullopt}, {"OMPI_COMM_WORLD_RANK", std::nullopt},
    {"OMPI_COMM_WORLD_LOCAL_RANK", std::nullopt}, {"WORLD_SIZE", std::nullopt},
    {"RANK", std::nullopt}, {"LOCAL_RANK", std::nullopt}};

}  // namespace

TEST(DistSingleProcess, CollectivesGiveTheOneRankResult) {
  SingleProcessCommunicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);
  Generator gen(11);
  Tensor x = Tensor::randn({7}, &gen);
  std::vector<float> before = x.to_vector();
  comm.all_reduce(x, ReduceOp::Sum);
  comm.all_reduce_async(x, ReduceOp::Average).wait();
  comm.broadcast(x, 0);
  EXPECT_EQ(x.to_vector(), before);
  Tensor gathered = Tensor::full({7}, 5.0f);
  comm.all_gather(x, gathered);
  EXPECT_EQ(gathered.to_vector(), before);
  Tensor scattered = Tensor::full({7}, 5.0f);
  comm.reduce_scatter_async(x, scattered, ReduceOp::Average).wait();
  EXPECT_EQ(scattered.to_vector(), before);
  comm.barrier();
}

TEST(DistSingleProcess, ChecksLikeTheRealEngines) {
  SingleProcessCommunicator comm;
  Tensor ints = Tensor::from_ints({1, 2}, {2});
  EXPECT_ERROR_MENTIONS(comm.all_reduce(ints, ReduceOp::Average, "counts"), "rank 0 of 1", "all_reduce", "counts", "i32",
                        "floating-point");
  Tensor x = Tensor::zeros({3});
  EXPECT_ERROR_MENTIONS(comm.broadcast(x, 1, "w"), "broadcast", "root 1 is not a rank");
  Tensor big = Tensor::zeros({4});
  EXPECT_ERROR_MENTIONS(comm.all_gather(x, big, "p"), "all_gather", "output has 4 elements", "expected world size 1");
  Tensor undefined;
  EXPECT_ERROR_MENTIONS(comm.all_reduce(undefined, ReduceOp::Sum, "g"), "all_reduce", "undefined");
}

TEST(DistSingleProcess, DivideInPlaceRoundsHalfPrecisionOnce) {
  // 3 / 2 = 1.5 is exact in every float dtype; 1 / 3 rounds once to the dtype's nearest value.
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    Tensor t = Tensor::from_vector({3.0f, 1.0f}, {2}, dtype);
    divide_cpu_in_place(t, 2);
    EXPECT_EQ(t.to_vector()[0], 1.5f) << dtype_name(dtype);
    Tensor third = Tensor::from_vector({1.0f}, {1}, dtype);
    divide_cpu_in_place(third, 3);
    EXPECT_EQ(third.to_vector()[0], Tensor::from_vector({1.0f / 3.0f}, {1}, dtype).to_vector()[0]) << dtype_name(dtype);
  }
}

TEST(DistLaunchDetection, ReadsMpirunAndTorchrunVariables) {
  {
    ScopedEnv env(kNoLauncher);
    LaunchInfo alone = detect_launch();
    EXPECT_EQ(alone.world_size, 1);
    EXPECT_EQ(alone.launcher, "");
    EXPECT_EQ(make_communicator(Device::cpu(), alone)->engine(), "single process");
  }
  {
    auto values = kNoLauncher;
    values["OMPI_COMM_WORLD_SIZE"] = "4";
    values["OMPI_COMM_WORLD_RANK"] = "3";
    values["OMPI_COMM_WORLD_LOCAL_RANK"] = "1";
    ScopedEnv env(values);
    LaunchInfo launch = detect_launch();
    EXPECT_EQ(launch.launcher, "mpirun");
    EXPECT_EQ(launch.world_size, 4);
    EXPECT_EQ(launch.rank, 3);
    EXPECT_EQ(launch.local_rank, 1);
  }
  {
    auto values = kNoLauncher;
    values["WORLD_SIZE"] = "2";
    values["RANK"] = "1";
    values["LOCAL_RANK"] = "0";
    values["MASTER_ADDR"] = "localhost";
    values["MASTER_PORT"] = "29500";
    ScopedEnv env(values);
    LaunchInfo launch = detect_launch();
    EXPECT_EQ(launch.launcher, "torchrun-style variables");
    EXPECT_EQ(launch.rank, 1);
  }
  {
    auto values = kNoLauncher;
    values["WORLD_SIZE"] = "two";
    ScopedEnv env(values);
    EXPECT_ERROR_MENTIONS(detect_launch(), "WORLD_SIZE", "\"two\"", "non-negative integer");
  }
  {
    auto values = kNoLauncher;
    values["WORLD_SIZE"] = "2";
    values["RANK"] = "2";
    ScopedEnv env(values);
    EXPECT_ERROR_MENTIONS(detect_launch(), "rank 2 of world size 2", "below the world size");
  }
}

TEST(DistLaunchDetection, EngineChoiceSaysWhatIsMissing) {
  LaunchInfo torchrun{1, 2, 1, "torchrun-style variables", "localhost", 29500};
  EXPECT_ERROR_MENTIONS(make_communicator(Device::cpu(), torchrun), "2 CPU ranks", "starts under mpirun");
  LaunchInfo mpirun{0, 2, 0, "mpirun", "", 0};
  // CUDA ranks: a build without NCCL says so; one with it, on a machine without a GPU, names the
  // device it cannot use (with a GPU it would start bootstrapping over MPI, which this process
  // was not launched for).
  if (!built_with_nccl())
    EXPECT_ERROR_MENTIONS(make_communicator(Device::cuda(0), mpirun), "CUDA", "this build has no NCCL");
  else if (!cuda_available())
    EXPECT_ERROR_MENTIONS(make_communicator(Device::cuda(0), mpirun), "cuda:0");
  if (!built_with_mpi())
    EXPECT_ERROR_MENTIONS(make_communicator(Device::cpu(), mpirun), "this build has no MPI");
}

TEST(DistLaunch, TwoRanksUnderMpirun) {
  std::string why = tg::test::why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  char exe[4096];
  ssize_t length = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  ASSERT_GT(length, 0);
  exe[length] = '\0';
  TempDir logs;
  std::string command = tg::test::mpirun_prefix(2) + exe + " --gtest_filter='DistRanks*' >" + logs.file("out") + " 2>&1";
  int raw = std::system(command.c_str());
  std::string out = tg::test::read_file(logs.file("out"));
  ASSERT_TRUE(WIFEXITED(raw) && WEXITSTATUS(raw) == 0) << "mpirun exited with " << raw << ":\n" << out;
  // Each rank ends with its own summary line; both ran every DistRanks test and skipped none.
  // The count is this binary's: the DistRanks suite as gtest registered it.
  int dist_ranks_tests = 0;
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  for (int i = 0; i < unit.total_test_suite_count(); i++)
    if (std::string(unit.GetTestSuite(i)->name()) == "DistRanks") dist_ranks_tests = unit.GetTestSuite(i)->total_test_count();
  ASSERT_GT(dist_ranks_tests, 0);
  std::regex summary(R"((\d+) passed, 0 failed\n)");
  auto begin = std::sregex_iterator(out.begin(), out.end(), summary);
  int ranks = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    EXPECT_EQ((*it)[1].str(), std::to_string(dist_ranks_tests)) << out;
    ranks++;
  }
  EXPECT_EQ(ranks, 2) << out;
}

// ---- DataParallel on one rank ----------------------------------------------------------------

TEST(DistDataParallel, BucketsInReverseOrderSmallFirstOneDtypeEach) {
  // 4 layers of 16x16 weights (1024 B) and 16 biases (64 B), in reverse order: layer3.bias,
  // layer3.weight, layer2.bias, ... With a 1100-byte first bucket and 2200-byte buckets after it:
  // {layer3.bias, layer3.weight} (1088 B), then two layers per bucket while they fit.
  tg::test::TanhStack model(4, 16, 1);
  SingleProcessCommunicator comm;
  DataParallel ddp(model, comm, DataParallelOptions{2200e-6, 1100e-6});
  const auto& buckets = ddp.buckets();
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].names, (std::vector<std::string>{"layer3.bias", "layer3.weight"}));
  EXPECT_EQ(buckets[1].names, (std::vector<std::string>{"layer2.bias", "layer2.weight", "layer1.bias", "layer1.weight"}));
  EXPECT_EQ(buckets[2].names, (std::vector<std::string>{"layer0.bias", "layer0.weight"}));
  EXPECT_EQ(buckets[1].bytes(), 2176u);
  // Every .grad is a view into its bucket: backward writes what is sent.
  EXPECT_EQ(model.layers[2]->weight.grad().storage(), buckets[1].buffer.storage());
  EXPECT_EQ(model.layers[2]->weight.grad().offset(), 16);
}

TEST(DistDataParallel, OneRankGradientsEqualPlainBackwardAndBucketsIssueInOrder) {
  tg::test::TanhStack plain(4, 16, 2), wrapped(4, 16, 2);
  Tensor x = tg::test::rank_batch(0, 0, 16);
  backward(plain.loss(x));
  SingleProcessCommunicator comm;
  DataParallel ddp(wrapped, comm, DataParallelOptions{1100e-6, 1100e-6});  // one layer (1088 B) per bucket
  backward(wrapped.loss(x));
  ddp.finish_gradient_sync();
  auto want = plain.named_parameters(), got = wrapped.named_parameters();
  for (size_t i = 0; i < want.size(); i++)
    EXPECT_EQ(got[i].second.grad().to_vector(), want[i].second.grad().to_vector()) << got[i].first;
  const auto& trace = ddp.last_sync();
  ASSERT_EQ(trace.issue_seconds.size(), 4u);
  for (size_t b = 0; b < 4; b++) {
    EXPECT_TRUE(trace.issued_by_hook[b]) << "bucket " << b << " waited for finish_gradient_sync";
    if (b > 0) {
      EXPECT_GE(trace.issue_seconds[b], trace.issue_seconds[b - 1]) << "bucket " << b;
    }
  }
  EXPECT_LE(trace.issue_seconds[3], trace.finish_called_seconds);
}

TEST(DistDataParallel, NoSyncAccumulatesAndASecondSyncedBackwardIsRefused) {
  tg::test::TanhStack model(2, 8, 3);
  SingleProcessCommunicator comm;
  DataParallel ddp(model, comm);
  {
    auto scope = ddp.no_sync();
    backward(model.loss(tg::test::rank_batch(0, 0, 8)));
  }
  backward(model.loss(tg::test::rank_batch(0, 1, 8)));
  ddp.finish_gradient_sync();
  EXPECT_TRUE(ddp.last_sync().issued_by_hook[0]);  // the synced pass issued from its hooks
  // Without finish_gradient_sync in between, the second pass would add into buffers in flight.
  backward(model.loss(tg::test::rank_batch(0, 2, 8)));
  EXPECT_ERROR_MENTIONS(backward(model.loss(tg::test::rank_batch(0, 3, 8))), "DataParallel", "computed twice",
                        "finish_gradient_sync()", "no_sync()");
}
