// GEMM family on CUDA against the CPU: the launcher (every transpose, batched, awkward sizes, both
// load paths, alpha/beta, each epilogue) for f32, bf16 and f16; the bias helpers; the Tensor fronts;
// and the differentiable linear / linear_gelu / linear_residual forward and backward. The CPU-only
// part (gradchecks of linear_gelu and linear_residual, dtype errors) runs everywhere.
//
// Tolerances. Inputs are rounded to the dtype first, so both sides multiply the same values. With
// R the unit roundoff of the output dtype (bf16: 8 significant bits, R = 2^-8; f16: 11 bits,
// R = 2^-11; f32: R = 2^-24):
//  - one rounding of the output bounds each element's relative error by R, so also the
//    normwise error ||out - ref|| / ||ref||;
//  - f32 accumulation of K products (exact in f32 for bf16/f16 inputs) in a different order on
//    each side: at most (K + 8) u |alpha| sum_k |a_ik b_kj| per side (u = 2^-24; tensor cores are
//    allowed 4u, as their internal alignment of addends may truncate), far below R for bf16/f16
//    but the whole error budget for f32;
//  - with GELU, the pre-activation is rounded before the GELU: when the two sides' f32 values fall
//    on different sides of a rounding boundary they differ by one ulp (2R |u|), times |gelu'| <= 1.13.
// Every element is checked against its own bound (so one wrong edge element fails), and the
// normwise error against R plus a tenth of R for the accumulation and the rare pre-activation
// flips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/matmul.h"
#include "autograd/gradcheck.h"
#include "ops/cpu/gemm.h"
#include "ops/gemm.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"
#ifdef TG_CUDA
#include "ops/cuda/gemm.h"
#endif

using namespace tg;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kU32 = 1.0 / (1 << 24);  // 2^-24

// Unit roundoff of the dtype's stored values.
double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::BF16: return 1.0 / (1 << 8);
    case DType::F16: return 1.0 / (1 << 11);
    default: return kU32;
  }
}

// Per-step f32 accumulation error allowed to the kernel: u for FFMA, 4u for the tensor cores.
double accumulation_roundoff(DType dtype) { return dtype == DType::F32 ? kU32 : 4 * kU32; }

float round_to(DType dtype, double x) {
  const float f = static_cast<float>(x);
  switch (dtype) {
    case DType::BF16: return bf16_to_f32(f32_to_bf16(f));
    case DType::F16: return f16_to_f32(f32_to_f16(f));
    default: return f;
  }
}

double gelu_ref(double x) {
  const double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
  return u >= 0 ? 0.5 * x * (1.0 + std::tanh(u)) : x / (1.0 + std::exp(-2.0 * u));
}

#ifdef TG_CUDA
void launch_gemm(DType dtype, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                 int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc, int64_t batch,
                 int64_t sa, int64_t sb, int64_t sc, const void* bias, bool gelu, void* pre, const void* residual) {
  cuda::GemmEpilogue e;
  e.bias = bias;
  e.gelu = gelu;
  e.pre_gelu = pre;
  e.residual = residual;
  cuda::gemm_batched(dtype, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, sa, sb, sc, e);
}
bool vectorizable(DType dtype, const void* p, int64_t ld, int64_t batch, int64_t stride) {
  return cuda::gemm_operand_vectorizable(dtype, p, ld, batch, stride);
}
#else
// Never reached: every test that launches starts with TG_REQUIRE_GPU(), which skips without CUDA.
[[noreturn]] void launch_gemm(DType, bool, bool, int64_t, int64_t, int64_t, float, const void*, int64_t,
                              const void*, int64_t, float, void*, int64_t, int64_t, int64_t, int64_t, int64_t,
                              const void*, bool, void*, const void*) {
  throw Error(no_cuda_message());
}
bool vectorizable(DType, const void*, int64_t, int64_t, int64_t) { return false; }
#endif

// A flat buffer of `n` elements on both sides: rounded f32 values on the host, the same values in
// `dtype` on the GPU. `offset` elements at the front shift the base pointer (offset 1 breaks the
// 16-byte alignment of a bf16/f16 buffer).
struct Buffer {
  std::vector<float> host;
  Tensor device;
  int64_t offset = 0;
  DType dtype = DType::F32;
  const float* host_at(int64_t i) const { return host.data() + offset + i; }
  void* device_at(int64_t i) const {
    return static_cast<char*>(device.data_raw()) + (offset + i) * static_cast<int64_t>(dtype_size(dtype));
  }
};

Buffer random_buffer(int64_t n, int64_t offset, DType dtype, Generator& gen) {
  Buffer b;
  Tensor t = test::rounded_randn({n + offset}, gen, dtype);
  b.host = t.to_vector();
  b.device = test::to_device(t, dtype);
  b.offset = offset;
  b.dtype = dtype;
  return b;
}

Buffer nan_buffer(int64_t n, DType dtype) {
  Buffer b;
  b.host.assign(static_cast<size_t>(n), kNaN);
  b.device = test::poisoned({n}, dtype);
  b.dtype = dtype;
  return b;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// A leading dimension >= len: a multiple of 8 (the vectorized path) or not (the general path).
int64_t leading_dim(int64_t len, bool aligned) {
  if (aligned) return round_up(std::max<int64_t>(len, 1), 8);
  int64_t ld = len + 1;
  return ld % 8 == 0 ? ld + 1 : ld;
}

struct GemmCase {
  bool ta = false, tb = false;
  int64_t M = 1, N = 1, K = 1;
  bool aligned = true;       // leading dims multiples of 8 (else not), A's base aligned
  bool misalign_base = false;  // A and B start one element into their buffer: general path
  float alpha = 1.0f, beta = 0.0f;
  int64_t batch = 1;
  bool shared_b = false;     // stride_b = 0
  bool bias = false, gelu = false, pre = false, residual = false;
  bool residual_is_c = false;  // the residual is C itself (C holds it before the call)
};

std::string describe(DType dtype, const GemmCase& c) {
  return std::string(dtype_name(dtype)) + " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
         " K=" + std::to_string(c.K) + " ta=" + std::to_string(c.ta) + " tb=" + std::to_string(c.tb) +
         (c.aligned ? " aligned" : " unaligned-ld") + (c.misalign_base ? " misaligned-base" : "") +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) + " batch=" + std::to_string(c.batch) +
         (c.shared_b ? " shared_b" : "") + (c.bias ? " bias" : "") + (c.gelu ? " gelu" : "") + (c.pre ? " pre" : "") +
         (c.residual ? (c.residual_is_c ? " residual=C" : " residual") : "");
}

// Runs one case on the GPU and checks every element of C (and pre_gelu) against the CPU reference
// and its bound (see the top of the file), and that nothing outside the M x N items was written.
void check_gemm(DType dtype, const GemmCase& c) {
  SCOPED_TRACE(describe(dtype, c));
  Generator gen(1000 + c.M * 7 + c.N * 13 + c.K * 17 + c.ta * 2 + c.tb);
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = leading_dim(a_cols, c.aligned), ldb = leading_dim(b_cols, c.aligned);
  const int64_t ldc = leading_dim(c.N, c.aligned);
  // Items are spaced by a multiple of 8 elements past their end, so batching keeps the path.
  const int64_t sa = round_up(a_rows * lda, 8) + 8, sb = c.shared_b ? 0 : round_up(b_rows * ldb, 8) + 8;
  const int64_t sc = round_up(c.M * ldc, 8) + 8;
  const int64_t shift = c.misalign_base ? 1 : 0;
  Buffer A = random_buffer(sa * c.batch, shift, dtype, gen);
  Buffer B = random_buffer(c.shared_b ? b_rows * ldb : sb * c.batch, shift, dtype, gen);
  Buffer C = c.beta == 0.0f && !c.residual_is_c ? nan_buffer(sc * c.batch, dtype) : random_buffer(sc * c.batch, 0, dtype, gen);
  Buffer bias = c.bias ? random_buffer(c.N, 0, dtype, gen) : Buffer();
  Buffer residual = c.residual && !c.residual_is_c ? random_buffer(sc * c.batch, 0, dtype, gen) : Buffer();
  Buffer pre = c.pre ? nan_buffer(sc * c.batch, dtype) : Buffer();
  const std::vector<float> c_before = C.host;
  const std::vector<float>& residual_host = c.residual_is_c ? c_before : residual.host;

  if (dtype != DType::F32) {
    const bool expect_vector = c.aligned && !c.misalign_base && c.K > 0;
    EXPECT_EQ(vectorizable(dtype, A.device_at(0), lda, c.batch, sa), expect_vector) << "A's load path";
    EXPECT_EQ(vectorizable(dtype, B.device_at(0), ldb, c.batch, sb), expect_vector) << "B's load path";
  }
  launch_gemm(dtype, c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.device_at(0), lda, B.device_at(0), ldb, c.beta,
              C.device_at(0), ldc, c.batch, sa, sb, sc, c.bias ? bias.device_at(0) : nullptr, c.gelu,
              c.pre ? pre.device_at(0) : nullptr,
              c.residual ? (c.residual_is_c ? C.device_at(0) : residual.device_at(0)) : nullptr);
  const std::vector<float> got = C.device.to_vector();
  const std::vector<float> got_pre = c.pre ? pre.device.to_vector() : std::vector<float>();

  const double R = unit_roundoff(dtype), acc_u = accumulation_roundoff(dtype);
  std::vector<float> prod(static_cast<size_t>(std::max<int64_t>(c.M * c.N, 1)));
  std::vector<float> mag(prod.size());
  std::vector<float> abs_a(A.host.size()), abs_b(B.host.size());
  for (size_t i = 0; i < abs_a.size(); i++) abs_a[i] = std::fabs(A.host[i]);
  for (size_t i = 0; i < abs_b.size(); i++) abs_b[i] = std::fabs(B.host[i]);
  double err2 = 0, ref2 = 0, pre_err2 = 0, pre_ref2 = 0;
  int reported = 0;
  for (int64_t item = 0; item < c.batch; item++) {
    const float* a = A.host_at(item * sa);
    const float* b = B.host_at(item * sb);
    cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, 1.0f, a, lda, b, ldb, 0.0f, prod.data(), c.N);
    cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, 1.0f, abs_a.data() + (a - A.host.data()), lda,
              abs_b.data() + (b - B.host.data()), ldb, 0.0f, mag.data(), c.N);
    for (int64_t i = 0; i < c.M; i++)
      for (int64_t j = 0; j < c.N; j++) {
        const int64_t at = item * sc + i * ldc + j;
        double v = static_cast<double>(c.alpha) * prod[i * c.N + j];
        double magnitude = std::fabs(c.alpha) * mag[i * c.N + j];
        if (c.beta != 0.0f) {
          v += static_cast<double>(c.beta) * c_before[at];
          magnitude += std::fabs(c.beta * c_before[at]);
        }
        if (c.bias) {
          v += bias.host[j];
          magnitude += std::fabs(bias.host[j]);
        }
        // Both sides' f32 accumulation and the epilogue's few f32 additions.
        double bound = 2 * (c.K + 8) * acc_u * magnitude;
        double u = 0;
        if (c.gelu) {
          if (c.pre) {  // the stored pre-activation: v rounded once
            const double d = got_pre[at] - v;
            pre_err2 += d * d;
            pre_ref2 += v * v;
            if (!(std::fabs(d) <= R * std::fabs(v) + bound) && reported++ < 5)
              ADD_FAILURE() << "pre_gelu item " << item << " (" << i << ", " << j << "): got " << got_pre[at]
                            << ", want " << v;
          }
          u = round_to(dtype, v);
          v = gelu_ref(u);
          // The accumulation error passes through gelu' (<= 1.13); then a pre-activation rounded the
          // other way (half types: one ulp, 2R |u|, times 1.13), or expf's few ulps at |arg| <= 80 (f32).
          bound *= 1.13;
          bound += dtype == DType::F32 ? 128 * kU32 * std::fabs(v) + 4 * kU32 * std::fabs(u) : 2.3 * R * std::fabs(u);
        }
        if (c.residual) v += residual_host[at];
        bound += R * std::fabs(v) + 1e-30;
        const double d = got[at] - v;
        err2 += d * d;
        ref2 += v * v;
        if (!(std::fabs(d) <= bound) && reported++ < 5)
          ADD_FAILURE() << "item " << item << " C(" << i << ", " << j << ") = " << got[at] << ", want " << v
                        << " (bound " << bound << ")";
      }
  }
  // Nothing outside the items' M x N elements changed (padding keeps NaN or its old value).
  std::vector<char> inside(got.size(), 0);
  for (int64_t item = 0; item < c.batch; item++)
    for (int64_t i = 0; i < c.M; i++)
      for (int64_t j = 0; j < c.N; j++) inside[item * sc + i * ldc + j] = 1;
  for (size_t k = 0; k < got.size() && reported < 10; k++)
    if (!inside[k] && !(got[k] == c_before[k] || (std::isnan(got[k]) && std::isnan(c_before[k])))) {
      ADD_FAILURE() << "wrote outside the matrix at flat index " << k;
      reported++;
    }
  const double tolerance = dtype == DType::F32 ? 1e-5 : 1.1 * R;
  if (ref2 > 0) {
    EXPECT_LT(std::sqrt(err2 / ref2), tolerance) << "normwise";
  }
  if (pre_ref2 > 0) {
    EXPECT_LT(std::sqrt(pre_err2 / pre_ref2), tolerance) << "normwise pre_gelu";
  }
}

struct Size {
  int64_t M, N, K;
};
// Not multiples of any tile (128 x 128 x 32, 128 x 128 x 8), K both a multiple of 8 and not,
// K past one and many k tiles, M and N past one and several tiles.
const std::vector<Size> kSizes = {{1, 1, 1}, {7, 37, 24}, {37, 129, 257}, {129, 7, 1000}, {257, 1000, 37},
                                  {1000, 257, 129}};

}  // namespace

// ---- the launcher ------------------------------------------------------------------------------

// The vectorized (cp.async) path: every leading dimension a multiple of 8, aligned bases. Edge
// tiles (M, N, K not multiples of the tile, K=37 and K=257 ending mid-chunk) are zero-filled by
// cp.async's src-size.
TEST(CudaGemm, AllTransposesAwkwardSizesVectorPath) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (const Size& s : kSizes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          GemmCase c;
          c.ta = ta, c.tb = tb, c.M = s.M, c.N = s.N, c.K = s.K;
          check_gemm(dtype, c);
        }
}

// The general path: leading dimensions that are not multiples of 8 (odd), or bases one element
// past 16-byte alignment: element-wise loads into the same shared layout.
TEST(CudaGemm, AllTransposesAwkwardSizesGeneralPath) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (const Size& s : kSizes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          GemmCase c;
          c.ta = ta, c.tb = tb, c.M = s.M, c.N = s.N, c.K = s.K, c.aligned = false;
          check_gemm(dtype, c);
          c.aligned = true;
          c.misalign_base = true;
          if (s.M * s.N <= 37 * 129) check_gemm(dtype, c);
        }
}

TEST(CudaGemm, AlphaAndBeta) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (float beta : {1.0f, 0.5f})
      for (bool aligned : {true, false}) {
        GemmCase c;
        c.M = 129, c.N = 257, c.K = 37, c.alpha = -0.5f, c.beta = beta, c.aligned = aligned;
        for (bool ta : {false, true})
          for (bool tb : {false, true}) {
            c.ta = ta, c.tb = tb;
            check_gemm(dtype, c);
          }
      }
}

TEST(CudaGemm, Batched) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (bool shared_b : {false, true})
      for (bool aligned : {true, false}) {
        GemmCase c;
        c.M = 37, c.N = 129, c.K = 40, c.batch = 3, c.shared_b = shared_b, c.aligned = aligned, c.beta = 1.0f;
        c.ta = true;
        check_gemm(dtype, c);
        c.ta = false, c.tb = true, c.beta = 0.0f, c.bias = true, c.gelu = true, c.pre = true;
        check_gemm(dtype, c);
      }
}

// More items than gridDim.z allows (65535: blocks loop over items), and more than one band of
// 8 tile rows in the grouped tile order (M = 1100: 9 tile rows, the second band partial).
TEST(CudaGemm, GridLimits) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    GemmCase c;
    c.M = 2, c.N = 3, c.K = 5, c.batch = 65537;
    check_gemm(dtype, c);
    c = GemmCase();
    c.M = 1100, c.N = 130, c.K = 24, c.bias = true;
    check_gemm(dtype, c);
  }
}

// Each epilogue alone and together, on the Linear layout (B = weight (N, K), transposed).
TEST(CudaGemm, Epilogues) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (bool aligned : {true, false}) {
      GemmCase base;
      base.M = 257, base.N = 129, base.K = 37, base.tb = true, base.aligned = aligned;
      GemmCase c = base;
      c.bias = true;
      check_gemm(dtype, c);  // the plain Linear
      c.gelu = true;
      check_gemm(dtype, c);  // GELU without keeping the pre-activation
      c.pre = true;
      check_gemm(dtype, c);  // linear_gelu's forward
      c = base;
      c.gelu = true, c.pre = true;
      check_gemm(dtype, c);  // GELU, no bias
      c = base;
      c.bias = true, c.residual = true;
      check_gemm(dtype, c);  // linear_residual's forward
      c.residual_is_c = true;
      check_gemm(dtype, c);  // the residual read from C itself, in place
      c = base;
      c.bias = true, c.gelu = true, c.pre = true, c.residual = true, c.beta = 1.0f, c.alpha = 0.75f;
      check_gemm(dtype, c);  // everything at once
    }
}

TEST(CudaGemm, EmptyKAndZeroAlphaNeverReadOperands) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    // K == 0 with null A, B: C = beta * C + bias; beta == 0 gives the bias rows over NaN.
    Tensor c = test::poisoned({5, 7}, dtype);
    Generator gen(3);
    Tensor bias_host = test::rounded_randn({7}, gen, dtype);
    Tensor bias = test::to_device(bias_host, dtype);
    launch_gemm(dtype, false, false, 5, 7, 0, 1.0f, nullptr, 1, nullptr, 7, 0.0f, c.data_raw(), 7, 1, 0, 0, 0,
                bias.data_raw(), false, nullptr, nullptr);
    std::vector<float> got = c.to_vector(), b = bias_host.to_vector();
    for (int64_t i = 0; i < 35; i++) EXPECT_EQ(got[i], b[i % 7]) << dtype_name(dtype) << " element " << i;
    // alpha == 0 with null A, B and K > 0 scales C only.
    Tensor d = Tensor::full({5, 7}, 2.0f, dtype, test::gpu());
    launch_gemm(dtype, true, true, 5, 7, 9, 0.0f, nullptr, 5, nullptr, 9, 0.5f, d.data_raw(), 7, 1, 0, 0, 0,
                nullptr, false, nullptr, nullptr);
    for (float v : d.to_vector()) EXPECT_EQ(v, 1.0f) << dtype_name(dtype);
    // Through the front: a contiguous x (5, 0) has row stride 0, which is not a leading dimension
    // below K = 0 (nothing is read): out = the bias rows, as on the CPU.
    Tensor x = Tensor::empty({5, 0}, dtype, test::gpu()), w = Tensor::empty({7, 0}, dtype, test::gpu());
    Tensor y = test::poisoned({5, 7}, dtype);
    ops::linear(y, x, w, bias);
    got = y.to_vector();
    for (int64_t i = 0; i < 35; i++) EXPECT_EQ(got[i], b[i % 7]) << dtype_name(dtype) << " linear element " << i;
  }
}

TEST(CudaGemm, RunsAreBitwiseIdentical) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    Generator gen(4);
    Tensor a = test::to_device(test::rounded_randn({300, 257}, gen, dtype), dtype);
    Tensor w = test::to_device(test::rounded_randn({129, 257}, gen, dtype), dtype);
    Tensor b = test::to_device(test::rounded_randn({129}, gen, dtype), dtype);
    Tensor first = Tensor::empty({300, 129}, dtype, test::gpu()), second = Tensor::empty({300, 129}, dtype, test::gpu());
    ops::linear(first, a, w, b);
    ops::linear(second, a, w, b);
    std::vector<float> x = first.to_vector(), y = second.to_vector();
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << dtype_name(dtype);
  }
}

// ---- bias helpers ------------------------------------------------------------------------------

TEST(CudaGemm, BroadcastRowsAndColumnSums) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    SCOPED_TRACE(dtype_name(dtype));
    Generator gen(5);
    for (const Size& s : {Size{1, 1, 0}, Size{7, 37, 0}, Size{1000, 129, 0}, Size{5000, 3, 0}}) {
      const int64_t M = s.M, N = s.N;
      Tensor bias_host = test::rounded_randn({N}, gen, dtype);
      Tensor out = test::poisoned({M, N}, dtype);
      Tensor bias = test::to_device(bias_host, dtype);
      ops::broadcast_rows(out, bias);
      std::vector<float> got = out.to_vector(), b = bias_host.to_vector();
      for (int64_t i = 0; i < M * N; i++) ASSERT_EQ(got[i], b[i % N]) << "broadcast_rows element " << i;

      // dbias starts random: the kernel must add (+=). The f32 sums of M values differ from the
      // CPU's by at most M u sum|x| each; the one rounding into the dtype adds R |result|.
      Tensor dout_host = test::rounded_randn({M, N}, gen, dtype);
      Tensor dbias_host = test::rounded_randn({N}, gen, dtype);
      Tensor dout = test::to_device(dout_host, dtype), dbias = test::to_device(dbias_host, dtype);
      Tensor dbias2 = test::to_device(dbias_host, dtype);
      ops::column_sums_accumulate(dbias, dout);
      ops::column_sums_accumulate(dbias2, dout);
      std::vector<float> x = dbias.to_vector(), y = dbias2.to_vector();
      EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << "deterministic";
      std::vector<float> dv = dout_host.to_vector(), start = dbias_host.to_vector();
      for (int64_t j = 0; j < N; j++) {
        double sum = start[j], magnitude = std::fabs(start[j]);
        for (int64_t i = 0; i < M; i++) {
          sum += dv[i * N + j];
          magnitude += std::fabs(dv[i * N + j]);
        }
        const double bound = (M + 2) * kU32 * magnitude + unit_roundoff(dtype) * std::fabs(sum);
        EXPECT_NEAR(x[j], sum, bound) << "column " << j << " of " << M << "x" << N;
      }
    }
  }
}

// ---- the Tensor fronts ---------------------------------------------------------------------------

TEST(CudaGemm, MatmulFrontTransposedViewsAndBatches) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    SCOPED_TRACE(dtype_name(dtype));
    Generator gen(6);
    const int64_t Bt = 3, M = 37, N = 24, K = 129;
    Tensor a = test::rounded_randn({Bt, K, M}, gen, dtype);  // used as its transposed view (Bt, M, K)
    Tensor b = test::rounded_randn({K, N}, gen, dtype);      // shared by every item
    Tensor ref = Tensor::empty({Bt, M, N});
    ops::matmul(ref, a.transpose(1, 2), b);
    Tensor out = test::poisoned({Bt, M, N}, dtype);
    ops::matmul(out, test::to_device(a, dtype).transpose(1, 2), test::to_device(b, dtype));
    // One rounding of each output: rel error < R, plus f32 accumulation slack (K u ~ 1e-5).
    EXPECT_LT(test::rel_error(out, ref), dtype == DType::F32 ? 1e-5 : 1.1 * unit_roundoff(dtype));
    // Element by element, the bound of the launcher tests: 2 (K + 8) u_acc sum_k |a_ik b_kj| for
    // the two sides' accumulations, then the output's rounding, R (|ref| + d).
    auto abs_of = [](const Tensor& t) {
      std::vector<float> v = t.to_vector();
      for (float& e : v) e = std::fabs(e);
      return Tensor::from_vector(v, t.shape());
    };
    Tensor mag = Tensor::empty({Bt, M, N});  // f32 sums of positive terms: within K u, the (1 + ...) below
    ops::matmul(mag, abs_of(a).transpose(1, 2), abs_of(b));
    const std::vector<float> m = mag.to_vector(), r = ref.to_vector();
    const double R = dtype == DType::F32 ? 0.0 : unit_roundoff(dtype);
    std::vector<double> bounds(r.size());
    for (size_t i = 0; i < r.size(); i++) {
      const double d = 2 * (K + 8) * accumulation_roundoff(dtype) * m[i] * (1 + 4 * kU32 * (K + 8));
      bounds[i] = d + R * (std::fabs(r[i]) + d) + test::subnormal_half_spacing(dtype);
    }
    EXPECT_TRUE(test::elementwise_close(out, ref, bounds));
  }
}

// ---- linear, linear_gelu, linear_residual: GPU against CPU, forward and backward ------------------

namespace {

struct LinearRun {
  std::vector<float> y, dx, dw, db, dr;
};

// Runs `which` (0 linear, 1 linear_gelu, 2 linear_residual) on rounded inputs on `device` in
// `dtype`, backward with a fixed random dy; returns the output and the gradients as f32.
LinearRun run_linear(int which, Device device, DType dtype, const Shape& x_shape, int64_t OUT) {
  Generator gen(77);
  const int64_t IN = x_shape.back();
  Shape y_shape = x_shape;
  y_shape.back() = OUT;
  Tensor xs = test::rounded_randn(x_shape, gen, dtype), ws = test::rounded_randn({OUT, IN}, gen, dtype, 0.2f);
  Tensor bs = test::rounded_randn({OUT}, gen, dtype), rs = test::rounded_randn(y_shape, gen, dtype);
  Tensor dys = test::rounded_randn(y_shape, gen, dtype);
  auto place = [&](const Tensor& t) {
    Tensor p = device.is_cuda() ? test::to_device(t, dtype) : t.clone();
    return p.requires_grad_(true);
  };
  Tensor x = place(xs), w = place(ws), b = place(bs), r = place(rs);
  Tensor dy = device.is_cuda() ? test::to_device(dys, dtype) : dys.clone();
  Tensor y = which == 0 ? linear(x, w, b) : which == 1 ? linear_gelu(x, w, b) : linear_residual(x, w, b, r);
  backward(y, dy);
  LinearRun run;
  run.y = y.to_vector();
  run.dx = x.grad().to_vector();
  run.dw = w.grad().to_vector();
  run.db = b.grad().to_vector();
  if (which == 2) run.dr = r.grad().to_vector();
  return run;
}

// Per-element bounds for run_linear's outputs, from the same inputs (drawn again in run_linear's
// order) in double: with u_acc the accumulation roundoff and R the dtype's (f32: 0),
//   y:       2 (IN + 8) u_acc sum |x w| + |b| (+ |r|), times gelu' <= 1.13 for linear_gelu, whose
//            pre-activation may also round the other way on the two sides: 2.3 R |u| (f32: expf's
//            128 u |y| + 4 u |u|, as in the launcher test);
//   dx, dw, db: GEMMs (or the column sum) of length OUT or rows over g = |dy| (linear_gelu:
//            (1.13 + 1.2 |u|) |dy|, gelu' and a flip of u's rounding through |gelu''| <= 0.6), each
//            2 (K + 8) u_acc of its magnitude; linear_gelu's du is also rounded (R) and may see u
//            rounded the other way: R of the magnitude (f32: gelu' differs by up to ~700 u of it).
// Then the output's rounding R (|ref| + d) and the subnormal half-spacing.
struct LinearBounds {
  std::vector<double> y, dx, dw, db;
};

LinearBounds linear_bounds(int which, DType dtype, const Shape& x_shape, int64_t OUT, const LinearRun& ref) {
  Generator gen(77);
  const int64_t IN = x_shape.back(), rows = shape_numel(x_shape) / IN;
  Shape y_shape = x_shape;
  y_shape.back() = OUT;
  const std::vector<float> x = test::rounded_randn(x_shape, gen, dtype).to_vector();
  const std::vector<float> w = test::rounded_randn({OUT, IN}, gen, dtype, 0.2f).to_vector();
  const std::vector<float> b = test::rounded_randn({OUT}, gen, dtype).to_vector();
  const std::vector<float> r = test::rounded_randn(y_shape, gen, dtype).to_vector();
  const std::vector<float> dy = test::rounded_randn(y_shape, gen, dtype).to_vector();
  const double R = dtype == DType::F32 ? 0.0 : unit_roundoff(dtype), acc = accumulation_roundoff(dtype);
  const bool gelu = which == 1, f32 = dtype == DType::F32;
  auto finish = [&](double d, float value) {
    return d + R * (std::fabs(static_cast<double>(value)) + d) + test::subnormal_half_spacing(dtype);
  };
  LinearBounds out;
  std::vector<double> g(static_cast<size_t>(rows * OUT));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t o = 0; o < OUT; o++) {
      double u = b[o], mag = std::fabs(b[o]);
      for (int64_t k = 0; k < IN; k++) {
        u += static_cast<double>(x[i * IN + k]) * w[o * IN + k];
        mag += std::fabs(static_cast<double>(x[i * IN + k]) * w[o * IN + k]);
      }
      const size_t at = static_cast<size_t>(i * OUT + o);
      if (which == 2) mag += std::fabs(r[at]);
      double d = 2 * (IN + 8) * acc * mag;
      if (gelu) {
        const double y = ref.y[at];
        d = 1.13 * d + (f32 ? 128 * kU32 * std::fabs(y) + 4 * kU32 * std::fabs(u) : 2.3 * R * std::fabs(u));
      }
      out.y.push_back(finish(d, ref.y[at]));
      g[at] = (gelu ? 1.13 + 1.2 * std::fabs(u) : 1.0) * std::fabs(dy[at]);
    }
  const double extra = gelu ? (f32 ? 700 * kU32 : R) : 0.0;
  for (int64_t i = 0; i < rows; i++)
    for (int64_t k = 0; k < IN; k++) {
      double mag = 0;
      for (int64_t o = 0; o < OUT; o++) mag += g[static_cast<size_t>(i * OUT + o)] * std::fabs(w[o * IN + k]);
      out.dx.push_back(finish((2 * (OUT + 8) * acc + extra) * mag, ref.dx[static_cast<size_t>(i * IN + k)]));
    }
  for (int64_t o = 0; o < OUT; o++)
    for (int64_t k = 0; k < IN; k++) {
      double mag = 0;
      for (int64_t i = 0; i < rows; i++) mag += g[static_cast<size_t>(i * OUT + o)] * std::fabs(x[i * IN + k]);
      out.dw.push_back(finish((2 * (rows + 8) * acc + extra) * mag, ref.dw[static_cast<size_t>(o * IN + k)]));
    }
  for (int64_t o = 0; o < OUT; o++) {
    double mag = 0;
    for (int64_t i = 0; i < rows; i++) mag += g[static_cast<size_t>(i * OUT + o)];
    out.db.push_back(finish((2 * (rows + 8) * acc + extra) * mag, ref.db[static_cast<size_t>(o)]));
  }
  return out;
}

// Every element of got within its bound of want.
::testing::AssertionResult within(const std::vector<float>& got, const std::vector<float>& want,
                                  const std::vector<double>& bounds) {
  return test::elementwise_verdict(test::compare_elementwise(got, want, bounds), "their bounds");
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  if (got.size() != want.size()) return kNaN;
  for (size_t i = 0; i < got.size(); i++) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

// Tolerances (R as at the top; f32: 1e-5 for the accumulation order over K, rows <= 2*37*... terms):
//   linear, linear_residual forward: one rounding -> 1.1 R.
//   linear_gelu forward: the pre-activation u is rounded (R |u|, times |gelu'| <= 1.13), then the
//     output (R |y|): normwise R (1 + 1.13 ||u|| / ||y||); ||u|| / ||y|| is measured from the CPU
//     run (via linear) rather than assumed.
//   gradients: dy is exact; linear and linear_residual round each gradient once (1.1 R);
//     linear_gelu's go through u (R, through gelu'' |u| <= 0.6), du rounded (R), the gradient
//     GEMM's output (R): 3 roundings -> 3.5 R. dresidual = dy exactly.
TEST(CudaLinear, ForwardAndBackwardMatchCpu) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (int which : {0, 1, 2})
      for (const Shape& x_shape : {Shape{37, 24}, Shape{2, 129, 40}}) {
        const int64_t OUT = x_shape.size() == 2 ? 37 : 96;
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " fn " + std::to_string(which) + " x " + shape_str(x_shape));
        LinearRun cpu = run_linear(which, Device::cpu(), dtype, x_shape, OUT);
        LinearRun gpu = run_linear(which, test::gpu(), dtype, x_shape, OUT);
        const double R = unit_roundoff(dtype);
        double forward_tol = 1.1 * R, backward_tol = 1.1 * R;
        if (which == 1) {
          LinearRun pre = run_linear(0, Device::cpu(), dtype, x_shape, OUT);
          double u2 = 0, y2 = 0;
          for (size_t i = 0; i < pre.y.size(); i++) u2 += double(pre.y[i]) * pre.y[i], y2 += double(cpu.y[i]) * cpu.y[i];
          forward_tol = R * (1.0 + 1.13 * std::sqrt(u2 / y2)) + 0.1 * R;
          backward_tol = 3.5 * R;
        }
        if (dtype == DType::F32) forward_tol = backward_tol = 1e-5;
        EXPECT_LT(rel_error(gpu.y, cpu.y), forward_tol) << "y";
        EXPECT_LT(rel_error(gpu.dx, cpu.dx), backward_tol) << "dx";
        EXPECT_LT(rel_error(gpu.dw, cpu.dw), backward_tol) << "dw";
        EXPECT_LT(rel_error(gpu.db, cpu.db), backward_tol) << "db";
        const LinearBounds bounds = linear_bounds(which, dtype, x_shape, OUT, cpu);
        EXPECT_TRUE(within(gpu.y, cpu.y, bounds.y)) << "y";
        EXPECT_TRUE(within(gpu.dx, cpu.dx, bounds.dx)) << "dx";
        EXPECT_TRUE(within(gpu.dw, cpu.dw, bounds.dw)) << "dw";
        EXPECT_TRUE(within(gpu.db, cpu.db, bounds.db)) << "db";
        if (which == 2) {
          EXPECT_EQ(gpu.dr, cpu.dr) << "dresidual = dy exactly";
        }
      }
}

// ---- CPU: the new differentiable functions and the dtype errors (run everywhere) ---------------

namespace {
Tensor randn_grad(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, &gen).requires_grad_(true);
}
}  // namespace

TEST(LinearGelu, GradCheck) {
  auto with_bias = [](const std::vector<Tensor>& x) { return linear_gelu(x[0], x[1], x[2]); };
  auto without_bias = [](const std::vector<Tensor>& x) { return linear_gelu(x[0], x[1], Tensor()); };
  EXPECT_EQ(gradcheck(with_bias, {randn_grad({5, 7}, 1), randn_grad({3, 7}, 2), randn_grad({3}, 3)}), "");
  EXPECT_EQ(gradcheck(with_bias, {randn_grad({2, 3, 5}, 4), randn_grad({7, 5}, 5), randn_grad({7}, 6)}), "");
  EXPECT_EQ(gradcheck(without_bias, {randn_grad({4, 3}, 7), randn_grad({5, 3}, 8)}), "");
}

TEST(LinearResidual, GradCheck) {
  auto with_bias = [](const std::vector<Tensor>& x) { return linear_residual(x[0], x[1], x[2], x[3]); };
  auto without_bias = [](const std::vector<Tensor>& x) { return linear_residual(x[0], x[1], Tensor(), x[2]); };
  EXPECT_EQ(gradcheck(with_bias, {randn_grad({5, 7}, 11), randn_grad({3, 7}, 12), randn_grad({3}, 13),
                                  randn_grad({5, 3}, 14)}),
            "");
  EXPECT_EQ(gradcheck(with_bias, {randn_grad({2, 3, 5}, 15), randn_grad({7, 5}, 16), randn_grad({7}, 17),
                                  randn_grad({2, 3, 7}, 18)}),
            "");
  EXPECT_EQ(gradcheck(without_bias, {randn_grad({4, 3}, 19), randn_grad({5, 3}, 20), randn_grad({4, 5}, 21)}), "");
}

// The fused functions are the compositions they replace: same values, same gradients, on the CPU
// bit for bit (the same kernels run in the same order).
TEST(LinearGelu, EqualsGeluOfLinear) {
  Tensor x = randn_grad({2, 5, 7}, 31), w = randn_grad({9, 7}, 32), b = randn_grad({9}, 33);
  Tensor x2 = x.detach().clone().requires_grad_(true), w2 = w.detach().clone().requires_grad_(true),
         b2 = b.detach().clone().requires_grad_(true);
  Generator gen(34);
  Tensor seed = Tensor::randn({2, 5, 9}, &gen);
  Tensor fused = linear_gelu(x, w, b), composed = gelu(linear(x2, w2, b2));
  EXPECT_EQ(fused.to_vector(), composed.to_vector());
  backward(fused, seed);
  backward(composed, seed);
  EXPECT_EQ(x.grad().to_vector(), x2.grad().to_vector());
  EXPECT_EQ(w.grad().to_vector(), w2.grad().to_vector());
  EXPECT_EQ(b.grad().to_vector(), b2.grad().to_vector());
}

TEST(LinearResidual, EqualsResidualPlusLinear) {
  Tensor x = randn_grad({2, 5, 7}, 41), w = randn_grad({9, 7}, 42), b = randn_grad({9}, 43), r = randn_grad({2, 5, 9}, 44);
  Tensor x2 = x.detach().clone().requires_grad_(true), w2 = w.detach().clone().requires_grad_(true),
         b2 = b.detach().clone().requires_grad_(true), r2 = r.detach().clone().requires_grad_(true);
  Generator gen(45);
  Tensor seed = Tensor::randn({2, 5, 9}, &gen);
  Tensor fused = linear_residual(x, w, b, r), composed = add(r2, linear(x2, w2, b2));
  EXPECT_EQ(fused.to_vector(), composed.to_vector());
  backward(fused, seed);
  backward(composed, seed);
  EXPECT_EQ(x.grad().to_vector(), x2.grad().to_vector());
  EXPECT_EQ(w.grad().to_vector(), w2.grad().to_vector());
  EXPECT_EQ(b.grad().to_vector(), b2.grad().to_vector());
  EXPECT_EQ(r.grad().to_vector(), r2.grad().to_vector());
}

TEST(LinearResidual, BadShapesNameTheOpAndShapes) {
  EXPECT_ERROR_MENTIONS(linear_residual(Tensor::zeros({4, 5}), Tensor::zeros({3, 5}), Tensor(), Tensor::zeros({4, 4})),
                        "linear_residual", "residual", "(4, 4)", "(4, 3)");
  EXPECT_ERROR_MENTIONS(linear_gelu(Tensor::zeros({4, 5}), Tensor::zeros({3, 6}), Tensor()), "linear_gelu", "(4, 5)",
                        "(3, 6)");
}

// bf16 and f16 run on the CPU too (tests/test_gemm_half.cpp); mixed dtypes name the odd one out.
TEST(GemmFront, MixedDtypesNameTheOddOneOut) {
  Tensor x32 = Tensor::zeros({3, 5}), y32 = Tensor::zeros({3, 2});
  EXPECT_ERROR_MENTIONS(ops::linear(y32, x32, Tensor::zeros({2, 5}, DType::BF16), Tensor()), "linear", "weight", "bf16");
}

TEST(GemmFront, LinearEpilogueOnTheCpuMatchesSeparatePasses) {
  Generator gen(51);
  const int64_t M = 7, IN = 5, OUT = 9;
  Tensor x = Tensor::randn({M, IN}, &gen), w = Tensor::randn({OUT, IN}, &gen), b = Tensor::randn({OUT}, &gen);
  Tensor r = Tensor::randn({M, OUT}, &gen);
  Tensor plain = Tensor::empty({M, OUT});
  ops::linear(plain, x, w, b);
  std::vector<float> v = plain.to_vector(), rv = r.to_vector();
  ops::LinearEpilogue e;
  e.gelu = true;
  e.pre_gelu = Tensor::full({M, OUT}, kNaN);
  e.residual = r;
  Tensor out = Tensor::full({M, OUT}, kNaN);
  ops::linear(out, x, w, b, e);
  std::vector<float> got = out.to_vector(), pre = e.pre_gelu.to_vector();
  for (size_t i = 0; i < v.size(); i++) {
    EXPECT_EQ(pre[i], v[i]) << i;
    EXPECT_NEAR(got[i], gelu_ref(v[i]) + rv[i], 1e-5 * (1 + std::fabs(got[i]))) << i;
  }
  // The residual may be out itself: out = out + x W^T + b.
  Tensor in_place = r.clone();
  ops::LinearEpilogue add_in_place;
  add_in_place.residual = in_place;
  ops::linear(in_place, x, w, b, add_in_place);
  std::vector<float> summed = in_place.to_vector();
  for (size_t i = 0; i < v.size(); i++) EXPECT_EQ(summed[i], v[i] + rv[i]) << i;
}
