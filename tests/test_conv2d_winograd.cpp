// Winograd F(2x2,3x3) and F(4x4,3x3) convolution kernels, forward and input gradient, against a
// naive double-precision direct convolution written here (NHWC, PyTorch weight order), on odd
// image sizes (tiles cut by the edge), every padding, and channel counts that are not multiples of
// the kernels' 16-lane vectors; within an element-wise error bound derived from the transforms
// (below), which a kernel with one transform constant off by 1% fails.
//
// The bound. Output y of an m x m tile is A^T [sum_c (G g_c G^T) ⊙ (B^T d_c B)] A (+ bias). Every
// computed quantity is the exact one of its computed operands times (1 + delta), |delta| <= u =
// 2^-24, per rounding, so the computed y is the exact sum of all its terms (matrix entries times one
// d times one g), each times a product of at most n such factors, and (Higham, Accuracy and
// Stability of Numerical Algorithms, 3.1 and 3.5)
//   |computed y - y| <= gamma_n * E,   gamma_n = n u / (1 - n u),
//   E = |A^T| [sum_c (|G| |g_c| |G^T|) ⊙ (|B^T| |d_c| |B|)] |A| + |bias|:
// the same tiled Winograd evaluated on absolute values, which winograd_double below computes. A
// 1-D pass through a matrix whose rows have at most r nonzero entries costs at most r roundings
// (r - 1 additions and one product), so, with 2-D transforms being two passes,
//   n = 2 r(B^T) + 2 (r(G) + 1) + C + 2 r(A^T) + 1
// where G's +1 is the rounding of its non-representable constants (1/6, 1/12, 1/24), C covers the
// products and the sum over channels in any order (the GEMM's blocking), and the final +1 the bias
// add or the += into the gradient (whose prefilled value then joins E). F(2x2): r = 2, 3, 3, so
// n = C + 19; F(4x4): r = 4, 3, 5, so n = C + 27. On these tests the kernels' worst errors are 0.1%
// to 5% of the bound (random signs cancel), yet a 1% error in any one constant lands above it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ops/cpu/conv2d_winograd.h"
#include "tensor/random.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;
using tg::cpu::WinogradTile;

namespace {

struct ConvShape {
  int64_t N, H, W, C, K, pad_h, pad_w;
  int64_t P() const { return H + 2 * pad_h - 2; }
  int64_t Q() const { return W + 2 * pad_w - 2; }
  std::string str() const {
    return "N=" + std::to_string(N) + " H=" + std::to_string(H) + " W=" + std::to_string(W) + " C=" +
           std::to_string(C) + " K=" + std::to_string(K) + " pad=(" + std::to_string(pad_h) + "," +
           std::to_string(pad_w) + ")";
  }
};

// The transform matrices, row-major: B^T (alpha, alpha), G (alpha, 3), A^T (m, alpha).
struct Transform {
  int m, alpha;
  std::vector<double> BT, G, AT;
  int r_BT, r_G, r_AT;  // most nonzero entries in a row: the roundings of one 1-D pass
  const char* name;
};

Transform transform_for(WinogradTile tile) {
  if (tile == WinogradTile::F2x2)
    return {2,
            4,
            {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1},
            {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1},
            {1, 1, 1, 0, 0, 1, -1, -1},
            2,
            3,
            3,
            "F(2x2,3x3)"};
  return {4,
          6,
          {4, 0, -5, 0, 1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0,
           0, -2, -1, 2, 1, 0, 0, 2, -1, -2, 1, 0, 0, 4, 0, -5, 0, 1},
          {1.0 / 4, 0, 0, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6,
           1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 24, -1.0 / 12, 1.0 / 6, 0, 0, 1},
          {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0, 0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1},
          4,
          3,
          5,
          "F(4x4,3x3)"};
}

// gamma_n for C input channels, from the rounding count in the header comment.
double gamma_for(const Transform& t, int64_t C) {
  const double n = 2.0 * t.r_BT + 2.0 * (t.r_G + 1) + static_cast<double>(C) + 2.0 * t.r_AT + 1.0;
  const double u = std::ldexp(1.0, -24);
  return n * u / (1.0 - n * u);
}

std::vector<float> random_vector(int64_t n, Generator& gen) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = gen.normal();
  return v;
}

// x (N,H,W,C), weight (K,C,3,3), bias (K) or empty -> (N,P,Q,K): the definition, in double.
std::vector<double> direct_forward(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                                   const std::vector<float>& bias) {
  std::vector<double> y(static_cast<size_t>(s.N * s.P() * s.Q() * s.K));
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t p = 0; p < s.P(); p++)
      for (int64_t q = 0; q < s.Q(); q++)
        for (int64_t k = 0; k < s.K; k++) {
          double acc = bias.empty() ? 0.0 : bias[k];
          for (int64_t r = 0; r < 3; r++)
            for (int64_t t = 0; t < 3; t++) {
              const int64_t h = p + r - s.pad_h, wi = q + t - s.pad_w;
              if (h < 0 || h >= s.H || wi < 0 || wi >= s.W) continue;
              for (int64_t c = 0; c < s.C; c++)
                acc += static_cast<double>(x[((n * s.H + h) * s.W + wi) * s.C + c]) * w[((k * s.C + c) * 3 + r) * 3 + t];
            }
          y[((n * s.P() + p) * s.Q() + q) * s.K + k] = acc;
        }
  return y;
}

// The gradient of direct_forward's output with respect to x, from its definition: every
// dout[n][p][q][k] * w[k][c][r][s] lands on the x element it multiplied. dout (N,P,Q,K) -> (N,H,W,C).
std::vector<double> direct_backward_input(const ConvShape& s, const std::vector<float>& dout,
                                          const std::vector<float>& w) {
  std::vector<double> dx(static_cast<size_t>(s.N * s.H * s.W * s.C), 0.0);
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t p = 0; p < s.P(); p++)
      for (int64_t q = 0; q < s.Q(); q++)
        for (int64_t r = 0; r < 3; r++)
          for (int64_t t = 0; t < 3; t++) {
            const int64_t h = p + r - s.pad_h, wi = q + t - s.pad_w;
            if (h < 0 || h >= s.H || wi < 0 || wi >= s.W) continue;
            for (int64_t k = 0; k < s.K; k++) {
              const double g = dout[((n * s.P() + p) * s.Q() + q) * s.K + k];
              for (int64_t c = 0; c < s.C; c++)
                dx[((n * s.H + h) * s.W + wi) * s.C + c] += g * w[((k * s.C + c) * 3 + r) * 3 + t];
            }
          }
  return dx;
}

// weight (K,C,3,3) -> (C,K,3,3) turned by 180 degrees: the filter of the input gradient's
// convolution, used here only to evaluate its error bound.
std::vector<float> flipped_swapped(const std::vector<float>& w, int64_t K, int64_t C) {
  std::vector<float> f(w.size());
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t r = 0; r < 3; r++)
        for (int64_t t = 0; t < 3; t++) f[((c * K + k) * 3 + 2 - r) * 3 + 2 - t] = w[((k * C + c) * 3 + r) * 3 + t];
  return f;
}

// (rows, inner) @ (inner, cols), row-major, in double.
std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b, int rows, int inner, int cols) {
  std::vector<double> c(static_cast<size_t>(rows * cols), 0.0);
  for (int i = 0; i < rows; i++)
    for (int k = 0; k < inner; k++)
      for (int j = 0; j < cols; j++) c[i * cols + j] += a[i * inner + k] * b[k * cols + j];
  return c;
}

std::vector<double> transposed(const std::vector<double>& a, int rows, int cols) {
  std::vector<double> t(a.size());
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

// The tiled Winograd convolution in double with the matrices of t, tiles of m x m outputs from the
// top-left corner as the kernels cut them. absolute: every matrix and input by absolute value,
// which gives E of the error bound. x (N,H,W,C), weight (K,C,3,3) -> (N,P,Q,K).
std::vector<double> winograd_double(const Transform& t, const ConvShape& s, const std::vector<float>& x,
                                    const std::vector<float>& w, const std::vector<float>& bias, bool absolute) {
  const int m = t.m, a = t.alpha;
  auto maybe_abs = [absolute](double v) { return absolute ? std::fabs(v) : v; };
  std::vector<double> BT(t.BT), G(t.G), AT(t.AT);
  for (std::vector<double>* v : {&BT, &G, &AT})
    for (double& e : *v) e = maybe_abs(e);
  const std::vector<double> B = transposed(BT, a, a), GT = transposed(G, a, 3), A = transposed(AT, m, a);
  // U[k][c] = G g G^T, (alpha, alpha) each.
  std::vector<std::vector<double>> U(static_cast<size_t>(s.K * s.C));
  for (int64_t k = 0; k < s.K; k++)
    for (int64_t c = 0; c < s.C; c++) {
      std::vector<double> g(9);
      for (int i = 0; i < 9; i++) g[i] = maybe_abs(w[(k * s.C + c) * 9 + i]);
      U[k * s.C + c] = matmul(matmul(G, g, a, 3, 3), GT, a, 3, a);
    }
  std::vector<double> y(static_cast<size_t>(s.N * s.P() * s.Q() * s.K));
  std::vector<std::vector<double>> V(static_cast<size_t>(s.C));
  for (int64_t n = 0; n < s.N; n++)
    for (int64_t h0 = 0; h0 < s.P(); h0 += m)
      for (int64_t w0 = 0; w0 < s.Q(); w0 += m) {
        for (int64_t c = 0; c < s.C; c++) {
          std::vector<double> d(static_cast<size_t>(a * a), 0.0);
          for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
              const int64_t h = h0 + i - s.pad_h, wi = w0 + j - s.pad_w;
              if (h >= 0 && h < s.H && wi >= 0 && wi < s.W) d[i * a + j] = maybe_abs(x[((n * s.H + h) * s.W + wi) * s.C + c]);
            }
          V[c] = matmul(matmul(BT, d, a, a, a), B, a, a, a);
        }
        for (int64_t k = 0; k < s.K; k++) {
          std::vector<double> M(static_cast<size_t>(a * a), 0.0);
          for (int64_t c = 0; c < s.C; c++)
            for (int i = 0; i < a * a; i++) M[i] += U[k * s.C + c][i] * V[c][i];
          const std::vector<double> tile = matmul(matmul(AT, M, m, a, a), A, m, a, m);
          for (int i = 0; i < m && h0 + i < s.P(); i++)
            for (int j = 0; j < m && w0 + j < s.Q(); j++)
              y[((n * s.P() + h0 + i) * s.Q() + w0 + j) * s.K + k] =
                  tile[i * m + j] + (bias.empty() ? 0.0 : maybe_abs(bias[k]));
        }
      }
  return y;
}

// How many elements of got miss want by more than gamma * E; reports the first five.
int64_t count_outside_bound(const std::vector<double>& got, const std::vector<double>& want,
                            const std::vector<double>& E, double gamma, const std::string& what, bool report) {
  int64_t misses = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (!(std::fabs(got[i] - want[i]) <= gamma * E[i]) && misses++ < 5 && report)
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", want " << want[i] << ", bound "
                    << gamma * E[i];
  return misses;
}

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

const WinogradTile kTiles[] = {WinogradTile::F2x2, WinogradTile::F4x4};

// Odd sizes (edge tiles cut in both directions), every padding, C and K off the 16-lane vectors,
// batch 1 and 3, and one image smaller than a tile.
const ConvShape kShapes[] = {
    {1, 7, 9, 3, 17, 1, 1}, {3, 11, 6, 17, 33, 0, 2}, {1, 5, 13, 33, 3, 2, 0}, {3, 3, 4, 5, 7, 1, 2},
};

void check_forward(WinogradTile tile, const ConvShape& s, bool with_bias, uint64_t seed) {
  const Transform t = transform_for(tile);
  Generator gen(seed);
  const std::vector<float> x = random_vector(s.N * s.H * s.W * s.C, gen), w = random_vector(s.K * s.C * 9, gen);
  const std::vector<float> bias = with_bias ? random_vector(s.K, gen) : std::vector<float>();
  // NaN in the output buffer: the kernel must write every element, not add to it.
  std::vector<float> out(static_cast<size_t>(s.N * s.P() * s.Q() * s.K), std::nanf(""));
  cpu::conv2d_winograd_forward(out.data(), x.data(), w.data(), with_bias ? bias.data() : nullptr, s.N, s.H, s.W, s.C,
                               s.K, s.pad_h, s.pad_w, tile);
  const std::vector<double> want = direct_forward(s, x, w, bias);
  const std::vector<double> E = winograd_double(t, s, x, w, bias, true);
  count_outside_bound(as_double(out), want, E, gamma_for(t, s.C),
                      std::string(t.name) + " forward " + s.str() + (with_bias ? " bias" : ""), true);
}

void check_backward_input(WinogradTile tile, const ConvShape& s, uint64_t seed) {
  const Transform t = transform_for(tile);
  Generator gen(seed);
  const std::vector<float> dout = random_vector(s.N * s.P() * s.Q() * s.K, gen), w = random_vector(s.K * s.C * 9, gen);
  const std::vector<float> prefill = random_vector(s.N * s.H * s.W * s.C, gen);
  std::vector<float> dx = prefill;
  cpu::conv2d_winograd_backward_input(dx.data(), dout.data(), w.data(), s.N, s.H, s.W, s.C, s.K, s.pad_h, s.pad_w,
                                      tile);
  std::vector<double> want = direct_backward_input(s, dout, w);
  for (size_t i = 0; i < want.size(); i++) want[i] += prefill[i];
  // The bound of the convolution the kernel computes (dout padded by 2 - pad with the turned
  // filter), plus the prefilled values that the last rounding adds to.
  const ConvShape g{s.N, s.P(), s.Q(), s.K, s.C, 2 - s.pad_h, 2 - s.pad_w};
  std::vector<double> E = winograd_double(t, g, dout, flipped_swapped(w, s.K, s.C), {}, true);
  for (size_t i = 0; i < E.size(); i++) E[i] += std::fabs(prefill[i]);
  count_outside_bound(as_double(dx), want, E, gamma_for(t, s.K), std::string(t.name) + " input gradient " + s.str(),
                      true);
}

}  // namespace

// Every test of Conv2dWinograd runs at each instruction-set level of the CPU kernels.
class Conv2dWinograd : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Conv2dWinograd);

TEST_P(Conv2dWinograd, ForwardMatchesDirectConvolution) {
  uint64_t seed = 100;
  for (WinogradTile tile : kTiles)
    for (const ConvShape& s : kShapes) {
      check_forward(tile, s, true, seed++);
      check_forward(tile, s, false, seed++);
    }
}

TEST_P(Conv2dWinograd, BackwardInputAddsTheGradient) {
  uint64_t seed = 200;
  for (WinogradTile tile : kTiles)
    for (const ConvShape& s : kShapes) check_backward_input(tile, s, seed++);
}

// Enough tiles for several chunks per thread (the chunk holds about 56 tiles at these channels).
TEST_P(Conv2dWinograd, ManyChunks) {
  const ConvShape s{2, 29, 27, 61, 67, 1, 1};
  check_forward(WinogradTile::F4x4, s, true, 300);
  check_backward_input(WinogradTile::F4x4, s, 301);
  check_forward(WinogradTile::F2x2, s, false, 302);
}

// The default overloads pick a tile by the output size and give the same answers.
TEST_P(Conv2dWinograd, DefaultTileOverloads) {
  EXPECT_EQ(cpu::winograd_default_tile(28, 28), WinogradTile::F4x4);
  EXPECT_EQ(cpu::winograd_default_tile(3, 28), WinogradTile::F2x2);
  const ConvShape s{1, 9, 8, 5, 6, 1, 1};
  Generator gen(400);
  const std::vector<float> x = random_vector(s.N * s.H * s.W * s.C, gen), w = random_vector(s.K * s.C * 9, gen);
  const std::vector<float> dout = random_vector(s.N * s.P() * s.Q() * s.K, gen);
  std::vector<float> y1(static_cast<size_t>(s.N * s.P() * s.Q() * s.K)), y2(y1.size());
  cpu::conv2d_winograd_forward(y1.data(), x.data(), w.data(), nullptr, s.N, s.H, s.W, s.C, s.K, 1, 1);
  cpu::conv2d_winograd_forward(y2.data(), x.data(), w.data(), nullptr, s.N, s.H, s.W, s.C, s.K, 1, 1,
                               WinogradTile::F4x4);
  EXPECT_EQ(y1, y2);
  std::vector<float> dx1(x.size(), 0.0f), dx2(x.size(), 0.0f);
  cpu::conv2d_winograd_backward_input(dx1.data(), dout.data(), w.data(), s.N, s.H, s.W, s.C, s.K, 1, 1);
  cpu::conv2d_winograd_backward_input(dx2.data(), dout.data(), w.data(), s.N, s.H, s.W, s.C, s.K, 1, 1,
                                      WinogradTile::F4x4);
  EXPECT_EQ(dx1, dx2);
}

// The bound is tight enough to catch a wrong constant: the same tiled Winograd in double with one
// entry of G, B^T or A^T off by 1% lands outside it on the test's shapes. (In double the rounding
// is 2^29 times smaller than the kernel's, so every miss is the constant's doing.)
TEST_P(Conv2dWinograd, BoundCatchesAPerturbedTransformConstant) {
  const ConvShape s{1, 9, 11, 17, 33, 1, 1};
  for (WinogradTile tile : kTiles) {
    const Transform exact = transform_for(tile);
    Generator gen(500);
    const std::vector<float> x = random_vector(s.N * s.H * s.W * s.C, gen), w = random_vector(s.K * s.C * 9, gen);
    const std::vector<double> want = direct_forward(s, x, w, {});
    const std::vector<double> E = winograd_double(exact, s, x, w, {}, true);
    const double gamma = gamma_for(exact, s.C);
    // The exact transform in double is inside the bound everywhere (the reference is right) ...
    EXPECT_EQ(count_outside_bound(winograd_double(exact, s, x, w, {}, false), want, E, gamma, "exact", true), 0);
    // ... and a 1% error in one constant of any matrix is not.
    const int a = exact.alpha;
    struct Perturbation {
      std::vector<double> Transform::*matrix;
      int index;
      const char* what;
    };
    const Perturbation perturbations[] = {{&Transform::G, 3 * 1 + 0, "G[1][0]"},
                                          {&Transform::G, 3 * (a - 2) + 1, "G[alpha-2][1]"},
                                          {&Transform::BT, a * 1 + 2, "B^T[1][2]"},
                                          {&Transform::AT, a * (exact.m - 1) + 1, "A^T[m-1][1]"}};
    for (const Perturbation& p : perturbations) {
      Transform wrong = exact;
      (wrong.*p.matrix)[p.index] *= 1.01;
      const int64_t misses =
          count_outside_bound(winograd_double(wrong, s, x, w, {}, false), want, E, gamma, "perturbed", false);
      EXPECT_GT(misses, 0) << exact.name << " with " << p.what << " off by 1% stays inside the bound";
    }
  }
}

TEST_P(Conv2dWinograd, Applicability) {
  EXPECT_TRUE(cpu::winograd_applicable(3, 3, 1, 1, 1, 1, 1, 1, 1));
  EXPECT_TRUE(cpu::winograd_applicable(3, 3, 1, 1, 1, 1, 1, 0, 2));
  EXPECT_FALSE(cpu::winograd_applicable(5, 5, 1, 1, 1, 1, 1, 1, 1));
  EXPECT_FALSE(cpu::winograd_applicable(3, 1, 1, 1, 1, 1, 1, 1, 1));
  EXPECT_FALSE(cpu::winograd_applicable(3, 3, 2, 1, 1, 1, 1, 1, 1));
  EXPECT_FALSE(cpu::winograd_applicable(3, 3, 1, 1, 1, 2, 1, 1, 1));
  EXPECT_FALSE(cpu::winograd_applicable(3, 3, 1, 1, 1, 1, 2, 1, 1));
  EXPECT_FALSE(cpu::winograd_applicable(3, 3, 1, 1, 1, 1, 1, 3, 1));
  EXPECT_FALSE(cpu::winograd_applicable(3, 3, 1, 1, 1, 1, 1, 1, -1));
}

TEST_P(Conv2dWinograd, BadShapesAreErrors) {
  std::vector<float> buf(1024, 0.0f);
  float* p = buf.data();
  EXPECT_ERROR_MENTIONS(cpu::conv2d_winograd_forward(p, p, p, nullptr, 1, 8, 8, 2, 2, 3, 1),
                        "conv2d_winograd_forward", "padding must be in [0, 2]", "pad_h=3");
  EXPECT_ERROR_MENTIONS(cpu::conv2d_winograd_backward_input(p, p, p, 1, 8, 8, 2, 2, 1, -1),
                        "conv2d_winograd_backward_input", "pad_w=-1");
  EXPECT_ERROR_MENTIONS(cpu::conv2d_winograd_forward(p, p, p, nullptr, 1, 2, 8, 2, 2, 0, 1),
                        "conv2d_winograd_forward", "at least 3x3", "found 2x10");
  EXPECT_ERROR_MENTIONS(cpu::conv2d_winograd_forward(p, p, p, nullptr, -1, 8, 8, 2, 2, 1, 1),
                        "conv2d_winograd_forward", "non-negative", "N=-1");
}
