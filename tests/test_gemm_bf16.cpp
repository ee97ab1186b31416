// bf16 GEMM (tg::cpu::gemm_bf16): both paths, the AVX512_BF16 kernel and the f32 one, against a
// double-precision reference computed from the same bf16 inputs, on awkward shapes (M, N, K off the
// 14 x 32 tile and the cache blocks, odd K so the k pairing pads), every transpose, padded leading
// dimensions, batches, alpha/beta, f32 and bf16 output; the rounding of a bf16 C; the path choice.
// The native-path tests skip on a CPU without AVX512_BF16.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "ops/cpu/gemm_bf16.h"
#include "tensor/dtype.h"
#include "tensor/random.h"

using namespace tg;

namespace {

constexpr double kU32 = 5.96e-8;     // 2^-24, f32 unit roundoff
constexpr double kU16 = 1.0 / 256;  // 2^-8, bf16 unit roundoff (8 significand bits)
constexpr uint16_t kNaNBits = 0x7fc0, kSentinelBits = 0x4640;  // bf16 NaN; 12288, marks padding
constexpr float kSentinel = 12345.0f;

// Runs the tests of a suite on one path, and returns to the CPU's choice afterwards.
class PathScope {
 public:
  explicit PathScope(cpu::GemmBf16Path path) { cpu::force_gemm_bf16_f32_path(path == cpu::GemmBf16Path::F32); }
  ~PathScope() { cpu::force_gemm_bf16_f32_path(false); }
};

std::vector<uint16_t> random_bf16(size_t n, Generator& gen) {
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = f32_to_bf16(gen.normal());
  return v;
}

// op(X)(i, j) for X stored row-major with leading dimension ld (plus an item offset).
double element(const std::vector<uint16_t>& x, size_t offset, bool trans, int64_t ld, int64_t i, int64_t j) {
  return bf16_to_f32(x[offset + (trans ? j * ld + i : i * ld + j)]);
}

struct Case {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha = 1.0f, beta = 0.0f;
  bool out_bf16 = false;
  int64_t pad = 0;     // extra elements per row of A, B and C
  int64_t batch = 0;   // 0: the plain call; >= 1: gemm_bf16_batched
  bool share_b = false;  // batched with stride_b = 0
};

std::string describe(const Case& c, cpu::GemmBf16Path path) {
  return std::string(cpu::gemm_bf16_path_name(path)) + " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
         " K=" + std::to_string(c.K) + " trans_a=" + std::to_string(c.trans_a) + " trans_b=" +
         std::to_string(c.trans_b) + " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " out=" + (c.out_bf16 ? "bf16" : "f32") + " pad=" + std::to_string(c.pad) + " batch=" +
         std::to_string(c.batch) + (c.share_b ? " shared B" : "");
}

// Runs one case on the path now chosen and checks every element of C, and that the padding
// around C is untouched.
//
// Tolerance, element-wise: each bf16 x bf16 product is exact in f32 and every product is added to
// an f32 sum with one rounding, so the f32 result is within n * u32 * (|alpha| sum_k |a_ik b_kj| +
// |beta c_ij|) of the exact value, n counting the roundings on the longest path: K additions, the
// alpha scaling and the beta add, and one add per K block for the partial sums of blocked K
// (K / 512 + 1 covers any block of 512 or more). A bf16 C adds one rounding of the computed
// value v: |round(v) - v| <= u16 |v| <= u16 (|exact| + err). Both stay far below one product term
// (|a b| ~ 0.6) at the K used here, so a dropped, doubled or misplaced k term fails.
void check(const Case& c) {
  const cpu::GemmBf16Path path = cpu::gemm_bf16_path();
  const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  const int64_t items = c.batch ? c.batch : 1;
  const int64_t stride_a = a_rows * lda, stride_b = c.share_b ? 0 : b_rows * ldb, stride_c = c.M * ldc;
  Generator gen(1234);
  const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(std::max<int64_t>(items * stride_a, 1)), gen);
  const std::vector<uint16_t> B =
      random_bf16(static_cast<size_t>(std::max<int64_t>(c.share_b ? b_rows * ldb : items * stride_b, 1)), gen);
  // C starts random (beta != 0 reads it), NaN where beta == 0 (must not be read), sentinel padding.
  std::vector<uint16_t> C16 = random_bf16(static_cast<size_t>(items * stride_c), gen);
  std::vector<float> C32(C16.size());
  for (int64_t t = 0; t < items; t++)
    for (int64_t i = 0; i < c.M; i++)
      for (int64_t j = 0; j < ldc; j++) {
        uint16_t& bits = C16[t * stride_c + i * ldc + j];
        if (j >= c.N) bits = kSentinelBits;
        else if (c.beta == 0.0f) bits = kNaNBits;
        C32[t * stride_c + i * ldc + j] = j >= c.N ? kSentinel : bf16_to_f32(bits);
      }
  const std::vector<uint16_t> C16_0 = C16;
  const std::vector<float> C32_0 = C32;

  if (c.batch == 0 && c.out_bf16)
    cpu::gemm_bf16(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C16.data(), ldc);
  else if (c.batch == 0)
    cpu::gemm_bf16(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C32.data(), ldc);
  else if (c.out_bf16)
    cpu::gemm_bf16_batched(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
                           C16.data(), ldc, c.batch, stride_a, stride_b, stride_c);
  else
    cpu::gemm_bf16_batched(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
                           C32.data(), ldc, c.batch, stride_a, stride_b, stride_c);

  const double roundings = static_cast<double>(c.K) + static_cast<double>(c.K / 512 + 1) + 4;
  int failures = 0;
  for (int64_t t = 0; t < items && failures < 5; t++)
    for (int64_t i = 0; i < c.M && failures < 5; i++)
      for (int64_t j = 0; j < ldc; j++) {
        const size_t at = static_cast<size_t>(t * stride_c + i * ldc + j);
        const double got = c.out_bf16 ? bf16_to_f32(C16[at]) : C32[at];
        if (j >= c.N) {
          if (c.out_bf16 ? C16[at] != kSentinelBits : C32[at] != kSentinel) {
            ADD_FAILURE() << describe(c, path) << ": wrote into the padding of item " << t << " row " << i;
            ++failures;
          }
          continue;
        }
        double sum = 0, magnitude = 0;
        for (int64_t k = 0; k < c.K; k++) {
          const double term = element(A, t * stride_a, c.trans_a, lda, i, k) *
                              element(B, t * stride_b, c.trans_b, ldb, k, j);
          sum += term;
          magnitude += std::fabs(term);
        }
        const double old = c.beta == 0.0f ? 0.0 : (c.out_bf16 ? bf16_to_f32(C16_0[at]) : C32_0[at]);
        const double expected = c.alpha * sum + c.beta * old;
        double tolerance = roundings * kU32 * (std::fabs(c.alpha) * magnitude + std::fabs(c.beta * old));
        if (c.out_bf16) tolerance = tolerance * (1 + kU16) + kU16 * std::fabs(expected);
        if (!(std::fabs(got - expected) <= tolerance + 1e-30)) {
          ADD_FAILURE() << describe(c, path) << ": item " << t << " C(" << i << ", " << j << ") = " << got
                        << ", expected " << expected << " (tolerance " << tolerance << ")";
          if (++failures >= 5) break;
        }
      }
}

// Every transpose, both outputs, of one shape.
void check_layouts(Case c) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool out_bf16 : {false, true}) {
        c.trans_a = ta;
        c.trans_b = tb;
        c.out_bf16 = out_bf16;
        check(c);
      }
}

// The shapes both paths run: around the 14 x 32 register tile, odd K (a padded k pair), K past one
// 16-pair pack step, M past the 112-row A block, padded leading dimensions, alpha and beta.
void check_shapes() {
  for (int64_t s : {1, 2, 3, 13, 15, 17, 31, 33, 65}) check_layouts({false, false, s, s, s});
  check_layouts({false, false, 14, 32, 32});          // exactly one tile
  for (int64_t rows = 1; rows < 14; rows++) check_layouts({false, false, 28 + rows, 40, 9});  // bottom edges
  check_layouts({false, false, 29, 47, 35});          // one past two tiles down, odd K past 32
  check_layouts({false, false, 130, 70, 51, 1.0f, 0.0f, false, 3});  // A blocks, padded rows
  check_layouts({false, false, 7, 40, 9, -0.5f, 1.0f});  // accumulate into C
  check_layouts({false, false, 9, 18, 12, 2.0f, -1.5f, false, 5});
}

void check_batches() {
  for (bool out_bf16 : {false, true}) {
    // 3 items: each item uses every thread; 9 items: whole items per thread.
    check({false, true, 19, 21, 23, 1.0f, 0.0f, out_bf16, 1, 3});
    check({true, false, 17, 9, 33, 0.5f, 1.0f, out_bf16, 0, 9});
    check({false, false, 15, 34, 7, 1.0f, 0.0f, out_bf16, 0, 4, true});  // shared B (stride 0)
  }
}

// K past the 1536-element K block (partial sums: in C for f32, in the f32 scratch for bf16) and
// past two of them (a middle block adds onto the first), M past the 112-row A block, N past the
// 2048-column B panel.
void check_large_blocks() {
  for (bool out_bf16 : {false, true}) {
    check({false, true, 120, 40, 1601, 1.0f, 0.0f, out_bf16});
    check({true, true, 20, 20, 3203, 1.0f, 0.0f, out_bf16});
    check({true, false, 30, 33, 1601, 0.75f, 1.0f, out_bf16});
    check({false, false, 5, 2100, 7, 1.0f, 0.5f, out_bf16});
  }
}

bool skip_native() { return !cpu::cpu_has_avx512_bf16(); }

}  // namespace

TEST(GemmBf16Path, ChoiceFollowsTheCpuAndTheOverride) {
  cpu::force_gemm_bf16_f32_path(false);
  EXPECT_EQ(cpu::gemm_bf16_path(),
            cpu::cpu_has_avx512_bf16() ? cpu::GemmBf16Path::Avx512Bf16 : cpu::GemmBf16Path::F32);
  {
    PathScope scope(cpu::GemmBf16Path::F32);
    EXPECT_EQ(cpu::gemm_bf16_path(), cpu::GemmBf16Path::F32);
  }
  EXPECT_EQ(cpu::gemm_bf16_path() == cpu::GemmBf16Path::Avx512Bf16, cpu::cpu_has_avx512_bf16());
  EXPECT_STREQ(cpu::gemm_bf16_path_name(cpu::GemmBf16Path::Avx512Bf16), "avx512bf16");
  EXPECT_STREQ(cpu::gemm_bf16_path_name(cpu::GemmBf16Path::F32), "f32");
}

TEST(GemmBf16Native, ShapesTransposesAndOutputs) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
  check_shapes();
}

TEST(GemmBf16Native, Batches) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
  check_batches();
}

TEST(GemmBf16Native, LargeBlocks) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
  check_large_blocks();
}

// A right edge of at most a few columns takes the narrow kernel, which sums each element's k pairs
// in the same order with the same instruction as the 16-wide kernel: the columns past 64 of a
// 65-, 66- or 68-column C are, bit for bit, those of an 80-column C whose extra columns of B
// differ (the 16-wide kernel computes them there), with beta, both outputs, A stored either way,
// two A blocks and, at K = 1601, several K blocks (a bf16 C's partial sums).
TEST(GemmBf16Native, NarrowRightEdgeIsTheWideKernelBitForBit) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
  const int64_t M = 130, wide = 80;
  for (int64_t K : {37, 1601})
    for (int64_t N : {65, 66, 68})
      for (bool trans_a : {false, true})
        for (bool out_bf16 : {false, true}) {
          Generator gen(11);
          const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(M * K), gen);
          const std::vector<uint16_t> B_wide = random_bf16(static_cast<size_t>(K * wide), gen);
          const std::vector<uint16_t> C0 = random_bf16(static_cast<size_t>(M * wide), gen);
          std::vector<uint16_t> B(static_cast<size_t>(K * N));
          for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N; j++) B[k * N + j] = B_wide[k * wide + j];
          std::vector<uint16_t> C16(static_cast<size_t>(M * N)), C16_wide = C0;
          std::vector<float> C32(C16.size()), C32_wide(C0.size());
          for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < wide; j++) {
              C32_wide[i * wide + j] = bf16_to_f32(C0[i * wide + j]);
              if (j < N) C16[i * N + j] = C0[i * wide + j], C32[i * N + j] = bf16_to_f32(C0[i * wide + j]);
            }
          const int64_t lda = trans_a ? M : K;
          if (out_bf16) {
            cpu::gemm_bf16(trans_a, false, M, N, K, 0.5f, A.data(), lda, B.data(), N, -1.0f, C16.data(), N);
            cpu::gemm_bf16(trans_a, false, M, wide, K, 0.5f, A.data(), lda, B_wide.data(), wide, -1.0f,
                           C16_wide.data(), wide);
          } else {
            cpu::gemm_bf16(trans_a, false, M, N, K, 0.5f, A.data(), lda, B.data(), N, -1.0f, C32.data(), N);
            cpu::gemm_bf16(trans_a, false, M, wide, K, 0.5f, A.data(), lda, B_wide.data(), wide, -1.0f,
                           C32_wide.data(), wide);
          }
          for (int64_t i = 0; i < M; i++)
            for (int64_t j = 64; j < N; j++) {
              const bool same = out_bf16 ? C16[i * N + j] == C16_wide[i * wide + j]
                                         : std::memcmp(&C32[i * N + j], &C32_wide[i * wide + j], sizeof(float)) == 0;
              ASSERT_TRUE(same) << "K=" << K << " N=" << N << " trans_a=" << trans_a << " out "
                                << (out_bf16 ? "bf16" : "f32") << ": C(" << i << ", " << j << ")";
            }
        }
}

// A product of at most 112 rows (one A block: lm_head's weight gradient) reads the whole 32-column
// slivers of a stored (K,N) B directly instead of packing them, interleaving each k pair's rows in
// registers, in another column order that its epilogue undoes. Each element still meets the same
// pairs in the same order: the 65 rows are, bit for bit, the first 65 of a 315-row product (its
// blocks of over 112 rows pack B), with A stored either way, beta, both outputs, an odd K (a padded
// pair: packed), an even one, K = 3000 (two K blocks, a bf16 C's partial sums) and K = 5100 (split
// over K on two threads, for both products), N with whole slivers only (64), an 8-column edge (40)
// and a 1-column one (65).
TEST(GemmBf16Native, DirectBIsThePackedKernelBitForBit) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
  const int64_t M = 65, big = 315;
  for (int64_t K : {37, 38, 3000, 5100})
    for (int64_t N : {64, 40, 65})
      for (bool trans_a : {false, true})
        for (bool out_bf16 : {false, true}) {
          Generator gen(13);
          const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(big * K), gen);
          const std::vector<uint16_t> B = random_bf16(static_cast<size_t>(K * N), gen);
          const std::vector<uint16_t> C0 = random_bf16(static_cast<size_t>(big * N), gen);
          std::vector<uint16_t> C16_big = C0, C16(C0.begin(), C0.begin() + M * N);
          std::vector<float> C32_big(C0.size()), C32(static_cast<size_t>(M * N));
          for (size_t i = 0; i < C0.size(); i++) C32_big[i] = bf16_to_f32(C0[i]);
          for (size_t i = 0; i < C32.size(); i++) C32[i] = C32_big[i];
          ASSERT_EQ(cpu::gemm_bf16_splits_k(M, N, K, omp_get_max_threads()),
                    cpu::gemm_bf16_splits_k(big, N, K, omp_get_max_threads()))
              << "both products must sum K the same way, K=" << K;
          const int64_t lda = trans_a ? big : K;  // op(A)'s first 65 rows: the same storage
          if (out_bf16) {
            cpu::gemm_bf16(trans_a, false, M, N, K, 0.5f, A.data(), lda, B.data(), N, -1.0f, C16.data(), N);
            cpu::gemm_bf16(trans_a, false, big, N, K, 0.5f, A.data(), lda, B.data(), N, -1.0f, C16_big.data(), N);
          } else {
            cpu::gemm_bf16(trans_a, false, M, N, K, 0.5f, A.data(), lda, B.data(), N, -1.0f, C32.data(), N);
            cpu::gemm_bf16(trans_a, false, big, N, K, 0.5f, A.data(), lda, B.data(), N, -1.0f, C32_big.data(), N);
          }
          for (int64_t i = 0; i < M * N; i++) {
            const bool same = out_bf16 ? C16[i] == C16_big[i] : std::memcmp(&C32[i], &C32_big[i], sizeof(float)) == 0;
            ASSERT_TRUE(same) << "K=" << K << " N=" << N << " trans_a=" << trans_a << " out "
                              << (out_bf16 ? "bf16" : "f32") << ": C(" << i / N << ", " << i % N << ")";
          }
        }
}

TEST(GemmBf16F32Path, ShapesTransposesAndOutputs) {
  PathScope scope(cpu::GemmBf16Path::F32);
  check_shapes();
}

TEST(GemmBf16F32Path, Batches) {
  PathScope scope(cpu::GemmBf16Path::F32);
  check_batches();
}

TEST(GemmBf16F32Path, LargeBlocks) {
  PathScope scope(cpu::GemmBf16Path::F32);
  check_large_blocks();
}

// A bf16 C is the f32 value rounded once, to nearest even, exactly as tg::f32_to_bf16 rounds: K = 1
// makes each C element one exact product, chosen to land on ties, on infinity and on NaN.
TEST(GemmBf16Rounding, BothPathsRoundTheExactProductOnceToNearestEven) {
  const float inf = std::numeric_limits<float>::infinity();
  // Products: 1.0625^2 = 1.125 + 2^-8 (a tie, down to the even 1.125), (1 + 2^-7)(1.5) = 1.5 + 2^-7
  // + 2^-8 (a tie, up to the even 1.5 + 2^-6), 2^127 * 4 (f32 overflow: inf), inf * 0 (NaN),
  // -1.0625 * 1.0625 (the tie, negative), 1.25 * 1.25 (exact).
  const std::vector<float> a = {1.0625f, 1.0f + 1.0f / 128, 0x1p127f, inf, -1.0625f, 1.25f};
  const std::vector<float> b = {1.0625f, 1.5f, 4.0f, 0.0f, 1.0625f, 1.25f};
  const int64_t M = static_cast<int64_t>(a.size());
  std::vector<uint16_t> A(a.size());
  for (size_t i = 0; i < a.size(); i++) {
    A[i] = f32_to_bf16(a[i]);
    ASSERT_EQ(bf16_to_f32(A[i]), a[i]) << "input " << i << " must be a bf16 value";
    ASSERT_EQ(bf16_to_f32(f32_to_bf16(b[i])), b[i]) << "input " << i << " must be a bf16 value";
  }
  // A (M,1), B (1,N) with B's row b repeated: C (M,N), each element one exact f32 product (or its
  // overflow) rounded once, its diagonal the products above. N = 6 takes the kernel's 16-wide store,
  // 40 the 32-wide one (and a 16-wide edge), 66 the narrow right edge too.
  for (int64_t N : {6, 40, 66}) {
    std::vector<uint16_t> B(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; j++) B[j] = f32_to_bf16(b[j % M]);
    for (cpu::GemmBf16Path path : {cpu::GemmBf16Path::Avx512Bf16, cpu::GemmBf16Path::F32}) {
      if (path == cpu::GemmBf16Path::Avx512Bf16 && skip_native()) continue;
      PathScope scope(path);
      std::vector<uint16_t> C(static_cast<size_t>(M * N), kNaNBits);
      cpu::gemm_bf16(false, false, M, N, 1, 1.0f, A.data(), 1, B.data(), N, 0.0f, C.data(), N);
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          // The sum starts from +0, so a product of -0 (-1.0625 * 0) sums to +0.
          const uint16_t want = f32_to_bf16(0.0f + a[static_cast<size_t>(i)] * b[static_cast<size_t>(j % M)]);
          EXPECT_EQ(C[static_cast<size_t>(i * N + j)], want)
              << cpu::gemm_bf16_path_name(path) << " N=" << N << ": C(" << i << ", " << j
              << ") = " << bf16_to_f32(C[i * N + j]) << ", want " << bf16_to_f32(want);
        }
      EXPECT_EQ(C[0], 0x3f90) << "1.125";
      EXPECT_EQ(C[1 * N + 1], 0x3fc2) << "1.5 + 2^-6";
      EXPECT_EQ(C[2 * N + 2], 0x7f80) << "+inf";
      EXPECT_TRUE(std::isnan(bf16_to_f32(C[3 * N + 3])));
    }
  }
}

// A subnormal C: the kernel rounds a tile row with vcvtne2ps2bf16, which flushes subnormals, unless
// the row holds one. alpha = 2^-30 scales exact products of 2^-100 and near it into f32 subnormals
// (vdpbf16ps itself flushes only subnormal sums and inputs, which these are not), next to normal
// values in the same rows; every element must be f32_to_bf16 of alpha times its product.
TEST(GemmBf16Rounding, SubnormalResultsRoundAsTheScalarConverter) {
  const float alpha = 0x1p-30f;
  const std::vector<float> a = {0x1p-50f, -0x1.8p-50f, 1.0f};
  const std::vector<float> b = {0x1p-50f, 0x1.fp-50f, 0x1.08p-50f, 1.0f};  // 2^-100 x ... : subnormal once scaled
  const int64_t M = static_cast<int64_t>(a.size());
  std::vector<uint16_t> A(a.size());
  for (size_t i = 0; i < a.size(); i++) A[i] = f32_to_bf16(a[i]);
  for (int64_t N : {6, 40, 66}) {
    std::vector<uint16_t> B(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; j++) B[j] = f32_to_bf16(b[j % b.size()]);
    for (cpu::GemmBf16Path path : {cpu::GemmBf16Path::Avx512Bf16, cpu::GemmBf16Path::F32}) {
      if (path == cpu::GemmBf16Path::Avx512Bf16 && skip_native()) continue;
      PathScope scope(path);
      std::vector<uint16_t> C(static_cast<size_t>(M * N), kNaNBits);
      cpu::gemm_bf16(false, false, M, N, 1, alpha, A.data(), 1, B.data(), N, 0.0f, C.data(), N);
      int subnormals = 0;
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          const float product = bf16_to_f32(A[i]) * bf16_to_f32(B[j]);
          const float value = alpha * (0.0f + product);
          subnormals += std::fpclassify(value) == FP_SUBNORMAL;
          const uint16_t want = f32_to_bf16(value);
          EXPECT_EQ(C[static_cast<size_t>(i * N + j)], want)
              << cpu::gemm_bf16_path_name(path) << " N=" << N << ": C(" << i << ", " << j << ") = "
              << bf16_to_f32(C[i * N + j]) << ", want " << bf16_to_f32(want);
        }
      EXPECT_GT(subnormals, N) << "the case must hold subnormal results";
    }
  }
}

// With beta == 0 a bf16 C is, bit for bit, the f32 C of the same call rounded: the same sums, one
// rounding (also across K blocks, where the native bf16 C keeps its partial sums in f32 scratch).
// The last shape of each path is too big for the double reference but needs two bands of rows
// (448 rows of a 2048-column panel fill the native path's 4 MiB scratch of partial sums, 255 rows
// of 4100 columns the f32 path's 4 MiB copy of C) and two or more B panels, so compare it with
// the f32 C, which the reference tests check.
TEST(GemmBf16Paths, Bf16OutputIsTheF32OutputRoundedOnce) {
  struct Mnk {
    int64_t M, N, K;
  };
  for (cpu::GemmBf16Path path : {cpu::GemmBf16Path::Avx512Bf16, cpu::GemmBf16Path::F32}) {
    if (path == cpu::GemmBf16Path::Avx512Bf16 && skip_native()) continue;
    PathScope scope(path);
    const Mnk bands = path == cpu::GemmBf16Path::F32 ? Mnk{300, 4100, 33} : Mnk{449, 2050, 1601};
    for (const Mnk& shape : {Mnk{31, 45, 37}, Mnk{31, 45, 1601}, bands}) {
      const int64_t M = shape.M, N = shape.N, K = shape.K;
      Generator gen(7);
      const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(M * K), gen);
      const std::vector<uint16_t> B = random_bf16(static_cast<size_t>(N * K), gen);
      std::vector<float> C32(static_cast<size_t>(M * N));
      std::vector<uint16_t> C16(static_cast<size_t>(M * N));
      cpu::gemm_bf16(false, true, M, N, K, 0.5f, A.data(), K, B.data(), K, 0.0f, C32.data(), N);
      cpu::gemm_bf16(false, true, M, N, K, 0.5f, A.data(), K, B.data(), K, 0.0f, C16.data(), N);
      for (size_t i = 0; i < C32.size(); i++)
        ASSERT_EQ(C16[i], f32_to_bf16(C32[i]))
            << cpu::gemm_bf16_path_name(path) << " M=" << M << " N=" << N << " K=" << K << " element " << i;
    }
  }
}

// The two paths sum in different orders, so they agree within the sum of their two bounds.
TEST(GemmBf16Native, AgreesWithTheF32Path) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  const int64_t M = 37, N = 70, K = 301;
  Generator gen(99);
  const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(K * M), gen);
  const std::vector<uint16_t> B = random_bf16(static_cast<size_t>(K * N), gen);
  std::vector<float> native(static_cast<size_t>(M * N)), f32(native.size());
  {
    PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
    cpu::gemm_bf16(true, false, M, N, K, 1.0f, A.data(), M, B.data(), N, 0.0f, native.data(), N);
  }
  {
    PathScope scope(cpu::GemmBf16Path::F32);
    cpu::gemm_bf16(true, false, M, N, K, 1.0f, A.data(), M, B.data(), N, 0.0f, f32.data(), N);
  }
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double magnitude = 0;
      for (int64_t k = 0; k < K; k++)
        magnitude += std::fabs(static_cast<double>(bf16_to_f32(A[k * M + i])) * bf16_to_f32(B[k * N + j]));
      const double tolerance = 2 * (K + 4) * kU32 * magnitude;  // each path's bound, added
      ASSERT_NEAR(native[i * N + j], f32[i * N + j], tolerance) << "C(" << i << ", " << j << ")";
    }
}

// The native path splits a small C with a long K over the threads' shares of K and sums the f32
// parts in thread order (gemm_bf16_splits_k). The small preset's narrow weight gradients take it
// (attn_proj's and lm_head's, C at most 384 on a side against 16384 tokens); the wider ones, the
// forward and dx products, 2048^3 and one thread do not.
TEST(GemmBf16Native, KSplitChoice) {
  EXPECT_TRUE(cpu::gemm_bf16_splits_k(384, 384, 16384, 2));
  EXPECT_TRUE(cpu::gemm_bf16_splits_k(65, 384, 16384, 2));
  EXPECT_FALSE(cpu::gemm_bf16_splits_k(1536, 384, 16384, 2));
  EXPECT_FALSE(cpu::gemm_bf16_splits_k(384, 384, 16384, 1));
  EXPECT_FALSE(cpu::gemm_bf16_splits_k(16384, 384, 384, 2));
  EXPECT_FALSE(cpu::gemm_bf16_splits_k(16384, 384, 65, 2));
  EXPECT_FALSE(cpu::gemm_bf16_splits_k(2048, 2048, 2048, 2));
}

// Products split over K on 2 and 3 threads: every layout, odd K (the last part ends on a padded
// pair), shares of K that span several K blocks, alpha and beta, padded rows, f32 and bf16 C,
// against the double reference of check(): the split's longest rounding path, K / T additions
// in one part plus T - 1 in the sum, is shorter than the serial one the bound counts. The shapes
// are asserted to take the split, so a change of the choice cannot leave it untested. Two runs
// give the same bits, and with beta 0 a bf16 C is the f32 C rounded once.
TEST(GemmBf16Native, KSplitShapesTransposesAndOutputs) {
  if (skip_native()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  PathScope scope(cpu::GemmBf16Path::Avx512Bf16);
  const int saved = omp_get_max_threads();
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    const Case odd{false, false, 15, 33, 3 * 1536 + 5, 0.75f, 1.0f, false, 3};
    const Case narrow{false, false, 13, 19, 3 * 1536 + 3, 1.0f, 0.0f};
    for (const Case& c : {odd, narrow}) {
      ASSERT_TRUE(cpu::gemm_bf16_splits_k(c.M, c.N, c.K, threads)) << c.M << "x" << c.N << "x" << c.K;
      check_layouts(c);
    }
    const int64_t M = 21, N = 40, K = 2 * 1536 * threads + 1;
    ASSERT_TRUE(cpu::gemm_bf16_splits_k(M, N, K, threads));
    Generator gen(5);
    const std::vector<uint16_t> A = random_bf16(static_cast<size_t>(K * M), gen);
    const std::vector<uint16_t> B = random_bf16(static_cast<size_t>(K * N), gen);
    std::vector<float> first(static_cast<size_t>(M * N)), again(first.size());
    std::vector<uint16_t> rounded(first.size());
    cpu::gemm_bf16(true, false, M, N, K, 0.5f, A.data(), M, B.data(), N, 0.0f, first.data(), N);
    cpu::gemm_bf16(true, false, M, N, K, 0.5f, A.data(), M, B.data(), N, 0.0f, again.data(), N);
    cpu::gemm_bf16(true, false, M, N, K, 0.5f, A.data(), M, B.data(), N, 0.0f, rounded.data(), N);
    for (size_t i = 0; i < first.size(); i++) {
      ASSERT_EQ(std::memcmp(&first[i], &again[i], sizeof(float)), 0) << threads << " threads, element " << i;
      ASSERT_EQ(rounded[i], f32_to_bf16(first[i])) << threads << " threads, element " << i;
    }
  }
  omp_set_num_threads(saved);
}

// K == 0 and alpha == 0 give C = beta * C (zeros for beta == 0, even over NaN) without reading A
// or B; M == 0 or N == 0 touch nothing.
TEST(GemmBf16Degenerate, EmptyProductsScaleC) {
  for (cpu::GemmBf16Path path : {cpu::GemmBf16Path::Avx512Bf16, cpu::GemmBf16Path::F32}) {
    if (path == cpu::GemmBf16Path::Avx512Bf16 && skip_native()) continue;
    PathScope scope(path);
    const std::vector<uint16_t> nan_ab(16, kNaNBits);
    std::vector<float> c32 = {1.0f, std::nanf(""), 3.0f, 4.0f};
    cpu::gemm_bf16(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, c32.data(), 2);
    EXPECT_EQ(c32, (std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f})) << cpu::gemm_bf16_path_name(path);
    c32 = {1.0f, 2.0f, 3.0f, 4.0f};
    cpu::gemm_bf16(false, false, 2, 2, 3, 0.0f, nan_ab.data(), 3, nan_ab.data(), 2, 2.0f, c32.data(), 2);
    EXPECT_EQ(c32, (std::vector<float>{2.0f, 4.0f, 6.0f, 8.0f})) << cpu::gemm_bf16_path_name(path);
    std::vector<uint16_t> c16 = {f32_to_bf16(1.0f), kNaNBits, f32_to_bf16(3.0f), f32_to_bf16(1.0f / 3)};
    cpu::gemm_bf16(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, c16.data(), 2);
    EXPECT_EQ(c16, (std::vector<uint16_t>{0, 0, 0, 0})) << cpu::gemm_bf16_path_name(path);
    c16 = {f32_to_bf16(1.0f), f32_to_bf16(2.0f), f32_to_bf16(3.0f), f32_to_bf16(1.0f / 3)};
    cpu::gemm_bf16(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 3.0f, c16.data(), 2);
    EXPECT_EQ(c16, (std::vector<uint16_t>{f32_to_bf16(3.0f), f32_to_bf16(6.0f), f32_to_bf16(9.0f),
                                          f32_to_bf16(3.0f * bf16_to_f32(f32_to_bf16(1.0f / 3)))}))
        << cpu::gemm_bf16_path_name(path);
    c32 = {5.0f};
    cpu::gemm_bf16(false, false, 0, 1, 4, 1.0f, nullptr, 4, nullptr, 1, 0.0f, c32.data(), 1);
    cpu::gemm_bf16_batched(false, false, 1, 0, 4, 1.0f, nullptr, 4, nullptr, 1, 0.0f, c32.data(), 1, 3, 0, 0, 0);
    EXPECT_EQ(c32[0], 5.0f);
  }
}
