// Winograd F(m x m, 3 x 3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), NHWC, f32.
//
// With alpha = m + 2, each m x m output tile of one image and output channel k is
//   y = A^T [ sum_c (G g_kc G^T) ⊙ (B^T d_c B) ] A
// where d_c is the alpha x alpha input patch of channel c under the tile and g_kc the 3x3 filter.
// The sum over c of elementwise products is, at each of the alpha^2 positions xi, a product of
// matrices over the channels, so the whole layer becomes
//   U[xi] (C, K)     = (G g G^T)[xi]        filter transform, once per call
//   V[xi] (tiles, C) = (B^T d B)[xi]        input transform, per tile, all C at once
//   M[xi] (tiles, K) = V[xi] @ U[xi]        alpha^2 independent GEMMs
//   y                = A^T M A (+ bias)     output transform, per tile, all K at once.
// NHWC makes every patch element a contiguous run of channels, so the transforms run on vectors of
// kLanes channels with no shuffles. The tiles go through in chunks, one chunk per thread at a time,
// so that a chunk's V and M are still in that core's L2 when its GEMMs and output transform read them.
#include "ops/cpu/conv2d_winograd.h"

#include <omp.h>

#include <algorithm>
#include <memory>
#include <string>

#include "ops/cpu/gemm.h"
#include "tensor/error.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN
namespace {

// Channels per transform step: one AVX-512 register of floats (two AVX2 ones).
constexpr int kLanes = 16;

// A 1-D transform maps the kLanes-wide vectors in[0], in[is], in[2 is], ... to out[0], out[os], ...
using Transform1d = void (*)(const float* in, int64_t is, float* out, int64_t os);

// F(2x2, 3x3): interpolation points 0, 1, -1 and infinity.
struct TileF2 {
  static constexpr int m = 2, alpha = 4;
  // B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
  static void input(const float* in, int64_t is, float* out, int64_t os) {
#pragma omp simd
    for (int v = 0; v < kLanes; v++) {
      const float d0 = in[v], d1 = in[is + v], d2 = in[2 * is + v], d3 = in[3 * is + v];
      out[v] = d0 - d2;
      out[os + v] = d1 + d2;
      out[2 * os + v] = d2 - d1;
      out[3 * os + v] = d1 - d3;
    }
  }
  // G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
  static void filter(const float* in, int64_t is, float* out, int64_t os) {
#pragma omp simd
    for (int v = 0; v < kLanes; v++) {
      const float g0 = in[v], g1 = in[is + v], g2 = in[2 * is + v];
      out[v] = g0;
      out[os + v] = 0.5f * (g0 + g1 + g2);
      out[2 * os + v] = 0.5f * (g0 - g1 + g2);
      out[3 * os + v] = g2;
    }
  }
  // A^T = [1 1 1 0; 0 1 -1 -1]
  static void output(const float* in, int64_t is, float* out, int64_t os) {
#pragma omp simd
    for (int v = 0; v < kLanes; v++) {
      const float m0 = in[v], m1 = in[is + v], m2 = in[2 * is + v], m3 = in[3 * is + v];
      out[v] = m0 + m1 + m2;
      out[os + v] = m1 - m2 - m3;
    }
  }
};

// F(4x4, 3x3): points 0, 1, -1, 2, -2 and infinity, Lavin & Gray's matrices.
struct TileF4 {
  static constexpr int m = 4, alpha = 6;
  // B^T = [4  0 -5  0 1 0
  //        0 -4 -4  1 1 0
  //        0  4 -4 -1 1 0
  //        0 -2 -1  2 1 0
  //        0  2 -1 -2 1 0
  //        0  4  0 -5 0 1]
  static void input(const float* in, int64_t is, float* out, int64_t os) {
#pragma omp simd
    for (int v = 0; v < kLanes; v++) {
      const float d0 = in[v], d1 = in[is + v], d2 = in[2 * is + v], d3 = in[3 * is + v], d4 = in[4 * is + v],
                  d5 = in[5 * is + v];
      out[v] = 4.0f * d0 - 5.0f * d2 + d4;
      out[os + v] = d3 + d4 - 4.0f * (d1 + d2);
      out[2 * os + v] = d4 - d3 + 4.0f * (d1 - d2);
      out[3 * os + v] = d4 - d2 + 2.0f * (d3 - d1);
      out[4 * os + v] = d4 - d2 + 2.0f * (d1 - d3);
      out[5 * os + v] = 4.0f * d1 - 5.0f * d3 + d5;
    }
  }
  // G = [ 1/4     0     0
  //      -1/6  -1/6  -1/6
  //      -1/6   1/6  -1/6
  //       1/24  1/12  1/6
  //       1/24 -1/12  1/6
  //       0     0     1  ]
  static void filter(const float* in, int64_t is, float* out, int64_t os) {
#pragma omp simd
    for (int v = 0; v < kLanes; v++) {
      const float g0 = in[v], g1 = in[is + v], g2 = in[2 * is + v];
      out[v] = 0.25f * g0;
      out[os + v] = (-1.0f / 6.0f) * (g0 + g1 + g2);
      out[2 * os + v] = (-1.0f / 6.0f) * (g0 - g1 + g2);
      out[3 * os + v] = (1.0f / 24.0f) * g0 + (1.0f / 12.0f) * g1 + (1.0f / 6.0f) * g2;
      out[4 * os + v] = (1.0f / 24.0f) * g0 - (1.0f / 12.0f) * g1 + (1.0f / 6.0f) * g2;
      out[5 * os + v] = g2;
    }
  }
  // A^T = [1 1  1 1  1 0
  //        0 1 -1 2 -2 0
  //        0 1  1 4  4 0
  //        0 1 -1 8 -8 1]
  static void output(const float* in, int64_t is, float* out, int64_t os) {
#pragma omp simd
    for (int v = 0; v < kLanes; v++) {
      const float m0 = in[v], m1 = in[is + v], m2 = in[2 * is + v], m3 = in[3 * is + v], m4 = in[4 * is + v],
                  m5 = in[5 * is + v];
      const float sum12 = m1 + m2, diff12 = m1 - m2, sum34 = m3 + m4, diff34 = m3 - m4;
      out[v] = m0 + sum12 + sum34;
      out[os + v] = diff12 + 2.0f * diff34;
      out[2 * os + v] = sum12 + 4.0f * sum34;
      out[3 * os + v] = diff12 + 8.0f * diff34 + m5;
    }
  }
};

// out = T in T^T for the 1-D transform T (In points -> Out points), on kLanes-wide vectors: T on
// every column, then on every row. Vector (i, j) of in is at in + i * in_row + j * in_col, and
// vector (i, j) of out at out + i * out_row + j * out_col.
template <int In, int Out, Transform1d transform>
inline void transform_2d(const float* in, int64_t in_row, int64_t in_col, float* out, int64_t out_row,
                         int64_t out_col) {
  alignas(64) float columns_done[Out * In * kLanes];  // T in: (Out, In) vectors
  for (int j = 0; j < In; j++) transform(in + j * in_col, in_row, columns_done + j * kLanes, In * kLanes);
  for (int i = 0; i < Out; i++) transform(columns_done + i * In * kLanes, kLanes, out + i * out_row, out_col);
}

// weight (K, C, 3, 3) -> U (alpha^2, Cin, Cout) = G g G^T. The forward's filter from input channel ci
// to output channel co is weight[co][ci]; the input gradient's (from dout's channel ci to dx's
// channel co) is weight[ci][co] turned by 180 degrees, so Cin = K and Cout = C there.
template <class Tile>
void transform_filter(float* U, const float* weight, int64_t C, int64_t K, bool for_input_gradient) {
  constexpr int a = Tile::alpha;
  const int64_t Cin = for_input_gradient ? K : C, Cout = for_input_gradient ? C : K;
#pragma omp parallel for schedule(static) if (Cin * Cout >= 4096)
  for (int64_t ci = 0; ci < Cin; ci++) {
    for (int64_t co0 = 0; co0 < Cout; co0 += kLanes) {
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, Cout - co0));
      alignas(64) float g[9 * kLanes] = {};  // (3, 3) vectors of output channels
      alignas(64) float u[a * a * kLanes];
      for (int v = 0; v < lanes; v++)
        for (int r = 0; r < 3; r++)
          for (int s = 0; s < 3; s++)
            g[(r * 3 + s) * kLanes + v] = for_input_gradient ? weight[((ci * C + co0 + v) * 3 + 2 - r) * 3 + 2 - s]
                                                             : weight[((co0 + v) * C + ci) * 9 + r * 3 + s];
      transform_2d<3, a, Tile::filter>(g, 3 * kLanes, kLanes, u, a * kLanes, kLanes);
      for (int xi = 0; xi < a * a; xi++)
        std::copy(u + xi * kLanes, u + xi * kLanes + lanes, U + (xi * Cin + ci) * Cout + co0);
    }
  }
}

// x (N,H,W,C) -> v (alpha^2, C): B^T d B for the alpha x alpha patch of image n whose corner is at
// row h0, column w0; rows and columns outside the image are the padding's zeros.
template <class Tile>
void input_tile(float* v, const float* x, int64_t n, int64_t h0, int64_t w0, int64_t H, int64_t W, int64_t C) {
  constexpr int a = Tile::alpha;
  const bool inside = h0 >= 0 && w0 >= 0 && h0 + a <= H && w0 + a <= W;
  for (int64_t c0 = 0; c0 < C; c0 += kLanes) {
    const int lanes = static_cast<int>(std::min<int64_t>(kLanes, C - c0));
    if (inside && lanes == kLanes) {  // the common case: straight from x to v
      transform_2d<a, a, Tile::input>(x + ((n * H + h0) * W + w0) * C + c0, W * C, C, v + c0, a * C, C);
      continue;
    }
    alignas(64) float d[a * a * kLanes] = {};
    alignas(64) float e[a * a * kLanes];
    for (int i = 0; i < a; i++)
      for (int j = 0; j < a; j++) {
        const int64_t h = h0 + i, w = w0 + j;
        if (h < 0 || h >= H || w < 0 || w >= W) continue;
        const float* src = x + ((n * H + h) * W + w) * C + c0;
        std::copy(src, src + lanes, d + (i * a + j) * kLanes);
      }
    transform_2d<a, a, Tile::input>(d, a * kLanes, kLanes, e, a * kLanes, kLanes);
    for (int xi = 0; xi < a * a; xi++) std::copy(e + xi * kLanes, e + xi * kLanes + lanes, v + xi * C + c0);
  }
}

// mt (alpha^2, K) -> out (N,P,Q,K): A^T M A (+ bias) into the m x m outputs of image n from row h0,
// column w0, written or (accumulate) added; the outputs past P or Q of an edge tile are dropped.
template <class Tile>
void output_tile(float* out, bool accumulate, const float* mt, const float* bias, int64_t n, int64_t h0, int64_t w0,
                 int64_t P, int64_t Q, int64_t K) {
  constexpr int m = Tile::m, a = Tile::alpha;
  const int rows = static_cast<int>(std::min<int64_t>(m, P - h0)), cols = static_cast<int>(std::min<int64_t>(m, Q - w0));
  for (int64_t k0 = 0; k0 < K; k0 += kLanes) {
    const int lanes = static_cast<int>(std::min<int64_t>(kLanes, K - k0));
    alignas(64) float y[m * m * kLanes];
    if (lanes == kLanes) {
      transform_2d<a, m, Tile::output>(mt + k0, a * K, K, y, m * kLanes, kLanes);
    } else {
      alignas(64) float last[a * a * kLanes] = {};
      for (int xi = 0; xi < a * a; xi++) std::copy(mt + xi * K + k0, mt + xi * K + k0 + lanes, last + xi * kLanes);
      transform_2d<a, m, Tile::output>(last, a * kLanes, kLanes, y, m * kLanes, kLanes);
    }
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        float* o = out + ((n * P + h0 + i) * Q + w0 + j) * K + k0;
        const float* yv = y + (i * m + j) * kLanes;
        if (accumulate) {
          for (int v = 0; v < lanes; v++) o[v] += yv[v];
        } else if (bias) {
          for (int v = 0; v < lanes; v++) o[v] = yv[v] + bias[k0 + v];
        } else {
          std::copy(yv, yv + lanes, o);
        }
      }
  }
}

// Tiles per chunk. A chunk's V and M, alpha^2 (Cin + Cout) floats per tile, should stay in the
// core's L2 (1 MiB on the machine this was tuned on) between the transforms and the GEMMs; but each
// GEMM packs its U[xi] (Cin x Cout) again for every chunk, paid back by 2 * tiles flops per packed
// element, so a chunk never gets shorter than kMinChunkTiles. Multiples of 14 rows (the AVX-512
// GEMM's register tile) leave no partial register tiles.
constexpr int64_t kChunkBytes = 1 << 20;
constexpr int64_t kMinChunkTiles = 56;

// x (N,H,W,Cin) -> out (N,P,Q,Cout), P = H + 2 pad_h - 2, Q = W + 2 pad_w - 2, written (+ bias) or
// (accumulate) added, with U (alpha^2, Cin, Cout) from transform_filter.
template <class Tile>
void convolve(float* out, bool accumulate, const float* x, const float* U, const float* bias, int64_t N, int64_t H,
              int64_t W, int64_t Cin, int64_t Cout, int64_t pad_h, int64_t pad_w) {
  constexpr int m = Tile::m, a2 = Tile::alpha * Tile::alpha;
  const int64_t P = H + 2 * pad_h - 2, Q = W + 2 * pad_w - 2;
  const int64_t tiles_h = (P + m - 1) / m, tiles_w = (Q + m - 1) / m, tiles = N * tiles_h * tiles_w;
  const int64_t fit = kChunkBytes / (a2 * (Cin + Cout) * static_cast<int64_t>(sizeof(float)));
  const int64_t target = std::max(kMinChunkTiles, fit / 14 * 14);
  // As many chunks as the target size asks for, rounded up to a multiple of the thread count so
  // that every thread gets the same number of equal chunks.
  const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t chunks = (tiles + target - 1) / target;
  const int64_t balanced = std::min(tiles, (chunks + threads - 1) / threads * threads);
  const int64_t chunk = (tiles + balanced - 1) / balanced;
#pragma omp parallel if (balanced > 1)
  {
    std::unique_ptr<float[]> V(new float[chunk * a2 * Cin]), M(new float[chunk * a2 * Cout]);
#pragma omp for schedule(static)
    for (int64_t t0 = 0; t0 < tiles; t0 += chunk) {
      const int64_t count = std::min(chunk, tiles - t0);
      for (int64_t t = 0; t < count; t++) {
        const int64_t tile = t0 + t, n = tile / (tiles_h * tiles_w), th = tile / tiles_w % tiles_h, tw = tile % tiles_w;
        input_tile<Tile>(V.get() + t * a2 * Cin, x, n, th * m - pad_h, tw * m - pad_w, H, W, Cin);
      }
      // Inside the parallel region each GEMM runs on this thread alone.
      for (int xi = 0; xi < a2; xi++)
        gemm(false, false, count, Cout, Cin, 1.0f, V.get() + xi * Cin, a2 * Cin, U + xi * Cin * Cout, Cout, 0.0f,
             M.get() + xi * Cout, a2 * Cout);
      for (int64_t t = 0; t < count; t++) {
        const int64_t tile = t0 + t, n = tile / (tiles_h * tiles_w), th = tile / tiles_w % tiles_h, tw = tile % tiles_w;
        output_tile<Tile>(out, accumulate, M.get() + t * a2 * Cout, bias, n, th * m, tw * m, P, Q, Cout);
      }
    }
  }
}

void check_shape(const char* op, int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t pad_h,
                 int64_t pad_w) {
  TG_CHECK(N >= 0 && H >= 0 && W >= 0 && C >= 0 && K >= 0,
           std::string(op) + ": sizes must be non-negative, found N=" + std::to_string(N) + " H=" + std::to_string(H) +
               " W=" + std::to_string(W) + " C=" + std::to_string(C) + " K=" + std::to_string(K));
  TG_CHECK(pad_h >= 0 && pad_h <= 2 && pad_w >= 0 && pad_w <= 2,
           std::string(op) + ": padding must be in [0, 2] for a 3x3 Winograd convolution, found pad_h=" +
               std::to_string(pad_h) + " pad_w=" + std::to_string(pad_w));
  TG_CHECK(H + 2 * pad_h >= 3 && W + 2 * pad_w >= 3,
           std::string(op) + ": the padded input must be at least 3x3 (the filter), found " +
               std::to_string(H + 2 * pad_h) + "x" + std::to_string(W + 2 * pad_w));
}

template <class Tile>
void forward(float* out, const float* x, const float* weight, const float* bias, int64_t N, int64_t H, int64_t W,
             int64_t C, int64_t K, int64_t pad_h, int64_t pad_w) {
  std::unique_ptr<float[]> U(new float[Tile::alpha * Tile::alpha * C * K]);
  transform_filter<Tile>(U.get(), weight, C, K, false);
  convolve<Tile>(out, false, x, U.get(), bias, N, H, W, C, K, pad_h, pad_w);
}

template <class Tile>
void backward_input(float* dx, const float* dout, const float* weight, int64_t N, int64_t H, int64_t W, int64_t C,
                    int64_t K, int64_t pad_h, int64_t pad_w) {
  std::unique_ptr<float[]> U(new float[Tile::alpha * Tile::alpha * K * C]);
  transform_filter<Tile>(U.get(), weight, C, K, true);
  // dout (N,P,Q,K) padded by 2 - pad gives back H = P + 2 (2 - pad_h) - 2 rows.
  convolve<Tile>(dx, true, dout, U.get(), nullptr, N, H + 2 * pad_h - 2, W + 2 * pad_w - 2, K, C, 2 - pad_h,
                 2 - pad_w);
}

}  // namespace

void conv2d_winograd_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N,
                             int64_t H, int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w,
                             WinogradTile tile) {
  check_shape("conv2d_winograd_forward", N, H, W, C, K, pad_h, pad_w);
  if (N == 0 || K == 0) return;
  if (tile == WinogradTile::F2x2) forward<TileF2>(out, x, weight, bias, N, H, W, C, K, pad_h, pad_w);
  else forward<TileF4>(out, x, weight, bias, N, H, W, C, K, pad_h, pad_w);
}

void conv2d_winograd_backward_input(float* dx, const float* dout, const float* weight, int64_t N, int64_t H,
                                    int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w,
                                    WinogradTile tile) {
  check_shape("conv2d_winograd_backward_input", N, H, W, C, K, pad_h, pad_w);
  if (N == 0 || C == 0) return;
  if (tile == WinogradTile::F2x2) backward_input<TileF2>(dx, dout, weight, N, H, W, C, K, pad_h, pad_w);
  else backward_input<TileF4>(dx, dout, weight, N, H, W, C, K, pad_h, pad_w);
}

TG_CPU_ISA_END
}  // namespace tg::cpu
