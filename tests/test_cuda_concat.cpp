// cat, stack, split and chunk on the GPU against the CPU, in f32, bf16, f16 and i32. They only move
// values (the forward copies bytes; the backward adds each slice into a zeroed gradient, and
// 0 + v is v in every format), so the comparison is exact, element by element, bit for bit.
// Shapes cover every copy width of the kernel (16-byte rows, odd 2-byte columns, an input starting
// one element into its storage), an empty input, and more inputs than one launch takes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/concat.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "ops/concat.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

// Random values rounded to `dtype` (for i32: small integers), on the CPU in that dtype.
Tensor random_cpu(const Shape& shape, Generator& gen, DType dtype) {
  Tensor x = Tensor::randn(shape, &gen);
  if (dtype == DType::I32) {
    std::vector<int32_t> ids;
    for (float v : x.to_vector()) ids.push_back(static_cast<int32_t>(v * 1000));
    return Tensor::from_ints(ids, shape);
  }
  return x.to(dtype);
}

std::vector<DType> all_dtypes() { return {DType::F32, DType::BF16, DType::F16, DType::I32}; }

struct CatCase {
  std::vector<Shape> shapes;
  int64_t dim;
};

const std::vector<CatCase>& cat_cases() {
  static const std::vector<CatCase> cases = {
      {{{3, 8}, {5, 8}}, 0},                  // whole rows: 16-byte units in f32 and bf16
      {{{4, 3, 5}, {4, 1, 5}, {4, 0, 5}, {4, 2, 5}}, 1},  // the middle, with an empty input
      {{{7, 3}, {7, 1}, {7, 5}}, -1},         // odd last-dimension runs: 2-byte units in half precision
      {{{2, 100003}, {2, 17}}, 1},            // long runs
  };
  return cases;
}

}  // namespace

TEST(CudaConcat, CatMatchesCpuBitForBit) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : all_dtypes())
    for (const CatCase& c : cat_cases()) {
      std::vector<Tensor> cpu_inputs, gpu_inputs;
      for (const Shape& shape : c.shapes) {
        cpu_inputs.push_back(random_cpu(shape, gen, dtype));
        gpu_inputs.push_back(cpu_inputs.back().to(test::gpu()));
      }
      Tensor got = cat(gpu_inputs, c.dim);
      EXPECT_EQ(got.device(), test::gpu());
      EXPECT_TRUE(test::same_bits(got, cat(cpu_inputs, c.dim)))
          << dtype_name(dtype) << " " << shape_str(c.shapes[0]) << " dim " << c.dim;
    }
}

// 40 inputs (two launches) and inputs that start one element into their storage (so no unit wider
// than the element fits them).
TEST(CudaConcat, ManyAndMisalignedInputsMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  for (DType dtype : all_dtypes()) {
    std::vector<Tensor> cpu_inputs, gpu_inputs;
    for (int64_t i = 0; i < 40; i++) {
      cpu_inputs.push_back(random_cpu({3, 1 + i % 5, 4}, gen, dtype));
      gpu_inputs.push_back(cpu_inputs.back().to(test::gpu()));
    }
    EXPECT_TRUE(test::same_bits(cat(gpu_inputs, 1), cat(cpu_inputs, 1))) << dtype_name(dtype) << " 40 inputs";
    Tensor base = random_cpu({9, 6}, gen, dtype);
    Tensor gpu_base = base.to(test::gpu());
    // Rows 1..8 of a contiguous tensor: contiguous, but offset by one row of 6 elements.
    Tensor cpu_view = base.slice(0, 1, 9), gpu_view = gpu_base.slice(0, 1, 9);
    Tensor odd = random_cpu({8, 1}, gen, dtype);
    EXPECT_TRUE(test::same_bits(cat({gpu_view, odd.to(test::gpu()), gpu_view}, 1), cat({cpu_view, odd, cpu_view}, 1)))
        << dtype_name(dtype) << " offset view";
  }
}

TEST(CudaConcat, StackMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(3);
  for (DType dtype : all_dtypes())
    for (int64_t dim : {0, 1, 2, -1}) {
      std::vector<Tensor> cpu_inputs, gpu_inputs;
      for (int i = 0; i < 3; i++) {
        cpu_inputs.push_back(random_cpu({5, 3}, gen, dtype));
        gpu_inputs.push_back(cpu_inputs.back().to(test::gpu()));
      }
      EXPECT_TRUE(test::same_bits(stack(gpu_inputs, dim), stack(cpu_inputs, dim))) << dtype_name(dtype) << " dim " << dim;
    }
}

// The gradients through cat, stack and split/chunk on the GPU equal the CPU's: each is a slice of
// the output gradient added into a zeroed buffer, exact in every float format. The CPU side runs
// in f32 (its kernels' dtype) on the same rounded values, so its gradients hold values of the
// dtype under test and convert to it exactly.
TEST(CudaConcat, GradientsMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(4);
  auto same = [](const Tensor& gpu_grad, const Tensor& cpu_grad) {
    return test::same_bits(gpu_grad, cpu_grad.to(gpu_grad.dtype()));
  };
  for (DType dtype : test::cuda_float_dtypes()) {
    std::string what = dtype_name(dtype);
    Tensor a = test::rounded_randn({4, 3, 5}, gen, dtype), b = test::rounded_randn({4, 2, 5}, gen, dtype);
    Tensor w = test::rounded_randn({4, 5, 5}, gen, dtype);
    Tensor ca = test::leaf(a), cb = test::leaf(b);
    Tensor ga = test::leaf(test::to_device(a, dtype)), gb = test::leaf(test::to_device(b, dtype));
    backward(cat({ca, cb}, 1), w);
    backward(cat({ga, gb}, 1), test::to_device(w, dtype));
    EXPECT_TRUE(same(ga.grad(), ca.grad())) << what << " cat a";
    EXPECT_TRUE(same(gb.grad(), cb.grad())) << what << " cat b";

    Tensor ws = test::rounded_randn({2, 4, 3, 5}, gen, dtype);
    Tensor sa = test::leaf(a), ta = test::leaf(test::to_device(a, dtype));
    backward(stack({sa, sa}, 0), ws);  // one tensor twice: both slices add into its gradient
    backward(stack({ta, ta}, 0), test::to_device(ws, dtype));
    // The two slices meet in one sum: the GPU adds in f32 and rounds to the dtype, the reference
    // adds in f32 and is rounded to the dtype by `same`; the same two roundings, the same bits.
    EXPECT_TRUE(same(ta.grad(), sa.grad())) << what << " stack";

    // Only parts 0 and 2 of a split are used: part 1's place stays zero on both devices.
    Tensor x = test::rounded_randn({4, 7}, gen, dtype);
    Tensor cx = test::leaf(x), gx = test::leaf(test::to_device(x, dtype));
    Tensor w02 = test::rounded_randn({8, 2}, gen, dtype);
    std::vector<Tensor> cp = split(cx, {2, 3, 2}, 1), gp = split(gx, {2, 3, 2}, 1);
    backward(cat({cp[0], cp[2]}, 0), w02);
    backward(cat({gp[0], gp[2]}, 0), test::to_device(w02, dtype));
    EXPECT_TRUE(same(gx.grad(), cx.grad())) << what << " split";
    std::vector<Tensor> cc = chunk(cx, 3, -1), gc = chunk(gx, 3, -1);
    ASSERT_EQ(gc.size(), cc.size());
    for (size_t i = 0; i < cc.size(); i++) EXPECT_TRUE(same(gc[i], cc[i])) << what << " chunk " << i;
  }
}

TEST(CudaConcat, MixedDevicesAreAClearError) {
  TG_REQUIRE_GPU();
  Tensor cpu = Tensor::zeros({2, 3}), gpu = Tensor::zeros({2, 3}, DType::F32, test::gpu());
  EXPECT_ERROR_MENTIONS(cat({cpu, gpu}, 0), "cat", "tensors[1]", "cuda:0", "cpu");
  EXPECT_ERROR_MENTIONS(stack({gpu, cpu}, 0), "stack", "tensors[1]", "cpu", "cuda:0");
}
