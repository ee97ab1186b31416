// The GEMM on a pre-packed B (cpu::PackedB, read in place through GemmPackB::packed) against the
// plain GEMM, bit for bit: the panels hold the very values pack() would write, and the loop nest
// and micro-kernel are the same, so any difference is a misplaced panel, a wrong K block or a
// stale sliver. Every shape runs at each instruction-set level; then a PackedB built at one level
// and used at another, and the Tensor fronts (ops::matmul / ops::linear with packed_b) with their
// errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "ops/cpu/gemm.h"
#include "ops/gemm.h"
#include "tests/cpu_isa_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

std::vector<float> random_vector(size_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> v(n);
  for (float& x : v) x = gen.normal();
  return v;
}

struct Shape3 {
  int64_t M, N, K;
};

// Shapes past every block of the loop nest: K past KC (768: two and three K blocks, the last
// shorter), N past NC (2048: a second column panel) and not a multiple of NR, M past MC and large
// enough for two threads, and the tiny ones where every tile is an edge tile.
const std::vector<Shape3> kShapes = {{1, 1, 1},     {3, 17, 5},     {17, 33, 65},  {29, 65, 800},
                                     {300, 129, 1537}, {13, 4100, 5}, {168, 1536, 384}, {126, 512, 2048}};

// C = alpha op(A) op(B) + beta C through gemm() and through gemm_packed() with a PackedB; both C's
// must be equal bit for bit (memcmp: also NaN-for-NaN, -0 for -0).
void expect_bit_equal(bool trans_a, bool trans_b, const Shape3& s, float alpha, float beta, int64_t pad) {
  const int64_t lda = (trans_a ? s.M : s.K) + pad, ldb = (trans_b ? s.K : s.N) + pad, ldc = s.N + pad;
  const std::vector<float> A = random_vector(static_cast<size_t>((trans_a ? s.K : s.M) * lda), 21);
  const std::vector<float> B = random_vector(static_cast<size_t>((trans_b ? s.N : s.K) * ldb), 22);
  std::vector<float> plain = random_vector(static_cast<size_t>(s.M * ldc), 23), packed = plain;
  cpu::gemm(trans_a, trans_b, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, plain.data(), ldc);
  const cpu::PackedB prepacked(trans_b, B.data(), ldb, s.K, s.N);
  cpu::gemm_packed(s.M, s.N, s.K, alpha, cpu::MatrixPackA(trans_a, A.data(), lda), prepacked, beta, packed.data(),
                   ldc);
  ASSERT_EQ(std::memcmp(plain.data(), packed.data(), plain.size() * sizeof(float)), 0)
      << "M=" << s.M << " N=" << s.N << " K=" << s.K << " trans_a=" << trans_a << " trans_b=" << trans_b
      << " alpha=" << alpha << " beta=" << beta << " pad=" << pad;
}

}  // namespace

class GemmPrepackedB : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(GemmPrepackedB);

TEST_P(GemmPrepackedB, BitEqualToThePlainGemmAtAwkwardShapes) {
  for (const Shape3& s : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) expect_bit_equal(ta, tb, s, 1.0f, 0.0f, 0);
}

TEST_P(GemmPrepackedB, AlphaBetaAndLeadingDimensions) {
  for (float beta : {0.0f, 1.0f, 0.25f}) {
    expect_bit_equal(false, true, {129, 63, 800}, -0.5f, beta, 3);  // two K blocks: beta on the first only
    expect_bit_equal(true, false, {33, 65, 17}, 2.0f, beta, 5);
  }
}

TEST_P(GemmPrepackedB, SharedByThreadsOnRowSlices) {
  // The blockwise MLP's use: one PackedB read by every thread at once, each thread's GEMM on its own
  // rows (one thread each, as inside a parallel region). Rows past an NR or MR multiple included.
  const int64_t M = 331, N = 1000, K = 800, chunk = 47;
  const std::vector<float> A = random_vector(static_cast<size_t>(M * K), 31), W = random_vector(N * K, 32);
  std::vector<float> plain(static_cast<size_t>(M * N)), packed(static_cast<size_t>(M * N));
  cpu::gemm(false, true, M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, plain.data(), N);
  const cpu::PackedB prepacked(true, W.data(), K, K, N);
#pragma omp parallel for num_threads(2) schedule(static, 1)
  for (int64_t r0 = 0; r0 < M; r0 += chunk)
    cpu::gemm_packed(std::min(chunk, M - r0), N, K, 1.0f, cpu::MatrixPackA(false, A.data() + r0 * K, K), prepacked,
                     0.0f, packed.data() + r0 * N, N);
  ASSERT_EQ(std::memcmp(plain.data(), packed.data(), plain.size() * sizeof(float)), 0);
}

TEST_P(GemmPrepackedB, HandsOutOnlyWholeBlocksOfItsLayout) {
  const int64_t K = cpu::gemm_kc() + 5, N = 3 * cpu::gemm_nr() + 1;
  const std::vector<float> B = random_vector(static_cast<size_t>(K * N), 41);
  const cpu::PackedB p(false, B.data(), N, K, N);
  const int nr = cpu::gemm_nr();
  const int64_t kc = cpu::gemm_kc();
  EXPECT_NE(p.packed(0, kc, 0, N, nr), nullptr);
  EXPECT_NE(p.packed(kc, 5, nr, 2 * nr + 1, nr), nullptr);  // the short last K block, ending at N
  EXPECT_NE(p.packed(0, kc, nr, nr, nr), nullptr);          // whole slivers inside N
  EXPECT_EQ(p.packed(1, kc - 1, 0, N, nr), nullptr);        // not a K block's start
  EXPECT_EQ(p.packed(0, kc - 1, 0, N, nr), nullptr);        // not a whole K block
  EXPECT_EQ(p.packed(0, kc, 1, nr, nr), nullptr);           // not a sliver's first column
  EXPECT_EQ(p.packed(0, kc, 0, nr + 1, nr), nullptr);       // a part sliver that does not end at N
  EXPECT_EQ(p.packed(0, kc, 0, N, nr == 16 ? 32 : 16), nullptr);  // another level's tile
  EXPECT_EQ(p.packed(0, kc, 0, N + 1, nr), nullptr);        // past N
  // A handed-out block is what pack() writes for it.
  const int64_t k = 5, n = 2 * nr + 1;
  std::vector<float> expected(static_cast<size_t>(3 * nr * k + 16));
  p.pack(kc, k, nr, n, nr, expected.data());
  EXPECT_EQ(std::memcmp(p.packed(kc, k, nr, n, nr), expected.data(), sizeof(float) * 3 * nr * k), 0);
}

TEST(GemmPrepackedBAcrossLevels, UsedAtAnotherLevelItPacksFromTheMatrix) {
  // Built at one level, run at another (a ScopedCpuIsa in between): a level whose tile or K block
  // differs must not read the panels, and the result is that level's plain GEMM, bit for bit.
  const int64_t M = 37, N = 70, K = 900;
  const std::vector<float> A = random_vector(static_cast<size_t>(M * K), 51), B = random_vector(N * K, 52);
  for (cpu::CpuIsa built : cpu::kCpuIsaLevels) {
    if (!cpu::cpu_isa_supported(built)) continue;
    std::optional<cpu::ScopedCpuIsa> at_build(built);
    const cpu::PackedB prepacked(true, B.data(), K, K, N);
    at_build.reset();
    for (cpu::CpuIsa used : cpu::kCpuIsaLevels) {
      if (!cpu::cpu_isa_supported(used)) continue;
      cpu::ScopedCpuIsa at_use(used);
      std::vector<float> plain(static_cast<size_t>(M * N)), packed(static_cast<size_t>(M * N));
      cpu::gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, plain.data(), N);
      cpu::gemm_packed(M, N, K, 1.0f, cpu::MatrixPackA(false, A.data(), K), prepacked, 0.0f, packed.data(), N);
      ASSERT_EQ(std::memcmp(plain.data(), packed.data(), plain.size() * sizeof(float)), 0)
          << "built at " << cpu::cpu_isa_name(built) << ", used at " << cpu::cpu_isa_name(used);
    }
  }
}

TEST(GemmPrepackedBFront, MatmulAndLinearEqualTheUnpackedCalls) {
  Generator gen(61);
  const Tensor x = Tensor::randn({45, 70}, &gen), w = Tensor::randn({130, 70}, &gen), b = Tensor::randn({130}, &gen);
  const Tensor dy = Tensor::randn({45, 130}, &gen);
  // linear: x w^T + b with the GELU epilogue and a kept pre-activation.
  const cpu::PackedB wt(true, w.data<float>(), 70, 70, 130);
  ops::LinearEpilogue gelu;
  gelu.gelu = true;
  Tensor plain = Tensor::empty({45, 130}), packed = Tensor::empty({45, 130});
  gelu.pre_gelu = Tensor::empty({45, 130});
  ops::linear(plain, x, w, b, gelu);
  const std::vector<float> plain_pre = gelu.pre_gelu.to_vector();
  ops::linear(packed, x, w, b, gelu, &wt);
  EXPECT_EQ(plain.to_vector(), packed.to_vector());
  EXPECT_EQ(plain_pre, gelu.pre_gelu.to_vector());
  // matmul: dy w, accumulating (beta 1).
  const cpu::PackedB wn(false, w.data<float>(), 70, 130, 70);
  Tensor acc_plain = Tensor::ones({45, 70}), acc_packed = Tensor::ones({45, 70});
  ops::matmul(acc_plain, dy, w, false, false, 1.0f);
  ops::matmul(acc_packed, dy, w, false, false, 1.0f, &wn);
  EXPECT_EQ(acc_plain.to_vector(), acc_packed.to_vector());
}

TEST(GemmPrepackedBFront, AMismatchedPackingIsNamed) {
  Generator gen(62);
  const Tensor x = Tensor::randn({4, 6}, &gen), w = Tensor::randn({5, 6}, &gen), other = Tensor::randn({5, 6}, &gen);
  Tensor out = Tensor::empty({4, 5});
  const cpu::PackedB of_other(true, other.data<float>(), 6, 6, 5);
  expect_error([&] { ops::linear(out, x, w, Tensor(), ops::LinearEpilogue(), &of_other); },
                        {"linear", "pre-packed operand is not this call's b"});
  const cpu::PackedB untransposed(false, w.data<float>(), 6, 5, 6);  // packs w, not w^T
  expect_error([&] { ops::linear(out, x, w, Tensor(), ops::LinearEpilogue(), &untransposed); },
                        {"linear", "pre-packed operand is not this call's b"});
  const cpu::PackedB wt(true, w.data<float>(), 6, 6, 5);
  const Tensor xh = x.to(DType::BF16), wh = w.to(DType::BF16);
  Tensor outh = Tensor::empty({4, 5}, DType::BF16);
  expect_error([&] { ops::matmul(outh, xh, wh, false, true, 0.0f, &wt); },
                        {"matmul", "2-D f32 product on the CPU", "bf16"});
}
