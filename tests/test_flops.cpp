// FlopCounter: the matrix-product fronts report 2 FLOPs per multiply-add to the thread's counter.
#include <gtest/gtest.h>

#include "ops/flops.h"
#include "ops/gemm.h"

using namespace tg;

TEST(FlopCounter, MatmulAndLinearCountTwoFlopsPerMultiplyAdd) {
  Generator gen(3);
  Tensor a = Tensor::randn({5, 7}, &gen), b = Tensor::randn({7, 3}, &gen), out = Tensor::empty({5, 3});
  Tensor batched_a = Tensor::randn({4, 5, 7}, &gen), batched_out = Tensor::empty({4, 5, 3});
  Tensor weight = Tensor::randn({6, 7}, &gen), bias = Tensor::randn({6}, &gen), y = Tensor::empty({5, 6});
  ops::FlopCounter counter;
  ops::matmul(out, a, b);
  EXPECT_EQ(counter.flops(), 2.0 * 5 * 3 * 7);
  ops::matmul(batched_out, batched_a, b);  // a 2-D b shared by the 4 items
  EXPECT_EQ(counter.flops(), 2.0 * 5 * 3 * 7 * 5);
  ops::linear(y, a, weight, bias);
  EXPECT_EQ(counter.flops(), 2.0 * 5 * 3 * 7 * 5 + 2.0 * 5 * 6 * 7);
}

TEST(FlopCounter, TheInnermostCounterCountsAndNothingCountsWithoutOne) {
  Generator gen(4);
  Tensor a = Tensor::randn({2, 3}, &gen), b = Tensor::randn({3, 4}, &gen), out = Tensor::empty({2, 4});
  ops::matmul(out, a, b);  // no counter: must not crash or leak into the next one
  ops::FlopCounter outer;
  {
    ops::FlopCounter inner;
    ops::matmul(out, a, b);
    EXPECT_EQ(inner.flops(), 48.0);
  }
  EXPECT_EQ(outer.flops(), 0.0);
  ops::matmul(out, a, b);
  EXPECT_EQ(outer.flops(), 48.0);
}
