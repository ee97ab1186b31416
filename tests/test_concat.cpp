// cat, stack, split and chunk: values against hand-written expectations and a naive index-by-index
// reference, gradients against finite differences on odd sizes in the first, a middle, the last and
// negative dimensions, split/chunk parts as views whose unused parts get no gradient, and the
// messages for every kind of bad argument.
//
// cat and split only move values, so every value comparison here is exact (EXPECT_EQ).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/concat.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"
#include "ops/concat.h"
#include "tensor/tensor.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

Tensor randn(const Shape& shape, Generator& gen) { return Tensor::randn(shape, &gen); }

Tensor leaf(const Shape& shape, Generator& gen) { return Tensor::randn(shape, &gen).requires_grad_(true); }

// The row-major multi-index of flat element `flat` of `shape`.
std::vector<int64_t> index_of(int64_t flat, const Shape& shape) {
  std::vector<int64_t> index(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    index[k] = flat % shape[k];
    flat /= shape[k];
  }
  return index;
}

int64_t flat_of(const std::vector<int64_t>& index, const Shape& shape) {
  int64_t flat = 0;
  for (size_t k = 0; k < shape.size(); k++) flat = flat * shape[k] + index[k];
  return flat;
}

// cat by definition, one output element at a time: element i of the output, at position p in dim,
// is element (.., p - start_j, ..) of the input j whose range [start_j, start_j + n_j) holds p.
std::vector<float> naive_cat(const std::vector<Tensor>& tensors, int64_t dim) {
  Shape shape = tensors[0].shape();
  shape[dim] = 0;
  for (const Tensor& t : tensors) shape[dim] += t.shape()[dim];
  std::vector<float> out(static_cast<size_t>(shape_numel(shape)));
  for (int64_t i = 0; i < shape_numel(shape); i++) {
    std::vector<int64_t> index = index_of(i, shape);
    for (const Tensor& t : tensors) {
      if (index[dim] < t.shape()[dim]) {
        out[i] = t.to_vector()[flat_of(index, t.shape())];
        break;
      }
      index[dim] -= t.shape()[dim];
    }
  }
  return out;
}

}  // namespace

// Every test of Concat runs at each instruction-set level of the CPU kernels.
class Concat : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Concat);

TEST_P(Concat, CatByHand) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector({7, 8}, {2, 1});
  Tensor c = Tensor::from_vector({9, 10, 11}, {1, 3});
  Tensor along_columns = cat({a, b}, 1);
  EXPECT_EQ(along_columns.shape(), (Shape{2, 4}));
  EXPECT_EQ(along_columns.to_vector(), (std::vector<float>{1, 2, 3, 7, 4, 5, 6, 8}));
  EXPECT_EQ(cat({a, b}, -1).to_vector(), along_columns.to_vector());
  Tensor along_rows = cat({a, c, a}, 0);
  EXPECT_EQ(along_rows.shape(), (Shape{5, 3}));
  EXPECT_EQ(along_rows.to_vector(), (std::vector<float>{1, 2, 3, 4, 5, 6, 9, 10, 11, 1, 2, 3, 4, 5, 6}));
  // One tensor: a copy of it.
  EXPECT_EQ(cat({a}, 1).to_vector(), a.to_vector());
}

TEST_P(Concat, CatMatchesNaiveReferenceInEveryDimension) {
  Generator gen(1);
  const Shape base = {3, 4, 5};
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    int64_t d = dim < 0 ? dim + 3 : dim;
    std::vector<Tensor> parts;
    for (int64_t size : {2, 1, 0, 3}) {  // includes an empty part
      Shape shape = base;
      shape[d] = size;
      parts.push_back(randn(shape, gen));
    }
    EXPECT_EQ(cat(parts, dim).to_vector(), naive_cat(parts, d)) << "dim " << dim;
  }
}

// Large enough for the threaded paths (>= 128 KiB): whole rows per thread in blocks (7 rows of
// odd byte counts), and, with fewer rows than threads, byte shares that start and end inside runs
// (one row, with an empty input between two long ones).
TEST_P(Concat, CatLargeUsesThreadsAndMatches) {
  Generator gen(2);
  std::vector<Tensor> columns = {randn({7, 5001}, gen), randn({7, 3}, gen), randn({7, 1}, gen)};
  EXPECT_EQ(cat(columns, 1).to_vector(), naive_cat(columns, 1));
  std::vector<Tensor> rows = {randn({3, 11111}, gen), randn({1, 11111}, gen)};
  EXPECT_EQ(cat(rows, 0).to_vector(), naive_cat(rows, 0));
  std::vector<Tensor> one_row = {randn({1, 20001}, gen), randn({1, 0}, gen), randn({1, 20003}, gen)};
  EXPECT_EQ(cat(one_row, 1).to_vector(), naive_cat(one_row, 1));
}

// Non-contiguous inputs are read through their strides; integer tensors join like any other dtype
// (the kernel copies bytes).
TEST_P(Concat, CatOfViewsAndIntegers) {
  Generator gen(3);
  Tensor base = randn({4, 3}, gen);
  Tensor transposed = base.transpose(0, 1);  // (3, 4), not contiguous
  Tensor other = randn({3, 2}, gen);
  EXPECT_EQ(cat({transposed, other}, 1).to_vector(), naive_cat({transposed.contiguous(), other}, 1));
  Tensor ids = cat({Tensor::from_ints({1, 2, 3}, {3}), Tensor::from_ints({-4}, {1})}, 0);
  EXPECT_EQ(ids.dtype(), DType::I32);
  EXPECT_EQ(ids.to_int_vector(), (std::vector<int32_t>{1, 2, 3, -4}));
}

TEST_P(Concat, StackMatchesCatOfUnsqueezed) {
  Generator gen(4);
  std::vector<Tensor> tensors = {randn({2, 3}, gen), randn({2, 3}, gen), randn({2, 3}, gen)};
  Tensor s0 = stack(tensors, 0);
  EXPECT_EQ(s0.shape(), (Shape{3, 2, 3}));
  for (int64_t i = 0; i < 3; i++) EXPECT_EQ(s0.select(0, i).contiguous().to_vector(), tensors[i].to_vector());
  for (int64_t dim : {1, 2, -1, -3}) {
    int64_t d = dim < 0 ? dim + 3 : dim;
    std::vector<Tensor> unsqueezed;
    for (const Tensor& t : tensors) unsqueezed.push_back(t.unsqueeze(d).contiguous());
    Tensor s = stack(tensors, dim);
    Shape expected = {2, 3};
    expected.insert(expected.begin() + d, 3);
    EXPECT_EQ(s.shape(), expected) << "dim " << dim;
    EXPECT_EQ(s.to_vector(), naive_cat(unsqueezed, d)) << "dim " << dim;
  }
  // Stacking scalars gives a vector.
  EXPECT_EQ(stack({Tensor::scalar(1.0f), Tensor::scalar(2.0f)}).to_vector(), (std::vector<float>{1, 2}));
}

TEST_P(Concat, CatAndStackGradcheck) {
  Generator gen(5);
  // Odd sizes; the joined dimension first, in the middle, last, and negative.
  struct Case {
    std::vector<Shape> shapes;
    int64_t dim;
  };
  std::vector<Case> cases = {
      {{{3, 5, 7}, {1, 5, 7}, {2, 5, 7}}, 0},
      {{{3, 2, 7}, {3, 5, 7}, {3, 1, 7}}, 1},
      {{{3, 5, 1}, {3, 5, 4}}, 2},
      {{{3, 2, 7}, {3, 3, 7}}, -2},
      {{{5}, {3}}, -1},
  };
  for (const Case& c : cases) {
    std::vector<Tensor> inputs;
    for (const Shape& shape : c.shapes) inputs.push_back(leaf(shape, gen));
    int64_t dim = c.dim;
    EXPECT_EQ(gradcheck([dim](const std::vector<Tensor>& in) { return cat(in, dim); }, inputs), "") << "cat dim " << dim;
  }
  std::vector<Tensor> same = {leaf({3, 5}, gen), leaf({3, 5}, gen), leaf({3, 5}, gen)};
  for (int64_t dim : {0, 1, 2, -1})
    EXPECT_EQ(gradcheck([dim](const std::vector<Tensor>& in) { return stack(in, dim); }, same), "") << "stack dim " << dim;
  // One tensor used twice in one cat, and one through a transposed view: both contributions arrive.
  std::vector<Tensor> pair = {leaf({3, 4}, gen), leaf({4, 3}, gen)};
  EXPECT_EQ(gradcheck(
                [](const std::vector<Tensor>& in) { return cat({in[0], transpose(in[1], 0, 1), in[0]}, 1); }, pair),
            "");
}

// Only the inputs that need a gradient get one, and it is exactly the output gradient's slice.
TEST_P(Concat, CatGradientGoesToItsSlice) {
  Generator gen(6);
  Tensor a = leaf({2, 3}, gen), b = randn({2, 2}, gen), c = leaf({2, 1}, gen);
  Tensor w = randn({2, 6}, gen);
  backward(cat({a, b, c}, 1), w);
  EXPECT_EQ(a.grad().to_vector(), w.slice(1, 0, 3).contiguous().to_vector());
  EXPECT_EQ(c.grad().to_vector(), w.slice(1, 5, 6).contiguous().to_vector());
  EXPECT_FALSE(b.grad().defined());
}

TEST_P(Concat, SplitAndChunkParts) {
  Tensor x = Tensor::arange(14).reshape({2, 7});
  // split by size: parts of 3, the last smaller.
  std::vector<Tensor> parts = split(x, 3, 1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].to_vector(), (std::vector<float>{0, 1, 2, 7, 8, 9}));
  EXPECT_EQ(parts[1].to_vector(), (std::vector<float>{3, 4, 5, 10, 11, 12}));
  EXPECT_EQ(parts[2].to_vector(), (std::vector<float>{6, 13}));
  // The parts are views of x: no copy.
  for (const Tensor& p : parts) EXPECT_EQ(p.storage(), x.storage());
  // split by sizes, with an empty part and a negative dim.
  parts = split(x, {2, 0, 5}, -1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(parts[1].shape(), (Shape{2, 0}));
  EXPECT_EQ(parts[2].to_vector(), (std::vector<float>{2, 3, 4, 5, 6, 9, 10, 11, 12, 13}));
  // A braced single size is a list of sizes, not a split size.
  parts = split(x, {2}, 0);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].shape(), (Shape{2, 7}));
  // chunk: ceil(7 / 3) = 3 per part; 6 in 4 chunks gives 3 parts of 2, as in PyTorch.
  parts = chunk(x, 3, 1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].shape(), (Shape{2, 1}));
  EXPECT_EQ(chunk(Tensor::arange(6), 4).size(), 3u);
  EXPECT_EQ(chunk(x, 2, 0)[1].to_vector(), (std::vector<float>{7, 8, 9, 10, 11, 12, 13}));
  // An empty dimension: split gives one empty part, chunk gives `chunks` of them.
  Tensor empty = Tensor::zeros({0, 3});
  EXPECT_EQ(split(empty, 2).size(), 1u);
  EXPECT_EQ(chunk(empty, 3).size(), 3u);
  EXPECT_EQ(chunk(empty, 3)[2].shape(), (Shape{0, 3}));
  // cat puts back what split took apart.
  EXPECT_EQ(cat(split(x, 2, 1), 1).to_vector(), x.to_vector());
}

TEST_P(Concat, SplitAndChunkGradcheck) {
  Generator gen(7);
  Tensor x = leaf({5, 7, 3}, gen);
  // Parts rejoined in another order (so each part's gradient must land in its own place), some
  // parts dropped, in each dimension.
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) {
              std::vector<Tensor> p = split(in[0], {2, 1, 2}, 0);
              return cat({p[2], p[0]}, 0);
            }, {x}), "");
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) {
              std::vector<Tensor> p = chunk(in[0], 3, 1);  // 3, 3, 1
              return cat({p[2], p[0], p[2]}, 1);
            }, {x}), "");
  // Two parts of one tensor meeting in a product: both gradients add into the same buffer.
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) {
              std::vector<Tensor> p = split(in[0], 2, -1);  // 2, 1
              return p[1] * slice(p[0], 2, 1, 2);
            }, {x}), "");
}

// The gradient of x through split: the used parts' gradients in their places, zeros elsewhere.
TEST_P(Concat, SplitGradientWhenOnlySomePartsAreUsed) {
  Generator gen(8);
  Tensor x = leaf({4, 7}, gen);
  std::vector<Tensor> parts = split(x, {2, 3, 2}, 1);
  Tensor w0 = randn({4, 2}, gen), w2 = randn({4, 2}, gen);
  Tensor loss = sum(parts[0] * w0) + sum(parts[2] * w2);
  backward(loss);
  std::vector<float> g = x.grad().to_vector(), v0 = w0.to_vector(), v2 = w2.to_vector();
  for (int64_t r = 0; r < 4; r++)
    for (int64_t c = 0; c < 7; c++) {
      float want = c < 2 ? v0[r * 2 + c] : (c < 5 ? 0.0f : v2[r * 2 + (c - 5)]);
      EXPECT_EQ(g[r * 7 + c], want) << "[" << r << ", " << c << "]";
    }
}

TEST_P(Concat, BadArgumentsNameTheArgument) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({2, 4}), c = Tensor::zeros({2, 3, 1});
  EXPECT_ERROR_MENTIONS(cat({}, 0), "cat", "empty");
  EXPECT_ERROR_MENTIONS(cat({a, b}, 0), "cat", "tensors[1]", "(2, 4)", "(2, 3)", "dimension but 0");
  EXPECT_ERROR_MENTIONS(cat({a, c}, 1), "cat", "tensors[1]", "(2, 3, 1)", "number of dimensions");
  EXPECT_ERROR_MENTIONS(cat({a, Tensor::from_ints({1, 2, 3, 4, 5, 6}, {2, 3})}, 0), "cat", "tensors[1]", "i32", "f32");
  EXPECT_ERROR_MENTIONS(cat({a, Tensor()}, 0), "cat", "tensors[1]", "undefined");
  EXPECT_ERROR_MENTIONS(cat({Tensor::scalar(1.0f)}, 0), "cat", "tensors[0]", "zero-dimensional");
  EXPECT_ERROR_MENTIONS(cat({a, a}, 2), "cat", "dimension 2", "2 dimensions");
  EXPECT_ERROR_MENTIONS(cat({a, a}, -3), "cat", "dimension -3");
  EXPECT_ERROR_MENTIONS(stack({}, 0), "stack", "empty");
  EXPECT_ERROR_MENTIONS(stack({a, b}, 0), "stack", "tensors[1]", "(2, 4)", "(2, 3)", "equal shapes");
  EXPECT_ERROR_MENTIONS(stack({a, a}, 3), "stack", "dimension 3");
  EXPECT_ERROR_MENTIONS(split(a, {1, 1}, 1), "split", "(1, 1)", "sum to 2", "dimension 1", "(2, 3)", "size 3");
  EXPECT_ERROR_MENTIONS(split(a, {4, -1}, 1), "split", "negative", "-1");
  EXPECT_ERROR_MENTIONS(split(a, 0, 1), "split", "split_size", "0");
  EXPECT_ERROR_MENTIONS(split(a, -2, 1), "split", "split_size is -2");
  EXPECT_ERROR_MENTIONS(split(a, 1, 2), "split", "dimension 2");
  EXPECT_ERROR_MENTIONS(split(Tensor::scalar(1.0f), 1), "split", "zero-dimensional");
  EXPECT_ERROR_MENTIONS(chunk(a, 0, 1), "chunk", "chunks is 0");
  EXPECT_ERROR_MENTIONS(chunk(Tensor(), 2), "chunk", "undefined");
  // The front's own contract.
  Tensor wrong = Tensor::empty({2, 6});
  EXPECT_ERROR_MENTIONS(ops::concat_forward(wrong, {a, a}, 0), "concat", "out", "(2, 6)", "(4, 3)");
  std::vector<Tensor> grads = {Tensor::zeros({2, 3})};
  EXPECT_ERROR_MENTIONS(ops::concat_backward(grads, Tensor::zeros({2, 4}), 1, {3}), "concat_backward", "sum to 3", "(2, 4)");
}
