// ops::Profiler: what the fronts report (FLOPs from the shapes, bytes, phases, the autograd node of
// a backward kernel), that nested fronts record once, that nothing is described without a
// profiler, and the report built from the records (programs/lib/profile_report.h).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <set>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/concat.h"
#include "autograd/functions/matmul.h"
#include "autograd/functions/reduce.h"
#include "ops/activation.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/gemm.h"
#include "ops/optim.h"
#include "ops/profiler.h"
#include "programs/lib/profile_report.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

double numel_of(const Shape& shape) {
  double n = 1;
  for (int64_t d : shape) n *= static_cast<double>(d);
  return n;
}

// For a non-batched product op(a) (M,K) x op(b) (K,N) -> out (M,N), |a| |b| |out| = (MNK)^2
// whichever operand is transposed, so the FLOPs follow from the recorded shapes alone:
// 2*M*N*K = 2 * sqrt(|a| |b| |out|). Linear's operands are x, weight and out.
double product_flops_from_shapes(const ops::OpRecord& r) {
  double product = 1;
  for (const auto& [name, shape] : r.operands)
    if (name == "a" || name == "b" || name == "x" || name == "weight" || name == "out") product *= numel_of(shape);
  return 2.0 * std::sqrt(product);
}

}  // namespace

TEST(Profiler, WithoutAProfilerNothingIsDescribedOrRecorded) {
  bool described = false;
  { ops::ProfiledOp op("anything", [&](ops::OpCost&) { described = true; }); }
  EXPECT_FALSE(described);
  EXPECT_EQ(ops::active_profiler(), nullptr);
  ops::Profiler profiler;
  EXPECT_EQ(ops::active_profiler(), &profiler);
  { ops::ProfiledOp op("anything", [&](ops::OpCost&) { described = true; }); }
  EXPECT_TRUE(described);
  EXPECT_EQ(profiler.records().size(), 1u);
}

TEST(Profiler, EveryProductRowCarriesTwoMNKFromItsShapes) {
  Generator gen(1201);
  // Odd sizes and a bias, through the forward and backward of matmul and linear (the backward's
  // products read their operands transposed).
  Tensor a = Tensor::randn({7, 5}, &gen).requires_grad_();
  Tensor b = Tensor::randn({5, 9}, &gen).requires_grad_();
  Tensor w = Tensor::randn({3, 9}, &gen).requires_grad_();
  Tensor bias = Tensor::randn({3}, &gen).requires_grad_();
  ops::Profiler profiler;
  Tensor y = linear(matmul(a, b), w, bias);  // (7,9) then (7,3)
  backward(sum(y));
  int products = 0;
  std::string seen;
  for (const ops::OpRecord& r : profiler.records()) {
    seen += r.op + "(" + r.node + ") ";
    if (r.op != "matmul" && r.op != "linear") continue;
    products++;
    EXPECT_DOUBLE_EQ(r.flops, product_flops_from_shapes(r)) << r.op << " " << ops::operands_str(r.operands);
  }
  // Forward: one matmul and one linear; backward: two products for each (input and weight gradients).
  EXPECT_EQ(products, 6) << seen;
  // The forward matmul's bytes are its compulsory traffic: a, b read and out written, f32.
  const ops::OpRecord& first = profiler.records().front();
  ASSERT_EQ(first.op, "matmul");
  EXPECT_DOUBLE_EQ(first.bytes, 4.0 * (7 * 5 + 9 * 5 + 7 * 9));
  EXPECT_EQ(ops::operands_str(first.operands), "a[7x5] b[5x9] out[7x9]");
}

TEST(Profiler, BackwardKernelsAreFiledUnderTheirNodeAndPhase) {
  Generator gen(1202);
  Tensor x = Tensor::randn({4, 6}, &gen).requires_grad_();
  ops::Profiler profiler;
  backward(sum(gelu(x)));
  bool forward_seen = false, backward_seen = false;
  for (const ops::OpRecord& r : profiler.records()) {
    if (r.op == "gelu") {
      forward_seen = true;
      EXPECT_EQ(r.phase, ops::Phase::Forward);
      EXPECT_EQ(r.node, "");
    }
    if (r.op == "gelu_backward") {
      backward_seen = true;
      EXPECT_EQ(r.phase, ops::Phase::Backward);
      EXPECT_EQ(r.node, "gelu");
      // dout and inp read, dinp read and written (accumulated): four passes over 24 floats.
      EXPECT_DOUBLE_EQ(r.bytes, 4.0 * 24 * 4);
    }
  }
  EXPECT_TRUE(forward_seen);
  EXPECT_TRUE(backward_seen);
  EXPECT_EQ(profiler.phase(), ops::Phase::Forward);  // the node scope restored it
}

TEST(Profiler, NestedFrontsRecordOnceAtTheOutermost) {
  // concat_backward adds each slice into its input's gradient through the accumulate front.
  Generator gen(1203);
  Tensor a = Tensor::randn({2, 3}, &gen).requires_grad_(), b = Tensor::randn({2, 5}, &gen).requires_grad_();
  Tensor y = cat({a, b}, 1);
  ops::Profiler profiler;
  backward(sum(y));
  std::multiset<std::string> ops_seen;
  for (const ops::OpRecord& r : profiler.records()) ops_seen.insert(r.op);
  EXPECT_EQ(ops_seen.count("concat_backward"), 1u);
  EXPECT_EQ(ops_seen.count("accumulate"), 0u);
}

TEST(Profiler, PhaseScopeMarksTheOptimizerAndRestores) {
  Generator gen(1204);
  Tensor p = Tensor::randn({10}, &gen), g = Tensor::randn({10}, &gen), m = Tensor::zeros({10});
  ops::Profiler profiler;
  {
    ops::PhaseScope phase(ops::Phase::Optimizer);
    ops::sgd_update(p, g, m, 0.1f, 0.9f, 0.0f, 0.0f, false, true);
  }
  ops::sgd_update(p, g, m, 0.1f, 0.9f, 0.0f, 0.0f, false, false);
  ASSERT_EQ(profiler.records().size(), 2u);
  EXPECT_EQ(profiler.records()[0].phase, ops::Phase::Optimizer);
  EXPECT_EQ(profiler.records()[1].phase, ops::Phase::Forward);
  EXPECT_STREQ(ops::phase_name(ops::Phase::Optimizer), "optimizer");
}

TEST(Profiler, ProfilersNestAndTheInnermostRecords) {
  Generator gen(1205);
  Tensor x = Tensor::randn({3, 3}, &gen), out = Tensor::empty({3, 3});
  ops::Profiler outer;
  {
    ops::Profiler inner;
    ops::gelu_forward(out, x);
    EXPECT_EQ(inner.records().size(), 1u);
  }
  EXPECT_EQ(outer.records().size(), 0u);
  ops::gelu_forward(out, x);
  EXPECT_EQ(outer.records().size(), 1u);
}

// ---- the report -----------------------------------------------------------------------------

namespace {

ops::OpRecord record(const char* op, ops::Phase phase, double seconds, double flops, double bytes) {
  ops::OpRecord r;
  r.op = op;
  r.phase = phase;
  r.seconds = seconds;
  r.flops = flops;
  r.bytes = bytes;
  r.operands = {{"x", Shape{2, 3}}};
  return r;
}

}  // namespace

TEST(ProfileReport, RowsArePerStepBoundedByTheRoofAndSortedByTimeLost) {
  Roofline roof;
  roof.peak_flops = 100e9;  // ridge at 10 FLOP/byte
  roof.bandwidth = 10e9;
  // Two steps of: a compute-bound op (1 GFLOP, 1 MB: bound 10 ms) taking 20 ms, and a
  // memory-bound one (1 MFLOP, 100 MB: bound 10 ms) taking 40 ms.
  std::vector<ops::OpRecord> records;
  for (int step = 0; step < 2; step++) {
    records.push_back(record("gemm", ops::Phase::Forward, 0.020, 1e9, 1e6));
    records.push_back(record("copy", ops::Phase::Backward, 0.040, 1e6, 100e6));
  }
  std::vector<ProfileRow> rows = profile_rows(records, 2, roof);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].op, "copy");  // 30 ms lost before 10 ms
  EXPECT_DOUBLE_EQ(rows[0].calls, 1.0);
  EXPECT_DOUBLE_EQ(rows[0].seconds, 0.040);
  EXPECT_NEAR(rows[0].bound_seconds(roof), 0.010, 1e-12);
  EXPECT_FALSE(rows[0].compute_bound(roof));
  EXPECT_NEAR(rows[0].seconds_lost(roof), 0.030, 1e-12);
  EXPECT_TRUE(rows[1].compute_bound(roof));
  EXPECT_NEAR(rows[1].bound_seconds(roof), 0.010, 1e-12);

  ProfileSummary summary;
  summary.steps = 2;
  summary.step_seconds = 0.064;
  summary.model_flops_per_step = 0.5e9;
  summary.roof = roof;
  summary.rows = rows;
  EXPECT_NEAR(summary.op_seconds(), 0.060, 1e-12);
  EXPECT_NEAR(summary.bound_seconds(), 0.020, 1e-12);
  std::string text = format_profile(summary);
  EXPECT_NE(text.find("the ops add up to 60.000 ms (93.8%)"), std::string::npos) << text;
  // MFU: 0.5 GFLOP in 64 ms against 100 GFLOP/s is 7.8%; HFU counts the ops' 1.001 GFLOP: 15.6%.
  EXPECT_NE(text.find("MFU 7.8% (model FLOPs), HFU 15.6%"), std::string::npos) << text;
  EXPECT_EQ(text.find("measured low"), std::string::npos);

  summary.model_flops_per_step = 10e9;  // more than the peak allows in 64 ms: flagged, not hidden
  EXPECT_NE(format_profile(summary).find("above 100%: the peak was measured low"), std::string::npos);
}

// A bf16 run on AVX512_BF16: the GEMM rows (bf16_dot) are judged against the vdpbf16ps peak, the
// rest against the FMA peak, and MFU against the bf16 peak, which the footer names.
TEST(ProfileReport, Bf16GemmRowsAreJudgedAgainstTheBf16Peak) {
  Roofline roof;
  roof.peak_flops = 100e9;
  roof.bandwidth = 10e9;
  roof.bf16_peak_flops = 200e9;
  roof.bf16_peak_source = "measured: vdpbf16ps";
  ops::OpRecord gemm = record("linear", ops::Phase::Forward, 0.020, 2e9, 1e6);
  gemm.bf16_dot = true;
  ops::OpRecord attention = record("attention", ops::Phase::Forward, 0.020, 1e9, 1e6);
  std::vector<ProfileRow> rows = profile_rows({gemm, attention}, 1, roof);
  ASSERT_EQ(rows.size(), 2u);
  for (const ProfileRow& r : rows) {
    EXPECT_TRUE(r.compute_bound(roof)) << r.op;
    EXPECT_NEAR(r.bound_seconds(roof), 0.010, 1e-12) << r.op << ": 2 GFLOP at 200, 1 GFLOP at 100 GFLOP/s";
  }
  // 2 GFLOP and 2 MB: 1000 FLOP/byte is past the FMA ridge (10) and the bf16 one (20) alike; at 15
  // FLOP/byte a bf16 GEMM is memory-bound where an f32 one would not be.
  ops::OpRecord narrow = record("matmul", ops::Phase::Forward, 0.001, 15e6, 1e6);
  narrow.bf16_dot = true;
  EXPECT_FALSE(profile_rows({narrow}, 1, roof)[0].compute_bound(roof));
  narrow.bf16_dot = false;
  EXPECT_TRUE(profile_rows({narrow}, 1, roof)[0].compute_bound(roof));

  ProfileSummary summary;
  summary.steps = 1;
  summary.step_seconds = 0.050;
  summary.model_flops_per_step = 3e9;
  summary.roof = roof;
  summary.rows = rows;
  const std::string text = format_profile(summary);
  // 3 GFLOP in 50 ms is 60 GFLOP/s: 30% of the bf16 peak (60% of the FMA one).
  EXPECT_NE(text.find("MFU 30.0% (model FLOPs), HFU 30.0% (every FLOP the ops ran, recomputation included), of the bf16 peak"),
            std::string::npos) << text;
  EXPECT_NE(text.find("bf16 GEMMs: peak 200.0 GFLOP/s (measured: vdpbf16ps), ridge 20.0 FLOP/byte"), std::string::npos)
      << text;
}

// The GEMM fronts mark their FLOPs as the bf16 unit's exactly where a bf16 GEMM runs on it.
TEST(Profiler, Bf16GemmsAreMarkedWhereTheyRunOnVdpbf16ps) {
  Generator gen(1203);
  for (DType dtype : {DType::F32, DType::BF16}) {
    Tensor a = Tensor::randn({16, 32}, &gen).to(dtype), b = Tensor::randn({32, 8}, &gen).to(dtype);
    Tensor out = Tensor::empty({16, 8}, dtype);
    ops::Profiler profiler;
    ops::matmul(out, a, b);
    ASSERT_EQ(profiler.records().size(), 1u);
    EXPECT_EQ(profiler.records()[0].bf16_dot, dtype == DType::BF16 && cpu::cpu_has_avx512_bf16()) << dtype_name(dtype);
  }
}

TEST(ProfileReport, CsvHasTheNamedColumns) {
  Roofline roof;
  roof.peak_flops = 1e9;
  roof.bandwidth = 1e9;
  ProfileSummary summary;
  summary.steps = 1;
  summary.step_seconds = 0.01;
  summary.roof = roof;
  summary.rows = profile_rows({record("gemm", ops::Phase::Forward, 0.005, 2e6, 1e6)}, 1, roof);
  TempDir dir;
  write_profile_csv(dir.file("profile.csv"), summary);
  std::ifstream csv(dir.file("profile.csv"));
  std::string header, line;
  std::getline(csv, header);
  std::getline(csv, line);
  EXPECT_EQ(header,
            "op,node,phase,shapes,calls,ms,percent_of_step,flops,bytes,intensity,gflops_per_s,gb_per_s,bound_ms,"
            "percent_of_bound,bound_by,lost_ms");
  EXPECT_EQ(line.rfind("gemm,,forward,x[2x3],1,5.000000,50.000,2e+06,1e+06,2,", 0), 0u) << line;
  EXPECT_NE(line.find(",2.000000,40.000,compute,3.000000"), std::string::npos) << line;
  EXPECT_THROW_WITH(write_profile_csv(dir.file("no/such/folder/profile.csv"), summary), "cannot write");
}
