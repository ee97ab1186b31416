// Causal self-attention backward on CUDA: dout (B,T,C), qkv, out, lse -> dqkv (B,T,3C) +=.
//
// FA2-style: D = rowsum(dout * out) first (attention_delta), then the probabilities are
// recomputed tile by tile from q, k and the saved lse; no T x T matrix is stored.
//
// Deterministic by construction: every gradient element is owned by one thread of one kernel and
// summed in a fixed order. FA2 proper computes dQ inside the dK/dV kernel and adds the partial
// dQ of each key tile with float atomics, whose order (hence rounding) varies from run to run.
// Here dQ has its own kernel over query tiles that recomputes S, P and dP (3 tile products
// instead of 1, 7 in all instead of 5: about 40% more tensor work for the backward) rather than
// storing per-key-tile dQ partials for a fixed-order reduction, which would cost
// T/64 x |q| f32 of scratch (1 GB at B=8, T=4096, C=2048) and as much extra memory traffic.
//
// Kernels (bf16/f16, HS 32/64/128, tensor cores; the SIMT pair serves every other case):
//   attention_dkdv_mma / attention_dkdv_simt: one block per key tile; loops over the query
//     tiles at or below the diagonal; dK = scale * dS^T Q, dV = P^T dO.
//   attention_dq_mma / attention_dq_simt: one block per query tile; loops over the key tiles at
//     or left of the diagonal; dQ = scale * dS K.
// with P = exp(S - lse), dP = dO V^T, dS = P * (dP - D).
#include "ops/cuda/attention.h"
#include "ops/cuda/attention_mma.cuh"

namespace tg::cuda {
namespace {

using namespace attention_detail;

// ---- D = rowsum(dout * out) ---------------------------------------------------------------------

// delta (B,NH,T) from dout, out (B,T,C). Grid-stride over the B*T*NH rows of HS elements, one
// warp per row: lanes stride over the head's columns, then a butterfly sum (fixed order). The
// (b, t, h) order of the rows keeps a warp's neighbours on neighbouring memory.
template <class T>
__global__ void attention_delta(float* __restrict__ delta, const T* __restrict__ dout, const T* __restrict__ out,
                                int64_t rows, int T_, int NH, int HS) {
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; w < rows; w += warps) {
    const int lane = threadIdx.x % 32;
    const T* go = dout + w * HS;  // row (b*T + t)*NH + h starts at ((b*T + t)*C + h*HS)
    const T* o = out + w * HS;
    float sum = 0.0f;
    for (int d = lane; d < HS; d += 32) sum = fmaf(to_f32(go[d]), to_f32(o[d]), sum);
    sum = warp_sum(sum);
    if (lane == 0) {
      const int64_t bt = w / NH, h = w % NH, b = bt / T_, t = bt % T_;
      delta[(b * NH + h) * T_ + t] = sum;
    }
  }
}

// ---- tensor-core kernels ------------------------------------------------------------------------

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kTile = 16 * kMmaWarps;  // rows a block owns: 16 per warp

template <int HS> constexpr int padded_ld() { return HS + 8; }  // +16 bytes: ldmatrix rows hit distinct banks
// Query tile of the dK/dV kernel: at HS = 128 the dK and dV accumulators take 128 registers a
// thread, so the S^T and dP^T tiles are kept at 16 x 32 to stay clear of spills.
template <int HS> constexpr int dkdv_query_tile() { return HS >= 128 ? 32 : 64; }

template <class T, int HS> constexpr size_t dkdv_shared_bytes() {
  return static_cast<size_t>(2 * kTile + 4 * dkdv_query_tile<HS>()) * padded_ld<HS>() * sizeof(T) +
         4 * dkdv_query_tile<HS>() * sizeof(float);
}
template <class T, int HS> constexpr size_t dq_shared_bytes() {
  return static_cast<size_t>(2 * kTile + 4 * kTile) * padded_ld<HS>() * sizeof(T);
}

// Adds a 16 x HS f32 accumulator tile (C fragments acc[n][4], rows g and g+8 of the warp's 16)
// times `factor` into rows r0.. of one head's columns of dqkv (rows `stride` apart), rows at or
// past T skipped: read, add in f32, round once.
template <class T, int HS>
__device__ __forceinline__ void add_rows(T* head, int64_t stride, int r0, int T_, const float (&acc)[HS / 8][4],
                                         float factor, int lane) {
  const int g = lane / 4, t4 = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int i = r0 + g + 8 * r;
    if (i >= T_) continue;
    T* dst = head + static_cast<int64_t>(i) * stride + 2 * t4;
#pragma unroll
    for (int n = 0; n < HS / 8; n++) {
      uint32_t* p = reinterpret_cast<uint32_t*>(dst + 8 * n);
      const float2 old = unpack2<T>(*p);
      *p = pack2<T>(old.x + factor * acc[n][2 * r], old.y + factor * acc[n][2 * r + 1]);
    }
  }
}

// Grid: one block per (key tile of 64, batch*head), earliest tiles first (they see the most
// queries: the heaviest blocks start first).
// Block: 4 warps, warp w owns keys j0 + 16w .. + 15 and their dK, dV accumulators (16 x HS each,
// C fragments). Per query tile of BQ (from the diagonal to T): S^T = K Q^T and dP^T = V dO^T as
// 16 x BQ tiles (A = K or V rows by ldmatrix, B = Q or dO rows), P^T = exp2(S^T*scale*log2e -
// lse*log2e) masked where query < key, dS^T = P^T (dP^T - D), then dV += P^T dO and dK += dS^T Q
// with P^T, dS^T as A operands straight from registers and dO, Q by ldmatrix.trans.
// Shared memory: K, V (64 x HS), Q and dO (two buffers of BQ x HS each, cp.async double
// buffering), lse*log2e and D (two buffers of BQ floats each, plain loads).
template <class T, int HS>
__global__ void __launch_bounds__(kMmaThreads) attention_dkdv_mma(T* __restrict__ dqkv, const T* __restrict__ dout,
                                                                  const T* __restrict__ qkv,
                                                                  const float* __restrict__ lse,
                                                                  const float* __restrict__ delta, int T_, int64_t C,
                                                                  int NH, int heads, float scale_log2,
                                                                  float scale) {
  constexpr int LD = padded_ld<HS>(), BQ = dkdv_query_tile<HS>();
  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* sK = reinterpret_cast<T*>(shared_raw);
  T* sV = sK + kTile * LD;
  T* sQ = sV + kTile * LD;    // [2][BQ][LD]
  T* sdO = sQ + 2 * BQ * LD;  // [2][BQ][LD]
  float* sL = reinterpret_cast<float*>(sdO + 2 * BQ * LD);  // [2][BQ] lse * log2 e (+inf past T)
  float* sD = sL + 2 * BQ;                                   // [2][BQ]

  const int bh = blockIdx.x % heads;
  const int kt = static_cast<int>(blockIdx.x / heads);  // earliest key tiles see the most queries: first
  const int64_t b = bh / NH, h = bh % NH, row = 3 * C;
  const T* q = qkv + b * T_ * row + h * HS;
  const T* k = q + C;
  const T* v = q + 2 * C;
  const T* go = dout + b * T_ * C + h * HS;
  const float* lse_h = lse + static_cast<int64_t>(bh) * T_;
  const float* delta_h = delta + static_cast<int64_t>(bh) * T_;
  const int j0 = kt * kTile;
  const int first_qt = j0 / BQ, query_tiles = (T_ + BQ - 1) / BQ;  // BQ divides kTile: i0 = j0 first

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int kw = j0 + 16 * warp;  // the warp's first key

  auto load_query_tile = [&](int qt, int buf) {
    const int i0 = qt * BQ;
    load_tile_async<T, HS, BQ, kMmaThreads>(sQ + buf * BQ * LD, LD, q, row, i0, T_);
    load_tile_async<T, HS, BQ, kMmaThreads>(sdO + buf * BQ * LD, LD, go, C, i0, T_);
    for (int e = threadIdx.x; e < BQ; e += kMmaThreads) {
      const int i = i0 + e;
      sL[buf * BQ + e] = i < T_ ? lse_h[i] * kLog2e : INFINITY;  // exp2(s - inf) = 0: padded queries drop out
      sD[buf * BQ + e] = i < T_ ? delta_h[i] : 0.0f;
    }
  };

  load_tile_async<T, HS, kTile, kMmaThreads>(sK, LD, k, row, j0, T_);
  load_tile_async<T, HS, kTile, kMmaThreads>(sV, LD, v, row, j0, T_);
  load_query_tile(first_qt, 0);
  cp_async_commit();

  float dk[HS / 8][4], dv[HS / 8][4];
#pragma unroll
  for (int n = 0; n < HS / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[n][e] = dv[n][e] = 0.0f;

  for (int qt = first_qt; qt < query_tiles; qt++) {
    const int buf = (qt - first_qt) & 1;
    if (qt + 1 < query_tiles) {  // prefetch into the buffer the previous iteration finished with
      load_query_tile(qt + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* cQ = sQ + buf * BQ * LD;
    const T* cdO = sdO + buf * BQ * LD;
    const float* cL = sL + buf * BQ;
    const float* cD = sD + buf * BQ;
    const int i0 = qt * BQ;

    // S^T (keys x queries) and dP^T, 16 x BQ each.
    float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
    for (int n = 0; n < BQ / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < HS / 16; ks++) {
      uint32_t ka[4], va[4];
      load_a(ka, sK, LD, 16 * warp, 16 * ks, lane);
      load_a(va, sV, LD, 16 * warp, 16 * ks, lane);
#pragma unroll
      for (int np = 0; np < BQ / 16; np++) {
        uint32_t bq[4], bo[4];
        load_b_rows_n(bq, cQ, LD, 16 * np, 16 * ks, lane);
        load_b_rows_n(bo, cdO, LD, 16 * np, 16 * ks, lane);
        mma_m16n8k16<T>(s[2 * np], ka, bq[0], bq[1]);
        mma_m16n8k16<T>(s[2 * np + 1], ka, bq[2], bq[3]);
        mma_m16n8k16<T>(dp[2 * np], va, bo[0], bo[1]);
        mma_m16n8k16<T>(dp[2 * np + 1], va, bo[2], bo[3]);
      }
    }

    // P^T and dS^T in place: element (key kw + g + 8(e>>1), query i0 + 8n + 2t4 + (e&1)).
    const bool need_mask = i0 < kw + 15;  // some query of the tile precedes some key of the warp
#pragma unroll
    for (int n = 0; n < BQ / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int jl = g + 8 * (e >> 1), il = 8 * n + 2 * t4 + (e & 1);
        float p = exp2f(s[n][e] * scale_log2 - cL[il]);
        if (need_mask && i0 + il < kw + jl) p = 0.0f;
        s[n][e] = p;
        dp[n][e] = p * (dp[n][e] - cD[il]);
      }

    // dV += P^T dO, dK += dS^T Q (k index = the tile's queries).
#pragma unroll
    for (int kk = 0; kk < BQ / 16; kk++) {
      uint32_t pa[4], dsa[4];
      scores_as_a<T>(pa, s, kk);
      scores_as_a<T>(dsa, dp, kk);
#pragma unroll
      for (int dn = 0; dn < HS / 16; dn++) {
        uint32_t bo[4], bq[4];
        load_b_rows_k(bo, cdO, LD, 16 * kk, 16 * dn, lane);
        load_b_rows_k(bq, cQ, LD, 16 * kk, 16 * dn, lane);
        mma_m16n8k16<T>(dv[2 * dn], pa, bo[0], bo[1]);
        mma_m16n8k16<T>(dv[2 * dn + 1], pa, bo[2], bo[3]);
        mma_m16n8k16<T>(dk[2 * dn], dsa, bq[0], bq[1]);
        mma_m16n8k16<T>(dk[2 * dn + 1], dsa, bq[2], bq[3]);
      }
    }
    __syncthreads();  // every warp is done with buffer `buf` before it is refilled
  }

  T* gk = dqkv + b * T_ * row + C + h * HS;
  add_rows<T, HS>(gk, row, kw, T_, dk, scale, lane);
  add_rows<T, HS>(gk + C, row, kw, T_, dv, 1.0f, lane);
}

// Grid: one block per (query tile of 64, batch*head), latest (heaviest) tiles first. Block: 4
// warps, warp w owns queries i0 + 16w .. + 15, their lse*log2e and D in registers and their dQ
// accumulator (16 x HS, C fragments). Per key tile of 64 (up to the diagonal): S = Q K^T and
// dP = dO V^T (A = Q or dO rows by ldmatrix, B = K or V rows), P = exp2(S*scale*log2e - lse*log2e)
// masked where key > query or key >= T, dS = P (dP - D), dQ += dS K (dS as A from registers,
// K by ldmatrix.trans). Shared memory: Q, dO (64 x HS), K and V (two buffers each, cp.async).
template <class T, int HS>
__global__ void __launch_bounds__(kMmaThreads) attention_dq_mma(T* __restrict__ dqkv, const T* __restrict__ dout,
                                                                const T* __restrict__ qkv,
                                                                const float* __restrict__ lse,
                                                                const float* __restrict__ delta, int T_, int64_t C,
                                                                int NH, int heads, int query_tiles, float scale_log2,
                                                                float scale) {
  constexpr int LD = padded_ld<HS>(), BK = kTile;
  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* sQ = reinterpret_cast<T*>(shared_raw);
  T* sdO = sQ + kTile * LD;
  T* sK = sdO + kTile * LD;  // [2][BK][LD]
  T* sV = sK + 2 * BK * LD;  // [2][BK][LD]

  const int bh = blockIdx.x % heads;
  const int qt = query_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int64_t b = bh / NH, h = bh % NH, row = 3 * C;
  const T* q = qkv + b * T_ * row + h * HS;
  const T* k = q + C;
  const T* v = q + 2 * C;
  const T* go = dout + b * T_ * C + h * HS;
  const int i0 = qt * kTile;
  const int key_tiles = (min(i0 + kTile, T_) + BK - 1) / BK;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int qw = i0 + 16 * warp;
  float row_lse[2], row_d[2];  // rows g and g + 8
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int i = qw + g + 8 * r;
    row_lse[r] = i < T_ ? lse[static_cast<int64_t>(bh) * T_ + i] * kLog2e : INFINITY;
    row_d[r] = i < T_ ? delta[static_cast<int64_t>(bh) * T_ + i] : 0.0f;
  }

  load_tile_async<T, HS, kTile, kMmaThreads>(sQ, LD, q, row, i0, T_);
  load_tile_async<T, HS, kTile, kMmaThreads>(sdO, LD, go, C, i0, T_);
  load_tile_async<T, HS, BK, kMmaThreads>(sK, LD, k, row, 0, T_);
  load_tile_async<T, HS, BK, kMmaThreads>(sV, LD, v, row, 0, T_);
  cp_async_commit();

  float dq[HS / 8][4];
#pragma unroll
  for (int n = 0; n < HS / 8; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;

  for (int kt = 0; kt < key_tiles; kt++) {
    if (kt + 1 < key_tiles) {
      const int nbuf = (kt + 1) & 1;
      load_tile_async<T, HS, BK, kMmaThreads>(sK + nbuf * BK * LD, LD, k, row, (kt + 1) * BK, T_);
      load_tile_async<T, HS, BK, kMmaThreads>(sV + nbuf * BK * LD, LD, v, row, (kt + 1) * BK, T_);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* cK = sK + (kt & 1) * BK * LD;
    const T* cV = sV + (kt & 1) * BK * LD;
    const int j0 = kt * BK;

    float s[BK / 8][4], dp[BK / 8][4];
#pragma unroll
    for (int n = 0; n < BK / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) s[n][e] = dp[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < HS / 16; ks++) {
      uint32_t qa[4], oa[4];
      load_a(qa, sQ, LD, 16 * warp, 16 * ks, lane);
      load_a(oa, sdO, LD, 16 * warp, 16 * ks, lane);
#pragma unroll
      for (int np = 0; np < BK / 16; np++) {
        uint32_t bk[4], bv[4];
        load_b_rows_n(bk, cK, LD, 16 * np, 16 * ks, lane);
        load_b_rows_n(bv, cV, LD, 16 * np, 16 * ks, lane);
        mma_m16n8k16<T>(s[2 * np], qa, bk[0], bk[1]);
        mma_m16n8k16<T>(s[2 * np + 1], qa, bk[2], bk[3]);
        mma_m16n8k16<T>(dp[2 * np], oa, bv[0], bv[1]);
        mma_m16n8k16<T>(dp[2 * np + 1], oa, bv[2], bv[3]);
      }
    }

    const bool need_mask = j0 + BK - 1 > qw || j0 + BK > T_;
#pragma unroll
    for (int n = 0; n < BK / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int r = e >> 1, i = qw + g + 8 * r, j = j0 + 8 * n + 2 * t4 + (e & 1);
        float p = exp2f(s[n][e] * scale_log2 - row_lse[r]);
        if (need_mask && (j > i || j >= T_)) p = 0.0f;
        dp[n][e] = p * (dp[n][e] - row_d[r]);
      }

#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) {
      uint32_t dsa[4];
      scores_as_a<T>(dsa, dp, kk);
#pragma unroll
      for (int dn = 0; dn < HS / 16; dn++) {
        uint32_t bk[4];
        load_b_rows_k(bk, cK, LD, 16 * kk, 16 * dn, lane);
        mma_m16n8k16<T>(dq[2 * dn], dsa, bk[0], bk[1]);
        mma_m16n8k16<T>(dq[2 * dn + 1], dsa, bk[2], bk[3]);
      }
    }
    __syncthreads();  // every warp is done with buffer kt & 1 before it is refilled
  }

  add_rows<T, HS>(dqkv + b * T_ * row + h * HS, row, qw, T_, dq, scale, lane);
}

template <class T, int HS>
void launch_backward_mma(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* delta, int64_t B,
                         int64_t T_, int64_t C, int64_t NH) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS)), scale_log2 = scale * kLog2e;
  const int64_t tiles = (T_ + kTile - 1) / kTile;
  const unsigned grid = tile_grid(tiles, B * NH, "attention_backward");

  const size_t dkdv_shared = dkdv_shared_bytes<T, HS>();
  allow_shared(attention_dkdv_mma<T, HS>, dkdv_shared, "attention_backward", HS);
  attention_dkdv_mma<T, HS><<<grid, kMmaThreads, dkdv_shared, stream()>>>(
      dqkv, dout, qkv, lse, delta, static_cast<int>(T_), C, static_cast<int>(NH), static_cast<int>(B * NH),
      scale_log2, scale);
  TG_CUDA_CHECK_LAUNCH("attention_dkdv_mma");

  const size_t dq_shared = dq_shared_bytes<T, HS>();
  allow_shared(attention_dq_mma<T, HS>, dq_shared, "attention_backward", HS);
  attention_dq_mma<T, HS><<<grid, kMmaThreads, dq_shared, stream()>>>(
      dqkv, dout, qkv, lse, delta, static_cast<int>(T_), C, static_cast<int>(NH), static_cast<int>(B * NH),
      static_cast<int>(tiles), scale_log2, scale);
  TG_CUDA_CHECK_LAUNCH("attention_dq_mma");
}

// ---- SIMT kernels -------------------------------------------------------------------------------

constexpr int kSimtWarps = 8;
constexpr int kSimtThreads = 32 * kSimtWarps;
constexpr int kRowsPerWarp = 4;
constexpr int kSimtRows = kSimtWarps * kRowsPerWarp;  // rows a block owns: 32
constexpr int kSimtTile = 32;                         // rows of the other side per tile: one per lane
constexpr int kChunks = kAttentionMaxHeadSize / 32;   // gradient columns per lane, at most

// Both SIMT kernels: own rows (4 per warp) against a tile of 32 other rows (one per lane).
// Own rows sit in shared memory unpadded (read as broadcasts), tile rows padded to HS + 1 floats
// (lane r reads row r's column d: distinct banks).
size_t simt_shared_bytes(int64_t hs) {
  return sizeof(float) * static_cast<size_t>(2 * kSimtRows * hs + 2 * kSimtTile * (hs + 1) + 2 * kSimtTile);
}

// Loads one head's rows [r0, r0 + 32) of `src` (rows `stride` apart) into `dst` (rows `ld`
// floats apart) times `factor`; rows at or past T become zeros.
template <class T>
__device__ __forceinline__ void load_rows_f32(float* dst, int ld, const T* src, int64_t stride, int r0, int T_,
                                              int HS, float factor) {
  for (int e = threadIdx.x; e < 32 * HS; e += kSimtThreads) {
    const int r = e / HS, d = e % HS;
    dst[r * ld + d] = r0 + r < T_ ? to_f32(src[static_cast<int64_t>(r0 + r) * stride + d]) * factor : 0.0f;
  }
}

// dK, dV. Grid: one block per (key tile of 32, batch*head), earliest first. Block: 8 warps, warp w owns keys
// j0 + 4w .. + 3 (K pre-scaled by scale*log2e and V in shared memory, read as broadcasts) and
// their dK, dV accumulators (lane d holds columns d, d+32, ...). Per query tile of 32 from the
// diagonal on: lane i computes s = k . q_i, dp = v . dO_i for the warp's 4 keys, p = exp2(s -
// lse_i*log2e) (0 where query < key or past T), ds = p (dp - D_i); then for each query of the
// tile, broadcast by shuffle, dV += p dO_i and dK += ds q_i over the lane's columns.
template <class T>
__global__ void __launch_bounds__(kSimtThreads, 2) attention_dkdv_simt(T* __restrict__ dqkv, const T* __restrict__ dout,
                                                                    const T* __restrict__ qkv,
                                                                    const float* __restrict__ lse,
                                                                    const float* __restrict__ delta, int T_, int64_t C,
                                                                    int NH, int HS, int heads, float scale_log2,
                                                                    float scale) {
  extern __shared__ __align__(16) float shared_f32[];  // own rows first: float4-aligned when HS % 4 == 0
  float* sK = shared_f32;                 // [32][HS], scaled
  float* sV = sK + kSimtRows * HS;        // [32][HS]
  float* sQ = sV + kSimtRows * HS;        // [32][HS + 1]
  float* sdO = sQ + kSimtTile * (HS + 1); // [32][HS + 1]
  float* sL = sdO + kSimtTile * (HS + 1); // [32] lse * log2 e
  float* sD = sL + kSimtTile;             // [32]

  const int bh = blockIdx.x % heads;
  const int kt = static_cast<int>(blockIdx.x / heads);  // earliest (heaviest) key tiles first
  const int64_t b = bh / NH, h = bh % NH, row = 3 * C;
  const T* q = qkv + b * T_ * row + h * HS;
  const T* k = q + C;
  const T* v = q + 2 * C;
  const T* go = dout + b * T_ * C + h * HS;
  const int j0 = kt * kSimtRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int jw = j0 + warp * kRowsPerWarp;

  load_rows_f32(sK, HS, k, row, j0, T_, HS, scale_log2);
  load_rows_f32(sV, HS, v, row, j0, T_, HS, 1.0f);

  float dk[kRowsPerWarp][kChunks], dv[kRowsPerWarp][kChunks];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++)
#pragma unroll
    for (int c = 0; c < kChunks; c++) dk[rr][c] = dv[rr][c] = 0.0f;
  const float* myK = sK + warp * kRowsPerWarp * HS;
  const float* myV = sV + warp * kRowsPerWarp * HS;

  for (int i0 = j0; i0 < T_; i0 += kSimtTile) {
    __syncthreads();  // the previous tile's readers are done (and K, V written, on the first)
    load_rows_f32(sQ, HS + 1, q, row, i0, T_, HS, 1.0f);
    load_rows_f32(sdO, HS + 1, go, C, i0, T_, HS, 1.0f);
    for (int e = threadIdx.x; e < kSimtTile; e += kSimtThreads) {
      const int i = i0 + e;
      sL[e] = i < T_ ? lse[static_cast<int64_t>(bh) * T_ + i] * kLog2e : INFINITY;
      sD[e] = i < T_ ? delta[static_cast<int64_t>(bh) * T_ + i] : 0.0f;
    }
    __syncthreads();

    float s[kRowsPerWarp] = {}, dp[kRowsPerWarp] = {};
    dot_rows(s, myK, sQ + lane * (HS + 1), HS);
    dot_rows(dp, myV, sdO + lane * (HS + 1), HS);
    const int i = i0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const float p = i < jw + rr ? 0.0f : exp2f(s[rr] - sL[lane]);  // past T: sL = +inf gives 0
      s[rr] = p;
      dp[rr] = p * (dp[rr] - sD[lane]);
    }
    const int queries = min(kSimtTile, T_ - i0);
    for (int ii = 0; ii < queries; ii++) {
      float p[kRowsPerWarp], ds[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) {
        p[rr] = __shfl_sync(0xffffffffu, s[rr], ii);
        ds[rr] = __shfl_sync(0xffffffffu, dp[rr], ii);
      }
      const float* qi = sQ + ii * (HS + 1);
      const float* oi = sdO + ii * (HS + 1);
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        const int d = 32 * c + lane;
        if (32 * c < HS) {
          const float qd = d < HS ? qi[d] : 0.0f, od = d < HS ? oi[d] : 0.0f;
#pragma unroll
          for (int rr = 0; rr < kRowsPerWarp; rr++) {
            dv[rr][c] = fmaf(p[rr], od, dv[rr][c]);
            dk[rr][c] = fmaf(ds[rr], qd, dk[rr][c]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int j = jw + rr;
    if (j >= T_) continue;
    T* gk = dqkv + (b * T_ + j) * row + C + h * HS;
    T* gv = gk + C;
#pragma unroll
    for (int c = 0; c < kChunks; c++) {
      const int d = 32 * c + lane;
      if (d < HS) {
        gk[d] = from_f32<T>(to_f32(gk[d]) + scale * dk[rr][c]);
        gv[d] = from_f32<T>(to_f32(gv[d]) + dv[rr][c]);
      }
    }
  }
}

// dQ. Grid: one block per (query tile of 32, batch*head), latest first. Block: 8 warps, warp w
// owns queries i0 + 4w .. + 3 (q pre-scaled by scale*log2e and dO in shared memory, broadcast
// reads), their lse and D in registers, and their dQ accumulators (lane d: columns d, d+32, ...).
// Per key tile of 32 up to the diagonal: lane j computes s = q . k_j, dp = dO . v_j, p = exp2(s -
// lse*log2e) (0 where key > query or past T), ds = p (dp - D); then for each key, broadcast by
// shuffle, dQ += ds k_j over the lane's columns.
template <class T>
__global__ void __launch_bounds__(kSimtThreads, 2) attention_dq_simt(T* __restrict__ dqkv, const T* __restrict__ dout,
                                                                  const T* __restrict__ qkv,
                                                                  const float* __restrict__ lse,
                                                                  const float* __restrict__ delta, int T_, int64_t C,
                                                                  int NH, int HS, int heads, int query_tiles,
                                                                  float scale_log2, float scale) {
  extern __shared__ __align__(16) float shared_f32[];  // own rows first: float4-aligned when HS % 4 == 0
  float* sQ = shared_f32;                 // [32][HS], scaled
  float* sdO = sQ + kSimtRows * HS;       // [32][HS]
  float* sK = sdO + kSimtRows * HS;       // [32][HS + 1]
  float* sV = sK + kSimtTile * (HS + 1);  // [32][HS + 1]

  const int bh = blockIdx.x % heads;
  const int qt = query_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int64_t b = bh / NH, h = bh % NH, row = 3 * C;
  const T* q = qkv + b * T_ * row + h * HS;
  const T* k = q + C;
  const T* v = q + 2 * C;
  const T* go = dout + b * T_ * C + h * HS;
  const int i0 = qt * kSimtRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int iw = i0 + warp * kRowsPerWarp;

  load_rows_f32(sQ, HS, q, row, i0, T_, HS, scale_log2);
  load_rows_f32(sdO, HS, go, C, i0, T_, HS, 1.0f);
  float row_lse[kRowsPerWarp], row_d[kRowsPerWarp], dq[kRowsPerWarp][kChunks];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = iw + rr;
    row_lse[rr] = i < T_ ? lse[static_cast<int64_t>(bh) * T_ + i] * kLog2e : INFINITY;
    row_d[rr] = i < T_ ? delta[static_cast<int64_t>(bh) * T_ + i] : 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; c++) dq[rr][c] = 0.0f;
  }
  const float* myQ = sQ + warp * kRowsPerWarp * HS;
  const float* myO = sdO + warp * kRowsPerWarp * HS;
  const int key_end = min(i0 + kSimtRows, T_);

  for (int j0 = 0; j0 < key_end; j0 += kSimtTile) {
    __syncthreads();
    load_rows_f32(sK, HS + 1, k, row, j0, T_, HS, 1.0f);
    load_rows_f32(sV, HS + 1, v, row, j0, T_, HS, 1.0f);
    __syncthreads();

    float s[kRowsPerWarp] = {}, dp[kRowsPerWarp] = {};
    dot_rows(s, myQ, sK + lane * (HS + 1), HS);
    dot_rows(dp, myO, sV + lane * (HS + 1), HS);
    const int j = j0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const float p = (j > iw + rr || j >= T_) ? 0.0f : exp2f(s[rr] - row_lse[rr]);
      dp[rr] = p * (dp[rr] - row_d[rr]);
    }
    const int keys = min(kSimtTile, key_end - j0);
    for (int jj = 0; jj < keys; jj++) {
      float ds[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) ds[rr] = __shfl_sync(0xffffffffu, dp[rr], jj);
      const float* kj = sK + jj * (HS + 1);
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        const int d = 32 * c + lane;
        if (32 * c < HS) {
          const float kd = d < HS ? kj[d] : 0.0f;
#pragma unroll
          for (int rr = 0; rr < kRowsPerWarp; rr++) dq[rr][c] = fmaf(ds[rr], kd, dq[rr][c]);
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = iw + rr;
    if (i >= T_) continue;
    T* gq = dqkv + (b * T_ + i) * row + h * HS;
#pragma unroll
    for (int c = 0; c < kChunks; c++) {
      const int d = 32 * c + lane;
      if (d < HS) gq[d] = from_f32<T>(to_f32(gq[d]) + scale * dq[rr][c]);
    }
  }
}

template <class T>
void launch_backward_simt(T* dqkv, const T* dout, const T* qkv, const float* lse, const float* delta, int64_t B,
                          int64_t T_, int64_t C, int64_t NH) {
  const int64_t hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs)), scale_log2 = scale * kLog2e;
  const int64_t tiles = (T_ + kSimtRows - 1) / kSimtRows;
  const unsigned grid = tile_grid(tiles, B * NH, "attention_backward");
  const size_t shared = simt_shared_bytes(hs);
  allow_shared(attention_dkdv_simt<T>, shared, "attention_backward", hs);
  attention_dkdv_simt<T><<<grid, kSimtThreads, shared, stream()>>>(
      dqkv, dout, qkv, lse, delta, static_cast<int>(T_), C, static_cast<int>(NH), static_cast<int>(hs),
      static_cast<int>(B * NH), scale_log2, scale);
  TG_CUDA_CHECK_LAUNCH("attention_dkdv_simt");
  allow_shared(attention_dq_simt<T>, shared, "attention_backward", hs);
  attention_dq_simt<T><<<grid, kSimtThreads, shared, stream()>>>(
      dqkv, dout, qkv, lse, delta, static_cast<int>(T_), C, static_cast<int>(NH), static_cast<int>(hs),
      static_cast<int>(B * NH), static_cast<int>(tiles), scale_log2, scale);
  TG_CUDA_CHECK_LAUNCH("attention_dq_simt");
}

template <class T>
void backward_dispatch(void* dqkv, const void* dout, const void* qkv, const void* out, const float* lse, float* delta,
                       int64_t B, int64_t T_, int64_t C, int64_t NH) {
  const int64_t hs = C / NH, rows = B * T_ * NH;
  T* dx = static_cast<T*>(dqkv);
  const T* dy = static_cast<const T*>(dout);
  const T* x = static_cast<const T*>(qkv);
  attention_delta<T><<<grid_for(rows * 32, 256), 256, 0, stream()>>>(delta, dy, static_cast<const T*>(out), rows,
                                                                     static_cast<int>(T_), static_cast<int>(NH),
                                                                     static_cast<int>(hs));
  TG_CUDA_CHECK_LAUNCH("attention_delta");
  if constexpr (!std::is_same_v<T, float>) {
    if (mma_head_size(hs) && aligned16(dqkv) && aligned16(dout) && aligned16(qkv)) {
      switch (hs) {
        case 32: launch_backward_mma<T, 32>(dx, dy, x, lse, delta, B, T_, C, NH); return;
        case 64: launch_backward_mma<T, 64>(dx, dy, x, lse, delta, B, T_, C, NH); return;
        default: launch_backward_mma<T, 128>(dx, dy, x, lse, delta, B, T_, C, NH); return;
      }
    }
  }
  launch_backward_simt<T>(dx, dy, x, lse, delta, B, T_, C, NH);
}

}  // namespace

void attention_backward(DType dtype, void* dqkv, const void* dout, const void* qkv, const void* out,
                        const float* lse, float* delta, int64_t B, int64_t T, int64_t C, int64_t NH) {
  check_attention_sizes("attention_backward", B, T, C, NH);
  if (B * T * C == 0) return;
  TG_DISPATCH_FLOAT(dtype, "attention_backward",
                    S, backward_dispatch<S>(dqkv, dout, qkv, out, lse, delta, B, T, C, NH));
}

}  // namespace tg::cuda
