// The row-wise and chunk-wise half paths of the CPU fronts (ops/f32_staging.h: staged_rows and
// staged_pointwise) against whole-tensor staging: the f32 kernel run on the widened tensors, each
// output rounded once. Both runs compute the same f32 values in the same order (rows are independent,
// and LayerNorm's parameter gradients are summed per the kernel's fixed row chunks either way), so
// the bound is zero: every half output must equal the rounded f32 result bit for bit, and the f32
// statistics must be equal. The shapes put block and chunk boundaries mid-way: 42 rows of C = 384
// per staged block against 300 rows in 8 groups and 64 backward chunks of 4 or 5 rows; a row wider
// than a block (one row per block); fewer rows than chunks.
#include <gtest/gtest.h>

#include <omp.h>

#include <string>
#include <vector>

#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/f32_staging.h"
#include "ops/layernorm.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

class StagedRows : public ::testing::TestWithParam<DType> {
 protected:
  DType half() const { return GetParam(); }
  Tensor draw(const Shape& shape, Generator& gen) const { return Tensor::randn(shape, &gen).to(half()); }
};

Tensor widened(const Tensor& t) { return t.to(DType::F32); }

std::vector<uint16_t> bits(const Tensor& t) {
  const uint16_t* p = static_cast<const uint16_t*>(t.contiguous().data_raw());
  return std::vector<uint16_t>(p, p + t.numel());
}

// The half tensor equals the f32 one rounded once (Tensor::to rounds to nearest even, as staging does).
void expect_rounded_once(const Tensor& half, const Tensor& f32, const std::string& what) {
  ASSERT_NE(half.dtype(), DType::F32) << what;
  EXPECT_EQ(bits(half), bits(f32.to(half.dtype()))) << what;
}

struct RowsShape {
  int64_t N, C;
};
const RowsShape kShapes[] = {{300, 384}, {3, 20000}, {3, 7}, {1, 1}};

std::string name(const RowsShape& s) { return "N=" + std::to_string(s.N) + " C=" + std::to_string(s.C); }

TEST_P(StagedRows, LayerNormForwardIsTheWholeTensorPathBitForBit) {
  Generator gen(1701);
  for (const RowsShape& s : kShapes)
    for (bool affine : {true, false}) {
      Tensor x = draw({s.N, s.C}, gen);
      Tensor w = affine ? draw({s.C}, gen) : Tensor(), b = affine ? draw({s.C}, gen) : Tensor();
      Tensor out = Tensor::empty({s.N, s.C}, half()), mean = Tensor::empty({s.N}), rstd = Tensor::empty({s.N});
      ops::layernorm_forward(out, mean, rstd, x, w, b, 1e-5f);
      Tensor out32 = Tensor::empty({s.N, s.C}), mean32 = Tensor::empty({s.N}), rstd32 = Tensor::empty({s.N});
      ops::layernorm_forward(out32, mean32, rstd32, widened(x), affine ? widened(w) : Tensor(),
                             affine ? widened(b) : Tensor(), 1e-5f);
      expect_rounded_once(out, out32, "layernorm out " + name(s));
      EXPECT_EQ(mean.to_vector(), mean32.to_vector()) << name(s);
      EXPECT_EQ(rstd.to_vector(), rstd32.to_vector()) << name(s);
    }
}

// Every combination of wanted gradients, each starting non-zero (the kernel adds into them).
TEST_P(StagedRows, LayerNormBackwardIsTheWholeTensorPathBitForBit) {
  Generator gen(1702);
  for (const RowsShape& s : kShapes)
    for (int wanted = 1; wanted < 8; wanted++) {
      Tensor x = draw({s.N, s.C}, gen), w = draw({s.C}, gen), b = draw({s.C}, gen);
      Tensor out = Tensor::empty({s.N, s.C}, half()), mean = Tensor::empty({s.N}), rstd = Tensor::empty({s.N});
      ops::layernorm_forward(out, mean, rstd, x, w, b, 1e-5f);
      Tensor dout = draw({s.N, s.C}, gen);
      Tensor dx = wanted & 1 ? draw({s.N, s.C}, gen) : Tensor();
      Tensor dw = wanted & 2 ? draw({s.C}, gen) : Tensor(), db = wanted & 4 ? draw({s.C}, gen) : Tensor();
      Tensor dx32 = dx.defined() ? widened(dx) : Tensor(), dw32 = dw.defined() ? widened(dw) : Tensor();
      Tensor db32 = db.defined() ? widened(db) : Tensor();
      ops::layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
      ops::layernorm_backward(dx32, dw32, db32, widened(dout), widened(x), widened(w), mean, rstd);
      const std::string what = name(s) + " wanted " + std::to_string(wanted);
      if (dx.defined()) expect_rounded_once(dx, dx32, "layernorm dx " + what);
      if (dw.defined()) expect_rounded_once(dw, dw32, "layernorm dweight " + what);
      if (db.defined()) expect_rounded_once(db, db32, "layernorm dbias " + what);
    }
}

// add_layernorm's half residual is the rounded f32 sum, staged a chunk at a time.
TEST_P(StagedRows, AddLayerNormResidualIsTheRoundedSum) {
  Generator gen(1703);
  const RowsShape s{300, 130};  // 39000 values: two full chunks of 16384 and a partial one
  Tensor a = draw({s.N, s.C}, gen), b = draw({s.N, s.C}, gen), w = draw({s.C}, gen), bias = draw({s.C}, gen);
  Tensor residual = Tensor::empty({s.N, s.C}, half()), out = Tensor::empty({s.N, s.C}, half());
  Tensor mean = Tensor::empty({s.N}), rstd = Tensor::empty({s.N});
  ops::add_layernorm(residual, out, mean, rstd, a, b, w, bias, 1e-5f);
  Tensor sum32 = Tensor::empty({s.N, s.C});
  ops::add_forward(sum32, widened(a), widened(b));
  expect_rounded_once(residual, sum32, "add_layernorm residual");
  Tensor out32 = Tensor::empty({s.N, s.C}), mean32 = Tensor::empty({s.N}), rstd32 = Tensor::empty({s.N});
  ops::layernorm_forward(out32, mean32, rstd32, widened(residual), widened(w), widened(bias), 1e-5f);
  expect_rounded_once(out, out32, "add_layernorm out");
  EXPECT_EQ(mean.to_vector(), mean32.to_vector());
}

// add/sub backward of same-shape operands, staged a chunk at a time: each gradient is its old value
// plus (or minus) dout in f32, rounded once; either gradient may be unwanted.
TEST_P(StagedRows, AddAndSubBackwardAccumulateChunkWise) {
  Generator gen(1704);
  const int64_t n = 2 * 16384 + 5;
  for (int wanted = 1; wanted < 4; wanted++)
    for (bool sub : {false, true}) {
      Tensor dout = draw({n}, gen);
      Tensor da = wanted & 1 ? draw({n}, gen) : Tensor(), db = wanted & 2 ? draw({n}, gen) : Tensor();
      Tensor da32 = da.defined() ? widened(da) : Tensor(), db32 = db.defined() ? widened(db) : Tensor();
      if (sub) {
        ops::sub_backward(da, db, dout);
        ops::sub_backward(da32, db32, widened(dout));
      } else {
        ops::add_backward(da, db, dout);
        ops::add_backward(da32, db32, widened(dout));
      }
      const std::string what = std::string(sub ? "sub" : "add") + " wanted " + std::to_string(wanted);
      if (da.defined()) expect_rounded_once(da, da32, "da " + what);
      if (db.defined()) expect_rounded_once(db, db32, "db " + what);
    }
}

// With at least two (batch element, head) pairs per thread, attention stages one pair per thread at
// a time as a one-head problem: the same bits as the f32 kernel on the whole widened tensors
// (tests/test_attention_half.cpp covers both paths at small shapes). B, T and the head size are odd.
TEST_P(StagedRows, AttentionPerHeadIsTheF32KernelRoundedOnce) {
  Generator gen(1705);
  const int64_t B = omp_get_max_threads() + 3, T = 67, C = 15, NH = 3;
  Tensor qkv = draw({B, T, 3 * C}, gen);
  Tensor out = Tensor::empty({B, T, C}, half()), lse = Tensor::empty({B, NH, T});
  ops::attention_forward(out, lse, qkv, NH);
  Tensor out32 = Tensor::empty({B, T, C}), lse32 = Tensor::empty({B, NH, T});
  ops::attention_forward(out32, lse32, widened(qkv), NH);
  expect_rounded_once(out, out32, "attention out");
  EXPECT_EQ(lse.to_vector(), lse32.to_vector());

  Tensor dout = draw({B, T, C}, gen), dqkv = draw({B, T, 3 * C}, gen), dqkv32 = widened(dqkv);
  ops::attention_backward(dqkv, dout, qkv, out, lse, NH);
  ops::attention_backward(dqkv32, widened(dout), widened(qkv), widened(out), lse, NH);
  expect_rounded_once(dqkv, dqkv32, "attention dqkv");
}

// An embedding gather into half rows, staged a few rows at a time: the rows of the table as stored.
TEST_P(StagedRows, EmbeddingForwardGathersTheStoredRows) {
  Generator gen(1706);
  const int64_t V = 11, C = 300, N = 130;  // 54 rows per staged block: two whole blocks and a partial one
  Tensor weight = draw({V, C}, gen);
  std::vector<float> ids(N);
  for (int64_t n = 0; n < N; n++) ids[n] = static_cast<float>((n * 7 + 3) % V);
  Tensor id = Tensor::from_vector(ids, {N}).to(DType::I32);
  Tensor out = Tensor::empty({N, C}, half()), out32 = Tensor::empty({N, C});
  ops::embedding_forward(out, id, weight);
  ops::embedding_forward(out32, id, widened(weight));
  expect_rounded_once(out, out32, "embedding out");
}

// A binary op of a half tensor and a table repeated along its leading dimensions (the position
// embeddings' add), either operand order: rows of the table's size staged a few at a time.
TEST_P(StagedRows, BinaryOpsWithARepeatedTable) {
  Generator gen(1707);
  const int64_t B = 5, T = 9, C = 1000;  // rows of 9000 values: one row per staged block
  Tensor full = draw({B, T, C}, gen), table = draw({T, C}, gen), lead1 = draw({1, T, C}, gen);
  using Binary = void (*)(Tensor&, const Tensor&, const Tensor&);
  const std::pair<const char*, Binary> binaries[] = {
      {"add", ops::add_forward}, {"sub", ops::sub_forward}, {"mul", ops::mul_forward}, {"div", ops::div_forward}};
  for (const auto& [name, forward] : binaries)
    for (const Tensor* t : {&table, &lead1}) {
      Tensor out = Tensor::empty({B, T, C}, half()), out32 = Tensor::empty({B, T, C});
      forward(out, full, *t);
      forward(out32, widened(full), widened(*t));
      expect_rounded_once(out, out32, std::string(name) + "(full, table) " + shape_str(t->shape()));
      forward(out, *t, full);
      forward(out32, widened(*t), widened(full));
      expect_rounded_once(out, out32, std::string(name) + "(table, full) " + shape_str(t->shape()));
    }
}

// staged_rows itself: every row visited once, in row order within its fixed group, with f32
// operands passed through in place and Out blocks rounded into the half tensor.
TEST_P(StagedRows, VisitsEveryRowOnceInItsGroupInOrder) {
  const int64_t N = 103, width = 700, groups = 10;  // 23 rows per block: groups of 10 or 11 rows
  Tensor in = Tensor::arange(N * width).to(DType::F32).view({N, width});
  Tensor out = Tensor::empty({N, width}, half());
  std::vector<int64_t> seen(N, -1);
  ops::staged_rows({{&out, ops::PointwiseOperand::Out}, {&in, ops::PointwiseOperand::In}}, N, groups,
                   [&](int64_t group, int64_t first, int64_t rows, float* const* blocks) {
                     EXPECT_EQ(blocks[1], in.data<float>() + first * width) << "an f32 operand is read in place";
                     EXPECT_GE(first, group * N / groups);
                     EXPECT_LE(first + rows, (group + 1) * N / groups);
                     for (int64_t r = 0; r < rows; r++) {
                       seen[first + r] = group;
                       for (int64_t i = 0; i < width; i++) blocks[0][r * width + i] = 0.5f * blocks[1][r * width + i];
                     }
                   });
  for (int64_t g = 0; g < groups; g++)
    for (int64_t r = g * N / groups; r < (g + 1) * N / groups; r++) EXPECT_EQ(seen[r], g) << "row " << r;
  Tensor want32 = Tensor::empty({N, width});
  ops::scale_forward(want32, in, 0.5f);
  expect_rounded_once(out, want32, "staged_rows out");
}

INSTANTIATE_TEST_SUITE_P(, StagedRows, ::testing::Values(DType::BF16, DType::F16),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

}  // namespace
