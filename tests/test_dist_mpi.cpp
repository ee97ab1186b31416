// The MPI engine's collectives on several ranks, against a reduction computed locally in double.
// These tests need ranks: `make test` runs them through DistLaunch.TwoRanksUnderMpirun
// (test_dist.cpp), which starts this binary as
//   mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 tilegrad_tests --gtest_filter='DistRanks*'
// and alone they skip. Every rank runs the same tests in the same order, so their collectives
// match; each rank draws every rank's input from the same seeds and so knows the expected result.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include "autograd/engine.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_communicator.h"
#include "dist/sync_batchnorm.h"
#include "dist/zero_adamw.h"
#include "autograd/functions/batchnorm.h"
#include "nn/batchnorm.h"
#include "nn/relu.h"
#include "nn/sequential.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "tests/dist_test_model.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::dist;

namespace {

// One MPI communicator for the whole binary (MPI starts once per process), or null when this
// process is not one of several mpirun ranks.
Communicator* world() {
  static std::unique_ptr<Communicator> comm = [] {
    std::unique_ptr<Communicator> made;
    LaunchInfo launch = detect_launch();
    if (launch.world_size > 1 && launch.launcher == "mpirun" && built_with_mpi()) {
      made = make_communicator(Device::cpu(), launch);
      // A test that fails on one rank and skips a collective must not hang the other: end the job.
      made->set_timeout(std::chrono::seconds(60));
    }
    return made;
  }();
  return comm.get();
}

#define REQUIRE_RANKS()                                                                              \
  Communicator* comm = world();                                                                      \
  if (!comm) GTEST_SKIP() << "needs several MPI ranks; DistLaunch.TwoRanksUnderMpirun runs it under mpirun"

const DType kDTypes[] = {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8};

// Unit roundoff of a floating-point dtype: one rounding moves a value by at most u * |value|.
double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::F32: return std::ldexp(1.0, -24);
    case DType::BF16: return std::ldexp(1.0, -8);
    case DType::F16: return std::ldexp(1.0, -11);
    default: return 0.0;  // integer sums are exact (values stay far from overflow)
  }
}

// Rank `rank`'s input for test `seed`: n values exactly representable in `dtype` (normal draws
// rounded to it; small integers for i32 and u8, so that a u8 sum over the ranks stays below 256).
std::vector<double> rank_input(uint64_t seed, int rank, int64_t n, DType dtype) {
  Generator gen(seed * 1000 + static_cast<uint64_t>(rank));
  std::vector<float> values(n);
  for (float& v : values) {
    if (dtype == DType::I32) v = static_cast<float>(static_cast<int64_t>(gen.below(2000001)) - 1000000);
    else if (dtype == DType::U8) v = static_cast<float>(gen.below(100));
    else v = gen.normal();
  }
  std::vector<float> rounded = Tensor::from_vector(values, {n}, dtype).to_vector();
  return std::vector<double>(rounded.begin(), rounded.end());
}

Tensor as_tensor(const std::vector<double>& values, DType dtype) {
  return Tensor::from_vector(std::vector<float>(values.begin(), values.end()), {static_cast<int64_t>(values.size())}, dtype);
}

// The element-wise sum (or average) over the ranks' inputs in double, and the bound on how far a
// reduction in `dtype` may land from it: the N - 1 additions each round once (at most u times the
// partial sum, itself at most sum |x|), the average's division once more, and the final value is
// stored in the dtype (a half-precision sum is rounded after every addition, which the first term
// already counts).
struct Expected {
  std::vector<double> value;
  std::vector<double> tolerance;
};
Expected reduce_locally(uint64_t seed, int world, int64_t n, DType dtype, ReduceOp op) {
  Expected e{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  std::vector<double> magnitude(n, 0.0);
  for (int r = 0; r < world; r++) {
    std::vector<double> x = rank_input(seed, r, n, dtype);
    for (int64_t i = 0; i < n; i++) {
      e.value[i] += x[i];
      magnitude[i] += std::fabs(x[i]);
    }
  }
  double u = unit_roundoff(dtype);
  for (int64_t i = 0; i < n; i++) {
    if (op == ReduceOp::Average) {
      e.value[i] /= world;
      magnitude[i] /= world;
    }
    e.tolerance[i] = ((world - 1) + (op == ReduceOp::Average ? 1 : 0)) * u * magnitude[i];
  }
  return e;
}

void expect_within(const Tensor& got, const Expected& want, const std::string& what) {
  std::vector<float> values = got.to_vector();
  ASSERT_EQ(values.size(), want.value.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < values.size(); i++)
    if (!(std::fabs(values[i] - want.value[i]) <= want.tolerance[i]) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << values[i] << ", want " << want.value[i] << " +- " << want.tolerance[i];
}

const int64_t kSizes[] = {1, 7, 1001};

}  // namespace

TEST(DistRanks, AllReduceSumAndAverageEveryDtypeOddSizes) {
  REQUIRE_RANKS();
  uint64_t seed = 1;
  for (DType dtype : kDTypes)
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Average}) {
      if (op == ReduceOp::Average && !is_floating(dtype)) continue;
      for (int64_t n : kSizes) {
        seed++;
        Tensor t = as_tensor(rank_input(seed, comm->rank(), n, dtype), dtype);
        comm->all_reduce(t, op, "x");
        expect_within(t, reduce_locally(seed, comm->world_size(), n, dtype, op),
                      std::string("all_reduce ") + reduce_op_name(op) + " " + dtype_name(dtype) + " n=" + std::to_string(n));
      }
    }
}

TEST(DistRanks, AsyncAllReducesInFlightTogether) {
  REQUIRE_RANKS();
  // Several collectives issued before any is waited on, waited in reverse: each completes with
  // its own result (the engine keeps issue order, so the ranks' collectives match).
  std::vector<Tensor> tensors;
  std::vector<Work> works;
  for (int k = 0; k < 6; k++) {
    DType dtype = kDTypes[k % 3];
    tensors.push_back(as_tensor(rank_input(100 + k, comm->rank(), 257 + k, dtype), dtype));
    works.push_back(comm->all_reduce_async(tensors.back(), k % 2 ? ReduceOp::Average : ReduceOp::Sum, "t" + std::to_string(k)));
  }
  for (int k = 5; k >= 0; k--) works[k].wait();
  for (int k = 0; k < 6; k++) {
    EXPECT_TRUE(works[k].completed());
    expect_within(tensors[k],
                  reduce_locally(100 + k, comm->world_size(), 257 + k, kDTypes[k % 3], k % 2 ? ReduceOp::Average : ReduceOp::Sum),
                  "async all_reduce " + std::to_string(k));
  }
}

TEST(DistRanks, BroadcastFromEveryRootEveryDtype) {
  REQUIRE_RANKS();
  uint64_t seed = 200;
  for (DType dtype : kDTypes)
    for (int root = 0; root < comm->world_size(); root++)
      for (bool async : {false, true}) {
        seed++;
        Tensor t = as_tensor(rank_input(seed, comm->rank(), 13, dtype), dtype);
        if (async) {
          Work work = comm->broadcast_async(t, root, "x");
          work.wait();
        } else {
          comm->broadcast(t, root, "x");
        }
        std::vector<double> want = rank_input(seed, root, 13, dtype);
        expect_within(t, Expected{want, std::vector<double>(13, 0.0)},
                      std::string("broadcast from ") + std::to_string(root) + " " + dtype_name(dtype));
      }
}

TEST(DistRanks, ReduceScatterEveryDtype) {
  REQUIRE_RANKS();
  const int world = comm->world_size();
  uint64_t seed = 300;
  for (DType dtype : kDTypes)
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Average})
      for (bool async : {false, true}) {
        if (op == ReduceOp::Average && !is_floating(dtype)) continue;
        seed++;
        const int64_t chunk = 11;
        Tensor input = as_tensor(rank_input(seed, comm->rank(), chunk * world, dtype), dtype);
        Tensor output = Tensor::full({chunk}, 77.0f, dtype);  // poisoned
        if (async) comm->reduce_scatter_async(input, output, op, "x").wait();
        else comm->reduce_scatter(input, output, op, "x");
        Expected all = reduce_locally(seed, world, chunk * world, dtype, op);
        Expected mine{std::vector<double>(all.value.begin() + comm->rank() * chunk, all.value.begin() + (comm->rank() + 1) * chunk),
                      std::vector<double>(all.tolerance.begin() + comm->rank() * chunk,
                                          all.tolerance.begin() + (comm->rank() + 1) * chunk)};
        expect_within(output, mine, std::string("reduce_scatter ") + reduce_op_name(op) + " " + dtype_name(dtype));
      }
}

TEST(DistRanks, AllGatherEveryDtype) {
  REQUIRE_RANKS();
  const int world = comm->world_size();
  uint64_t seed = 400;
  for (DType dtype : kDTypes)
    for (bool async : {false, true}) {
      seed++;
      const int64_t n = 9;
      Tensor input = as_tensor(rank_input(seed, comm->rank(), n, dtype), dtype);
      Tensor output = Tensor::full({world * n}, 77.0f, dtype);
      if (async) comm->all_gather_async(input, output, "x").wait();
      else comm->all_gather(input, output, "x");
      std::vector<double> want;
      for (int r = 0; r < world; r++) {
        std::vector<double> x = rank_input(seed, r, n, dtype);
        want.insert(want.end(), x.begin(), x.end());
      }
      expect_within(output, Expected{want, std::vector<double>(want.size(), 0.0)}, std::string("all_gather ") + dtype_name(dtype));
    }
}

TEST(DistRanks, BarrierOrdersSharedFileWrites) {
  REQUIRE_RANKS();
  // Rank 0 writes a file before the barrier; every rank reads it after. Without a working barrier
  // the others would race ahead and find it missing. The name carries rank 0's pid, broadcast.
  Tensor pid = Tensor::from_ints({static_cast<int32_t>(getpid())}, {1});
  comm->broadcast(pid, 0, "rank 0's pid");
  std::string path = "/tmp/tg_dist_barrier_" + std::to_string(pid.to_int_vector()[0]);
  if (comm->rank() == 0) std::ofstream(path) << "written before the barrier";
  comm->barrier();
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "rank " << comm->rank() << " passed the barrier before rank 0 wrote " << path;
  comm->barrier_async().wait();
  if (comm->rank() == 0) std::remove(path.c_str());
}

TEST(DistRanks, BadArgumentsNameTheRankTheOpAndTheTensor) {
  REQUIRE_RANKS();
  // Checked before anything is issued, so a rejected call leaves the ranks' collectives matched.
  std::string rank = "rank " + std::to_string(comm->rank()) + " of " + std::to_string(comm->world_size());
  Tensor ints = Tensor::from_ints({1, 2, 3}, {3});
  EXPECT_ERROR_MENTIONS(comm->all_reduce(ints, ReduceOp::Average, "counts"), rank, "all_reduce", "counts", "i32",
                        "average needs a floating-point dtype");
  Tensor matrix = Tensor::zeros({4, 6});
  Tensor strided = matrix.transpose(0, 1);
  EXPECT_ERROR_MENTIONS(comm->all_reduce(strided, ReduceOp::Sum, "w.T"), rank, "all_reduce", "w.T", "contiguous");
  EXPECT_ERROR_MENTIONS(comm->broadcast(matrix, comm->world_size(), "w"), rank, "broadcast", "root", "is not a rank");
  Tensor out = Tensor::zeros({5});
  EXPECT_ERROR_MENTIONS(comm->reduce_scatter(matrix, out, ReduceOp::Sum, "grads"), rank, "reduce_scatter", "grads",
                        "24 elements", "expected world size");
  Tensor half_out = Tensor::zeros({static_cast<int64_t>(6 * comm->world_size())}, DType::BF16);
  Tensor row = Tensor::zeros({6});
  EXPECT_ERROR_MENTIONS(comm->all_gather(row, half_out, "p"), rank, "all_gather", "f32", "bf16", "one dtype");
}

// ---- DataParallel on several ranks -----------------------------------------------------------

namespace {

// Every parameter's gradient, in named_parameters order, after backward on rank `rank`'s
// micro-batches 0..micros-1 (accumulated), computed here without DataParallel from the model
// rank 0 starts with. The kernels and the thread count are the ranks', so these are bit for bit
// the gradients each rank holds before the average.
std::vector<std::vector<float>> local_gradients(int rank, int micros) {
  tg::test::TanhStack model(4, 16, 10);
  for (int m = 0; m < micros; m++) backward(model.loss(tg::test::rank_batch(rank, m, 16)));
  std::vector<std::vector<float>> grads;
  for (const Tensor& p : model.parameters()) grads.push_back(p.grad().to_vector());
  return grads;
}

// The average over the ranks, with its bound: the ranks' gradients before the average are exactly
// local_gradients' (their local accumulation included), so only the all-reduce's world - 1
// additions and the division round, each by at most u times the magnitude sum over the ranks
// (divided by the world size, as the value is).
std::vector<Expected> averaged_gradients(int world, int micros) {
  std::vector<Expected> out;
  std::vector<std::vector<std::vector<float>>> per_rank;
  for (int r = 0; r < world; r++) per_rank.push_back(local_gradients(r, micros));
  const double u = unit_roundoff(DType::F32);
  for (size_t k = 0; k < per_rank[0].size(); k++) {
    size_t n = per_rank[0][k].size();
    Expected e{std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
    for (size_t i = 0; i < n; i++) {
      double sum = 0, magnitude = 0;
      for (int r = 0; r < world; r++) {
        sum += per_rank[r][k][i];
        magnitude += std::fabs(per_rank[r][k][i]);
      }
      e.value[i] = sum / world;
      e.tolerance[i] = world * u * magnitude / world;
    }
    out.push_back(e);
  }
  return out;
}

}  // namespace

TEST(DistRanks, DataParallelStartsFromRankZeroAndAveragesBucketsDuringBackward) {
  REQUIRE_RANKS();
  // Each rank initialises its own way; DataParallel makes every rank rank 0's model (seed 10).
  tg::test::TanhStack model(4, 16, 10 + static_cast<uint64_t>(comm->rank()));
  DataParallel ddp(model, *comm, DataParallelOptions{1100e-6, 1100e-6});  // a bucket per layer
  tg::test::TanhStack rank0(4, 16, 10);
  auto got_state = model.state_dict(), want_state = rank0.state_dict();
  for (size_t k = 0; k < want_state.size(); k++)
    EXPECT_EQ(got_state[k].second.to_vector(), want_state[k].second.to_vector()) << got_state[k].first;

  backward(model.loss(tg::test::rank_batch(comm->rank(), 0, 16)));
  ddp.finish_gradient_sync();
  std::vector<Expected> want = averaged_gradients(comm->world_size(), 1);
  auto params = model.named_parameters();
  for (size_t k = 0; k < params.size(); k++) expect_within(params[k].second.grad(), want[k], params[k].first);

  // The trace: buckets issued from the hooks, in index order, the first while backward was still
  // computing the layers below it (before the last bucket's gradients were ready).
  const auto& trace = ddp.last_sync();
  ASSERT_EQ(trace.issue_seconds.size(), 4u);
  for (size_t b = 0; b < 4; b++) {
    EXPECT_TRUE(trace.issued_by_hook[b]) << "bucket " << b;
    if (b > 0) {
      EXPECT_GE(trace.issue_seconds[b], trace.issue_seconds[b - 1]) << "bucket " << b;
    }
  }
  EXPECT_LT(trace.issue_seconds[0], trace.issue_seconds[3]);
  EXPECT_LE(trace.issue_seconds[3], trace.finish_called_seconds);
}

TEST(DistRanks, DataParallelNoSyncAveragesTheAccumulatedGradients) {
  REQUIRE_RANKS();
  tg::test::TanhStack model(4, 16, 10);
  DataParallel ddp(model, *comm);
  for (int micro = 0; micro < 3; micro++) {
    auto scope = micro < 2 ? ddp.no_sync() : DataParallel::NoSync();
    backward(model.loss(tg::test::rank_batch(comm->rank(), micro, 16)));
  }
  ddp.finish_gradient_sync();
  std::vector<Expected> want = averaged_gradients(comm->world_size(), 3);
  auto params = model.named_parameters();
  for (size_t k = 0; k < params.size(); k++) expect_within(params[k].second.grad(), want[k], params[k].first);
}

TEST(DistRanks, ZeroAdamWUpdatesGathersAndLoadsLikeAdamW) {
  REQUIRE_RANKS();
  // Width 7: buckets of odd sizes, padded to split evenly, the chunks cutting parameters apart.
  // Two copies of one model, given each rank's same gradients: one with its buckets all-reduced
  // and AdamW, one reduce-scattered with ZeroAdamW. On two ranks both collectives add the same two
  // values per element (one rounding each) and halve exactly, and both optimizers run AdamW's
  // kernel per element, so the weights and the gathered state agree bit for bit.
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    tg::test::TanhStack plain_model(3, 7, 10), zero_model(3, 7, 10);
    if (dtype != DType::F32) {
      plain_model.to(dtype);
      zero_model.to(dtype);
    }
    DataParallelOptions sharded{150e-6, 150e-6, true};
    DataParallel plain_ddp(plain_model, *comm, DataParallelOptions{150e-6, 150e-6}), zero_ddp(zero_model, *comm, sharded);
    AdamW plain(weight_decay_groups(plain_model.parameters(), 0.1f), 1e-2f, 0.9f, 0.95f);
    ZeroAdamW zero(weight_decay_groups(zero_model.parameters(), 0.1f), zero_ddp, 1e-2f, 0.9f, 0.95f);
    EXPECT_LT(zero.local_state_bytes(), zero.unsharded_state_bytes());
    for (int step = 0; step < 3; step++) {
      // Each rank's own gradients, written into the buckets (the CPU has no bf16 forward pass);
      // finish_gradient_sync issues the buckets no hook issued.
      Generator gen(700 + 10 * static_cast<uint64_t>(comm->rank()) + static_cast<uint64_t>(step));
      auto plain_params = plain_model.parameters(), zero_params = zero_model.parameters();
      for (size_t k = 0; k < plain_params.size(); k++) {
        Tensor g = Tensor::randn(plain_params[k].shape(), &gen).to(dtype);
        plain_params[k].grad().copy_(g);
        zero_params[k].grad().copy_(g);
      }
      plain_ddp.finish_gradient_sync();
      zero_ddp.finish_gradient_sync();
      EXPECT_EQ(zero.clip_grad_norm(1e6f), clip_grad_norm(plain_model.parameters(), 1e6f)) << "step " << step;
      plain.step();
      zero.step();
    }
    auto want = plain_model.named_parameters(), got = zero_model.named_parameters();
    for (size_t k = 0; k < want.size(); k++)
      EXPECT_EQ(got[k].second.to_vector(), want[k].second.to_vector()) << got[k].first;
    auto want_state = plain.state_tensors(), got_state = zero.state_tensors();
    ASSERT_EQ(got_state.size(), want_state.size());
    std::map<std::string, Tensor> by_name(got_state.begin(), got_state.end());
    for (auto& [name, tensor] : want_state)
      EXPECT_EQ(by_name.at(name).to_vector(), tensor.to_vector()) << name;

    // AdamW's state, loaded into a fresh ZeroAdamW, is gathered back unchanged.
    ZeroAdamW loaded(weight_decay_groups(zero_model.parameters(), 0.1f), zero_ddp, 1e-2f, 0.9f, 0.95f);
    SafetensorsData data;
    data.tensors = want_state;
    loaded.load_state_tensors(data);
    for (auto& [name, tensor] : loaded.state_tensors()) EXPECT_EQ(tensor.to_vector(), by_name.at(name).to_vector()) << name;
  }
}

TEST(DistRanks, ZeroAdamWNeedsShardedBuckets) {
  REQUIRE_RANKS();
  tg::test::TanhStack model(2, 7, 10);
  DataParallel ddp(model, *comm);
  EXPECT_THROW_WITH(ZeroAdamW(weight_decay_groups(model.parameters(), 0.1f), ddp, 1e-2f), "without shard_gradients");
}

// N(3, 2^2) draws: a mean away from 0, so that a variance taken as E[x^2] - E[x]^2 would show.
Tensor shifted_normal(const Shape& shape, Generator& gen) {
  std::vector<float> values = Tensor::randn(shape, &gen).to_vector();
  for (float& v : values) v = 3.0f + 2.0f * v;
  return Tensor::from_vector(values, shape);
}

TEST(DistRanks, SyncBatchNormOverTheRanksIsBatchNormOverAllTheirRows) {
  REQUIRE_RANKS();
  // Every rank draws the global batch and takes its rows; the reference is the single-process
  // batch_norm (its own gradcheck is in test_batchnorm.cpp) on all of them. sync_batch_norm is not
  // gradchecked on its own: a rank's output depends on the other ranks' inputs, so its backward is
  // the derivative of the sum over the ranks' losses, which a one-rank finite difference does not see.
  //
  // Tolerance: both compute the statistics in double from f32 sums over blocks of at most 32 rows
  // (relative error <= 32u of the sum of magnitudes, u = 2^-24); the single pass's shifted sums
  // lose at most a factor 1 + ((mean - shift)/std)^2 <= 1 + 5^2 to cancellation (shift = a sample,
  // within 5 std of the mean at these sizes), so the variance is within 32 * 26 u = 832u, rstd within
  // 416u, and a normalised value |z| <= 5 within about 2100u: 2 * 2100u = 4200u apart between the two,
  // relative to the largest magnitude of the quantity compared. The gradients' sums (f32 blocks too)
  // have the same order of error; the bound covers them.
  const double u = std::ldexp(1.0, -24), rtol = 4200 * u;
  const int64_t world = comm->world_size(), B = 3, C = 5;
  for (bool relu : {false, true}) {
    SCOPED_TRACE(relu ? "with relu" : "without relu");
    Generator gen(900);
    Tensor x_all = shifted_normal({world * B, 4, 4, C}, gen), r_all = Tensor::randn({world * B, 4, 4, C}, &gen);
    Tensor weight = Tensor::randn({C}, &gen), bias = Tensor::randn({C}, &gen);

    Tensor xf = x_all.clone().requires_grad_(), wf = weight.clone().requires_grad_(), bf = bias.clone().requires_grad_();
    Tensor rm_f = Tensor::zeros({C}), rv_f = Tensor::ones({C});
    Tensor y_full = batch_norm(xf, wf, bf, rm_f, rv_f, true, 0.1f, 1e-5f, relu);
    backward(tg::sum(tg::mul(y_full, r_all)));

    Tensor xr = x_all.narrow(0, comm->rank() * B, B).contiguous().requires_grad_();
    Tensor wr = weight.clone().requires_grad_(), br = bias.clone().requires_grad_();
    Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
    Tensor y = sync_batch_norm(xr, wr, br, rm, rv, 0.1f, 1e-5f, relu, *comm);
    backward(tg::sum(tg::mul(y, r_all.narrow(0, comm->rank() * B, B).contiguous())));

    auto expect_close = [&](const Tensor& got, const Tensor& want, const char* what) {
      std::vector<float> a = got.to_vector(), b = want.to_vector();
      ASSERT_EQ(a.size(), b.size()) << what;
      double scale = 0;
      for (float v : b) scale = std::max(scale, std::fabs(double(v)));
      int reported = 0;
      for (size_t i = 0; i < a.size(); i++)
        if (!(std::fabs(double(a[i]) - b[i]) <= rtol * scale) && reported++ < 5)
          ADD_FAILURE() << what << "[" << i << "]: " << a[i] << " vs " << b[i] << " (bound " << rtol * scale << ")";
    };
    const Tensor mine = y_full.narrow(0, comm->rank() * B, B).contiguous();
    expect_close(y, mine, "output rows");
    expect_close(rm, rm_f, "running_mean");
    expect_close(rv, rv_f, "running_var");
    expect_close(xr.grad(), xf.grad().narrow(0, comm->rank() * B, B).contiguous(), "x gradient rows");
    // Each rank's weight and bias gradients are its rows' share; their sum is the whole batch's.
    Tensor dw = wr.grad().clone(), db = br.grad().clone();
    comm->all_reduce(dw);
    comm->all_reduce(db);
    expect_close(dw, wf.grad(), "weight gradient summed over the ranks");
    expect_close(db, bf.grad(), "bias gradient summed over the ranks");
  }
}

TEST(DistRanks, ConvertSyncBatchNormReachesEveryBatchNormAndLeavesEvaluationAlone) {
  REQUIRE_RANKS();
  auto make = [] {
    auto net = std::make_shared<Sequential>();
    net->add(std::make_shared<BatchNorm2d>(3));
    net->add(std::make_shared<ReLU>());  // fused into the first BatchNorm's forward_relu
    net->add(std::make_shared<BatchNorm2d>(3));
    return net;
  };
  auto synced = make(), plain = make();
  EXPECT_EQ(convert_sync_batchnorm(*synced, *comm), 2);
  // Evaluation normalises with the running statistics, rank by rank: no collective (a rank issuing
  // one alone would wait until the timeout), the same output as an unconverted network.
  synced->eval();
  plain->eval();
  Generator gen(901 + static_cast<uint64_t>(comm->rank()));
  Tensor x = Tensor::randn({2, 2, 2, 3}, &gen);
  EXPECT_EQ(synced->forward(x).to_vector(), plain->forward(x).to_vector());
}
