// Embedding on CUDA against the CPU kernel: the forward (an exact copy), the deterministic backward
// (sort + per-run sums) with pre-filled gradient buffers, ids that repeat in every pattern the
// scheme distinguishes (runs inside one chunk, runs crossing chunks, one id everywhere, the
// positions pattern, the GPT-2 size), determinism, out-of-range ids on the GPU, and the CPU-side
// error for half precision.
//
// Tolerances:
//   forward: a copy of the rows: exact (rel_error 0).
//   backward f32: the GPU adds each id's rows in position order into an f32 sum and that sum into
//     dweight; the CPU adds each row into dweight directly. The grouping differs, so do the
//     roundings: for k rows per id, ~sqrt(k) 2^-24 relative; 1e-5 covers k up to the thousands.
//   backward bf16 / f16: one rounding of each result (read, add in f32, round): 2^-8 / 2^-11, plus
//     the f32 term.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/embedding.h"
#include "ops/embedding.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

constexpr double kF32Tolerance = 1e-5;

double rounded_tolerance(DType dtype) {
  return (dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype)) + kF32Tolerance;
}

// Element-wise: dweight[v][c] = start + the sum of the k rows with id v, added in different
// groupings on the two sides; each side's k + 1 f32 additions are within k u of the sum of the
// magnitudes (u = 2^-24), so the two differ by 2 k u (|start| + sum |rows|); the GPU then rounds once
// to the dtype: + R (|ref| + d) + the subnormal half-spacing. Untouched rows stay exact.
std::vector<double> backward_bounds(DType dtype, const Tensor& ids_t, const Tensor& dout_t, const Tensor& start_t,
                                    const Tensor& ref_t) {
  const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const std::vector<int32_t> ids = ids_t.to_int_vector();
  const std::vector<float> dout = dout_t.to_vector(), start = start_t.to_vector(), ref = ref_t.to_vector();
  const size_t C = dout.size() / ids.size();
  std::vector<double> count(ref.size() / C, 0), magnitude(ref.size());
  for (size_t i = 0; i < ref.size(); i++) magnitude[i] = std::fabs(start[i]);
  for (size_t n = 0; n < ids.size(); n++) {
    count[static_cast<size_t>(ids[n])] += 1;
    for (size_t c = 0; c < C; c++) magnitude[static_cast<size_t>(ids[n]) * C + c] += std::fabs(dout[n * C + c]);
  }
  std::vector<double> bounds(ref.size());
  for (size_t i = 0; i < ref.size(); i++) {
    const double d = 2 * count[i / C] * u * magnitude[i];
    bounds[i] = d + R * (std::fabs(ref[i]) + d) + test::subnormal_half_spacing(dtype);
  }
  return bounds;
}

Tensor random_ids(int64_t N, int64_t V, Generator& gen) {
  std::vector<int32_t> ids(static_cast<size_t>(N));
  for (int32_t& id : ids) id = static_cast<int32_t>(gen.below(V));
  return Tensor::from_ints(ids, {N});
}

// ids 0 .. T-1 repeated B times: the position embedding's pattern, B rows per id.
Tensor position_ids(int64_t B, int64_t T) {
  std::vector<int32_t> ids;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) ids.push_back(static_cast<int32_t>(t));
  return Tensor::from_ints(ids, {B, T});
}

struct Case {
  std::string name;
  Tensor ids;
  int64_t V, C;
};

std::vector<Case> backward_cases(Generator& gen) {
  return {
      {"one id", Tensor::from_ints({3}, {1}), 5, 7},
      {"few ids, short runs", random_ids(33, 1000, gen), 1000, 33},
      {"many repeats: runs cross chunks", random_ids(4097, 37, gen), 37, 384},
      {"one id everywhere", Tensor::from_ints(std::vector<int32_t>(5000, 11), {5000}), 37, 769},
      {"positions", position_ids(16, 257), 257, 384},
      {"C = 1", random_ids(1000, 37, gen), 37, 1},
      {"odd C, two tiles of the sort", random_ids(6001, 1000, gen), 1000, 769},
  };
}

}  // namespace

TEST(CudaEmbedding, ForwardCopiesTheRowsExactly) {
  TG_REQUIRE_GPU();
  Generator gen(601);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (int64_t C : {1, 7, 33, 384, 769}) {
      for (int64_t V : {37, 1000}) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " V=" + std::to_string(V) + " C=" + std::to_string(C));
        const int64_t N = 257;
        Tensor ids = random_ids(N, V, gen), weight = test::rounded_randn({V, C}, gen, dtype);
        Tensor ref = Tensor::empty({N, C});
        ops::embedding_forward(ref, ids, weight);
        Tensor out = test::poisoned({N, C}, dtype);
        ops::embedding_forward(out, ids.to(test::gpu()), test::to_device(weight, dtype));
        EXPECT_EQ(test::rel_error(out, ref), 0.0);
        EXPECT_TRUE(test::elementwise_close(out, ref, test::Tolerance{0.0, 0.0}));
      }
    }
  }
}

TEST(CudaEmbedding, BackwardAccumulatesAndMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(602);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (const Case& c : backward_cases(gen)) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + c.name);
      Shape out_shape = c.ids.shape();
      out_shape.push_back(c.C);
      Tensor dout = test::rounded_randn(out_shape, gen, dtype);
      Tensor dweight = test::rounded_randn({c.V, c.C}, gen, dtype);  // pre-filled: the kernels must add
      Tensor dweight_gpu = test::to_device(dweight, dtype);
      const Tensor start = dweight.clone();
      ops::embedding_backward(dweight, dout, c.ids);
      ops::embedding_backward(dweight_gpu, test::to_device(dout, dtype), c.ids.to(test::gpu()));
      EXPECT_LT(test::rel_error(dweight_gpu, dweight), rounded_tolerance(dtype));
      EXPECT_TRUE(test::elementwise_close(dweight_gpu, dweight, backward_bounds(dtype, c.ids, dout, start, dweight)));
    }
  }
}

// The GPT-2 sizes: N = 16384 tokens (B = 16, T = 1024), V = 50304, C = 768, in bf16, for token ids
// and for the positions pattern.
TEST(CudaEmbedding, BackwardAtGpt2Size) {
  TG_REQUIRE_GPU();
  Generator gen(603);
  const DType dtype = DType::BF16;
  for (const Case& c : std::vector<Case>{{"tokens", random_ids(16384, 50304, gen), 50304, 768},
                                         {"positions", position_ids(16, 1024), 1024, 768}}) {
    SCOPED_TRACE(c.name);
    Tensor dout = test::rounded_randn({16384, 768}, gen, dtype);
    Tensor dweight = test::rounded_randn({c.V, 768}, gen, dtype);
    Tensor dweight_gpu = test::to_device(dweight, dtype);
    Tensor ids = c.ids.reshape({16384});
    const Tensor start = dweight.clone();
    ops::embedding_backward(dweight, dout, ids);
    ops::embedding_backward(dweight_gpu, test::to_device(dout, dtype), ids.to(test::gpu()));
    EXPECT_LT(test::rel_error(dweight_gpu, dweight), rounded_tolerance(dtype));
    EXPECT_TRUE(test::elementwise_close(dweight_gpu, dweight, backward_bounds(dtype, ids, dout, start, dweight)));
  }
}

TEST(CudaEmbedding, BackwardIsDeterministic) {
  TG_REQUIRE_GPU();
  Generator gen(604);
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const int64_t N = 9000, V = 50, C = 384;  // ~180 rows per id: long runs crossing chunks
    Tensor ids = random_ids(N, V, gen).to(test::gpu());
    Tensor dout = test::to_device(test::rounded_randn({N, C}, gen, dtype), dtype);
    auto run = [&] {
      Tensor dweight = Tensor::zeros({V, C}, dtype, test::gpu());
      ops::embedding_backward(dweight, dout, ids);
      return dweight.to_vector();
    };
    std::vector<float> first = run();
    EXPECT_EQ(run(), first);
  }
}

// The differentiable function on the GPU: the output has weight's dtype, and so does its gradient.
TEST(CudaEmbedding, AutogradKeepsTheDtype) {
  TG_REQUIRE_GPU();
  Generator gen(605);
  Tensor weight = test::to_device(test::rounded_randn({10, 16}, gen, DType::BF16), DType::BF16).requires_grad_();
  Tensor ids = Tensor::from_ints({1, 3, 1, 9}, {2, 2}).to(test::gpu());
  Tensor out = embedding(ids, weight);
  EXPECT_EQ(out.dtype(), DType::BF16);
  EXPECT_EQ(out.shape(), (Shape{2, 2, 16}));
  backward(out, Tensor::ones({2, 2, 16}, DType::BF16, test::gpu()));
  std::vector<float> grad = weight.grad().to_vector();
  EXPECT_EQ(grad[1 * 16], 2.0f);  // id 1 appears twice
  EXPECT_EQ(grad[3 * 16], 1.0f);
  EXPECT_EQ(grad[0], 0.0f);
}

// Out-of-range ids in a CUDA tensor: the same message as on the CPU, naming the position.
TEST(CudaEmbedding, OutOfRangeIdOnTheGpuNamesIt) {
  TG_REQUIRE_GPU();
  Tensor weight = Tensor::zeros({5, 3}, DType::BF16, test::gpu());
  Tensor ids = Tensor::from_ints({0, 1, 2, 3, 4, 7}, {2, 3}).to(test::gpu());
  EXPECT_ERROR_MENTIONS(embedding(ids, weight), "embedding", "ids[1, 2]", "7", "V = 5");
  Tensor dweight = Tensor::zeros({5, 3}, DType::BF16, test::gpu());
  EXPECT_ERROR_MENTIONS(ops::embedding_backward(dweight, Tensor::zeros({1, 3}, DType::BF16, test::gpu()),
                                                Tensor::from_ints({-2}, {1}).to(test::gpu())),
                        "embedding", "ids[0]", "-2", "V = 5");
}

// ---- CPU-runnable ------------------------------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaEmbedding, MixedDtypesAreAClearError) {
  Tensor ids = Tensor::from_ints({0, 1}, {2});
  Tensor dweight = Tensor::zeros({5, 3});
  EXPECT_ERROR_MENTIONS(ops::embedding_backward(dweight, Tensor::zeros({2, 3}).to(DType::BF16), ids), "embedding",
                        "dout", "bf16", "f32");
}
