// Embedding: the forward is an exact row copy, the backward a deterministic scatter-add (repeated
// ids accumulate, bit-identical to a serial sum in id order at any thread count), finite-difference
// gradient checks, and errors that name a bad id, its position and V.
#include <gtest/gtest.h>
#include <omp.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/embedding.h"
#include "autograd/gradcheck.h"
#include "ops/embedding.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {


Tensor random_ids(const Shape& shape, int64_t V, Generator& gen) {
  std::vector<int32_t> ids(static_cast<size_t>(shape_numel(shape)));
  for (int32_t& id : ids) id = static_cast<int32_t>(gen.below(static_cast<uint64_t>(V)));
  return Tensor::from_ints(ids, shape);
}

struct ThreadCount {
  int saved = omp_get_max_threads();
  ~ThreadCount() { omp_set_num_threads(saved); }
};

}  // namespace

// Every test of EmbeddingOp runs at each instruction-set level of the CPU kernels.
class EmbeddingOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(EmbeddingOp);

TEST_P(EmbeddingOp, ForwardCopiesTheRows) {
  Generator gen(21);
  const std::vector<Shape> id_shapes = {{1}, {5}, {2, 3}, {2, 2, 3}, {4, 13}};
  for (const Shape& id_shape : id_shapes) {
    const int64_t V = 7, C = 37;
    Tensor ids = random_ids(id_shape, V, gen), weight = Tensor::randn({V, C}, &gen);
    Tensor out = embedding(ids, weight);
    Shape want = id_shape;
    want.push_back(C);
    ASSERT_EQ(out.shape(), want);
    std::vector<int32_t> id = ids.to_int_vector();
    std::vector<float> w = weight.to_vector(), o = out.to_vector();
    for (size_t n = 0; n < id.size(); n++)
      for (int64_t c = 0; c < C; c++) ASSERT_EQ(o[n * C + c], w[id[n] * C + c]) << "ids " << shape_str(id_shape);
  }
}

TEST_P(EmbeddingOp, GradCheck) {
  Generator gen(22);
  // Repeated ids on purpose (4 rows from a vocabulary of 3), 2-D ids, C = 1 and odd C.
  const std::vector<std::pair<Shape, Shape>> cases = {{{4}, {3, 5}}, {{2, 3}, {5, 1}}, {{3, 5}, {6, 3}}};
  for (const auto& [id_shape, weight_shape] : cases) {
    Tensor ids = random_ids(id_shape, weight_shape[0], gen);
    Tensor weight = Tensor::randn(weight_shape, &gen).requires_grad_(true);
    EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return embedding(in[0], in[1]); }, {ids, weight}), "")
        << "ids " << shape_str(id_shape) << ", weight " << shape_str(weight_shape);
  }
}

// The same id twice gets both gradient rows; rows never looked up get nothing; the gradient adds
// to what the buffer held.
TEST_P(EmbeddingOp, RepeatedIdsAccumulate) {
  const int64_t V = 5, C = 3;
  Tensor ids = Tensor::from_ints({1, 3, 1, 1}, {2, 2});
  Tensor dout = Tensor::from_vector({1, 2, 3, 10, 20, 30, 100, 200, 300, 1000, 2000, 3000}, {2, 2, C});
  Tensor dweight = Tensor::full({V, C}, 0.5f);
  ops::embedding_backward(dweight, dout, ids);
  std::vector<float> want = {0.5f, 0.5f, 0.5f,
                             0.5f + 1 + 100 + 1000, 0.5f + 2 + 200 + 2000, 0.5f + 3 + 300 + 3000,
                             0.5f, 0.5f, 0.5f,
                             0.5f + 10, 0.5f + 20, 0.5f + 30,
                             0.5f, 0.5f, 0.5f};
  EXPECT_EQ(dweight.to_vector(), want);

  // Through autograd: ids get no gradient, the weight gets the scatter.
  Tensor weight = Tensor::zeros({V, C}).requires_grad_(true);
  backward(embedding(ids, weight), dout);
  for (float& v : want) v -= 0.5f;
  EXPECT_EQ(weight.grad().to_vector(), want);
  EXPECT_FALSE(ids.grad().defined());
}

// Each element of dweight sums its contributions in id-position order whatever the thread count, so
// the kernel equals a serial f32 sum in that order bit for bit. A small vocabulary makes every row
// a long sum (where a different order would change the bits), C = 100 splits unevenly into cache
// lines across 2 and 3 threads, and N x C is above the kernel's parallel threshold.
TEST_P(EmbeddingOp, BackwardIsDeterministicAcrossThreadCounts) {
  ThreadCount restore;
  Generator gen(23);
  const int64_t V = 7, C = 100, N = 3000;
  Tensor ids = random_ids({N}, V, gen), dout = Tensor::randn({N, C}, &gen);
  std::vector<int32_t> id = ids.to_int_vector();
  std::vector<float> d = dout.to_vector(), serial(V * C, 0.0f);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) serial[id[n] * C + c] += d[n * C + c];
  for (int threads : {1, 2, 3, 2}) {
    omp_set_num_threads(threads);
    Tensor dweight = Tensor::zeros({V, C});
    ops::embedding_backward(dweight, dout, ids);
    EXPECT_EQ(dweight.to_vector(), serial) << threads << " threads";
  }
}

TEST_P(EmbeddingOp, OutOfRangeIdNamesTheIdItsPositionAndV) {
  Generator gen(21);
  Tensor weight = Tensor::randn({5, 3}, &gen);
  expect_error([&] { embedding(Tensor::from_ints({0, 1, 2, 3, 4, 7}, {2, 3}), weight); }, {"embedding", "ids[1, 2]", "7", "V = 5"});
  expect_error([&] { embedding(Tensor::from_ints({0, -1}, {2}), weight); }, {"embedding", "ids[1]", "-1", "V = 5"});
  expect_error([&] { embedding(Tensor::from_ints({5}, {1}), weight); }, {"embedding", "ids[0]", "= 5", "V = 5"});
  // The backward checks too (ops callers may pass ids that never went through the forward).
  Tensor dweight = Tensor::zeros({5, 3});
  expect_error([&] { ops::embedding_backward(dweight, Tensor::zeros({1, 3}), Tensor::from_ints({9}, {1})); },
               {"embedding", "ids[0]", "9", "V = 5"});
}

TEST_P(EmbeddingOp, BadInputNamesTheOpAndShapes) {
  Generator gen(22);
  Tensor ids = Tensor::from_ints({0, 1}, {2});
  expect_error([&] { embedding(ids, Tensor::randn({5}, &gen)); }, {"embedding", "weight", "(5)", "2 dimensions"});
  expect_error([&] { embedding(Tensor::zeros({2}), Tensor::randn({5, 3}, &gen)); }, {"embedding", "ids", "f32", "i32"});
  expect_error([&] { embedding(ids, Tensor::randn({5, 3}, &gen).to(DType::I32)); },
               {"embedding", "weight", "i32", "f32, bf16 or f16"});
  Tensor dweight = Tensor::zeros({5, 3});
  expect_error([&] { ops::embedding_backward(dweight, Tensor::zeros({2, 4}), ids); },
               {"embedding", "dout", "(2, 4)", "(2, 3)", "(5, 3)"});
  Tensor out = Tensor::empty({3, 3});
  expect_error([&] { ops::embedding_forward(out, ids, Tensor::randn({5, 3}, &gen)); }, {"embedding", "out", "(3, 3)", "(2, 3)"});
}

TEST_P(EmbeddingOp, EmptyIds) {
  Generator gen(23);
  Tensor out = embedding(Tensor::from_ints({}, {0}), Tensor::randn({4, 3}, &gen));
  EXPECT_EQ(out.shape(), (Shape{0, 3}));
}
