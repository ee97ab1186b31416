// Causal self-attention forward on CUDA: qkv (B,T,3C) -> out (B,T,C), lse (B,NH,T) f32.
//
// Two kernels, both flash-style (online softmax in f32, no T x T matrix in memory, the row's
// log-sum-exp saved for the backward), both reading q, k and v in place from the packed qkv rows:
//  - attention_forward_mma: bf16/f16 with HS 32, 64 or 128 on tensor cores (mma.sync m16n8k16,
//    f32 accumulation), the Q tile in registers, K/V tiles double-buffered through shared memory
//    by cp.async, key tiles above the diagonal never visited, the diagonal tile masked.
//  - attention_forward_simt: every dtype and head size 1..256 in f32 arithmetic on CUDA cores
//    (f32 training, and head sizes the tensor-core kernel is not instantiated for).
// Scores are kept in the log2 domain (q pre-multiplied by scale * log2 e) so that exp is one exp2.
#include "ops/cuda/attention.h"
#include "ops/cuda/attention_mma.cuh"

namespace tg::cuda {
namespace {

using namespace attention_detail;

// ---- tensor-core kernel -----------------------------------------------------------------------

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kFwdBQ = 16 * kMmaWarps;  // queries per block, 16 per warp (one mma row tile)
constexpr int kFwdBK = 64;              // keys per tile

template <int HS> constexpr int padded_ld() { return HS + 8; }  // +16 bytes: ldmatrix rows hit distinct banks

template <class T, int HS> constexpr size_t forward_mma_shared_bytes() {
  return static_cast<size_t>(kFwdBQ + 4 * kFwdBK) * padded_ld<HS>() * sizeof(T);
}

// Grid: one block per (query tile of 64, batch*head), latest tiles first; block: 4 warps, warp w
// owns queries i0 + 16w .. i0 + 16w + 15 and keeps their q fragments, running max m, partial
// sums l and the 16 x HS output accumulator in registers. Each thread holds rows g and g+8 of its
// warp's 16 (g = lane / 4) and, per 8-column tile, columns 2t, 2t+1 (t = lane % 4): its row
// statistics are combined across the 4 threads of a quad with two shuffles.
// Shared memory: Q (64 x HS), then K and V, two buffers each (64 x HS), rows padded by 8 elements.
template <class T, int HS>
__global__ void __launch_bounds__(kMmaThreads, 1) attention_forward_mma(T* __restrict__ out, float* __restrict__ lse,
                                                                     const T* __restrict__ qkv, int T_, int64_t C,
                                                                     int NH, int heads, int query_tiles,
                                                                     float scale_log2) {
  constexpr int LD = padded_ld<HS>();
  extern __shared__ __align__(16) unsigned char shared_raw[];
  T* sQ = reinterpret_cast<T*>(shared_raw);
  T* sK = sQ + kFwdBQ * LD;      // [2][kFwdBK][LD]
  T* sV = sK + 2 * kFwdBK * LD;  // [2][kFwdBK][LD]

  const int bh = blockIdx.x % heads;
  const int qt = query_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int64_t b = bh / NH, h = bh % NH, row = 3 * C;
  const T* q = qkv + b * T_ * row + h * HS;
  const T* k = q + C;
  const T* v = q + 2 * C;
  const int i0 = qt * kFwdBQ;
  const int key_tiles = (min(i0 + kFwdBQ, T_) + kFwdBK - 1) / kFwdBK;  // keys up to the last query

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int qw = i0 + 16 * warp;  // the warp's first query

  load_tile_async<T, HS, kFwdBQ, kMmaThreads>(sQ, LD, q, row, i0, T_);
  load_tile_async<T, HS, kFwdBK, kMmaThreads>(sK, LD, k, row, 0, T_);
  load_tile_async<T, HS, kFwdBK, kMmaThreads>(sV, LD, v, row, 0, T_);
  cp_async_commit();

  uint32_t qf[HS / 16][4];
  float o[HS / 8][4];
#pragma unroll
  for (int n = 0; n < HS / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int kt = 0; kt < key_tiles; kt++) {
    // Prefetch tile kt+1 into the other buffer (free: the barrier closing iteration kt-1 saw
    // every warp finish reading it), then wait for tile kt only.
    if (kt + 1 < key_tiles) {
      const int buf = (kt + 1) & 1;
      load_tile_async<T, HS, kFwdBK, kMmaThreads>(sK + buf * kFwdBK * LD, LD, k, row, (kt + 1) * kFwdBK, T_);
      load_tile_async<T, HS, kFwdBK, kMmaThreads>(sV + buf * kFwdBK * LD, LD, v, row, (kt + 1) * kFwdBK, T_);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (kt == 0) {
#pragma unroll
      for (int ks = 0; ks < HS / 16; ks++) load_a(qf[ks], sQ, LD, 16 * warp, 16 * ks, lane);
    }
    const T* cK = sK + (kt & 1) * kFwdBK * LD;
    const T* cV = sV + (kt & 1) * kFwdBK * LD;
    const int j0 = kt * kFwdBK;

    // S = Q K^T for the warp's 16 queries x 64 keys.
    float s[kFwdBK / 8][4];
#pragma unroll
    for (int n = 0; n < kFwdBK / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < HS / 16; ks++) {
#pragma unroll
      for (int np = 0; np < kFwdBK / 16; np++) {
        uint32_t bk[4];
        load_b_rows_n(bk, cK, LD, 16 * np, 16 * ks, lane);
        mma_m16n8k16<T>(s[2 * np], qf[ks], bk[0], bk[1]);
        mma_m16n8k16<T>(s[2 * np + 1], qf[ks], bk[2], bk[3]);
      }
    }

    // Scale into the log2 domain; mask keys after the query (the diagonal tile) and past T.
    const bool need_mask = j0 + kFwdBK - 1 > qw || j0 + kFwdBK > T_;
#pragma unroll
    for (int n = 0; n < kFwdBK / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int i = qw + g + 8 * (e >> 1), j = j0 + 8 * n + 2 * t4 + (e & 1);
        float x = s[n][e] * scale_log2;
        if (need_mask && (j > i || j >= T_)) x = -INFINITY;
        s[n][e] = x;
      }

    // Online softmax for rows g (r = 0) and g + 8 (r = 1).
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kFwdBK / 8; n++) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m[r], mx);
      // A row with no visible key so far keeps max -inf; subtracting 0 then gives exp2(-inf) = 0
      // instead of exp2(-inf - -inf) = NaN.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[r] - m_use);
      m[r] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kFwdBK / 8; n++) {
        s[n][2 * r] = exp2f(s[n][2 * r] - m_use);
        s[n][2 * r + 1] = exp2f(s[n][2 * r + 1] - m_use);
        sum += s[n][2 * r] + s[n][2 * r + 1];
      }
      l[r] = l[r] * alpha + sum;
#pragma unroll
      for (int n = 0; n < HS / 8; n++) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }

    // O += P V, P straight from the score registers (rounded to T), V^T fragments by ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < kFwdBK / 16; kk++) {
      uint32_t pa[4];
      scores_as_a<T>(pa, s, kk);
#pragma unroll
      for (int dp = 0; dp < HS / 16; dp++) {
        uint32_t bv[4];
        load_b_rows_k(bv, cV, LD, 16 * kk, 16 * dp, lane);
        mma_m16n8k16<T>(o[2 * dp], pa, bv[0], bv[1]);
        mma_m16n8k16<T>(o[2 * dp + 1], pa, bv[2], bv[3]);
      }
    }
    __syncthreads();  // every warp is done with buffer kt & 1 before it is refilled
  }

  // out = O / l (l summed over the quad first), lse = ln 2 * (m + log2 l).
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int i = qw + g + 8 * r;
    if (i >= T_) continue;
    const float inv = 1.0f / sum;
    T* dst = out + (b * T_ + i) * C + h * HS + 2 * t4;
#pragma unroll
    for (int n = 0; n < HS / 8; n++)
      *reinterpret_cast<uint32_t*>(dst + 8 * n) = pack2<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    if (t4 == 0) lse[static_cast<int64_t>(bh) * T_ + i] = (m[r] + log2f(sum)) * kLn2;
  }
}

template <class T, int HS>
void launch_forward_mma(T* out, float* lse, const T* qkv, int64_t B, int64_t T_, int64_t C, int64_t NH,
                        float scale_log2) {
  const size_t shared = forward_mma_shared_bytes<T, HS>();
  allow_shared(attention_forward_mma<T, HS>, shared, "attention_forward", HS);
  const int64_t tiles = (T_ + kFwdBQ - 1) / kFwdBQ;
  const unsigned grid = tile_grid(tiles, B * NH, "attention_forward");
  attention_forward_mma<T, HS><<<grid, kMmaThreads, shared, stream()>>>(
      out, lse, qkv, static_cast<int>(T_), C, static_cast<int>(NH), static_cast<int>(B * NH),
      static_cast<int>(tiles), scale_log2);
  TG_CUDA_CHECK_LAUNCH("attention_forward_mma");
}

// ---- SIMT kernel --------------------------------------------------------------------------------

constexpr int kSimtWarps = 8;
constexpr int kSimtThreads = 32 * kSimtWarps;
constexpr int kRowsPerWarp = 4;
constexpr int kSimtBQ = kSimtWarps * kRowsPerWarp;  // 32 queries per block
constexpr int kSimtBK = 32;                          // keys per tile: one per lane
constexpr int kChunks = kAttentionMaxHeadSize / 32;  // output columns per lane, at most

size_t forward_simt_shared_bytes(int64_t hs) {
  return sizeof(float) * static_cast<size_t>(kSimtBQ * hs + kSimtBK * (hs + 1) + kSimtBK * hs);
}

// Grid: one block per (query tile of 32, batch*head), latest tiles first; block: 8 warps, warp w
// owns queries i0 + 4w .. i0 + 4w + 3 and processes them together so each K and V element read
// from shared memory serves 4 queries. Per key tile, lane j scores key j0 + j against the warp's
// 4 queries (K rows padded to HS + 1 floats: lanes reading one column hit distinct banks), the
// warp reduces max and sum with butterflies (fixed order), then lane d accumulates output
// columns d, d + 32, ... for every key, the probabilities broadcast by shuffles.
// Shared memory (f32): Q (32 x HS, pre-scaled by scale * log2 e), K (32 x (HS+1)), V (32 x HS).
template <class T>
__global__ void __launch_bounds__(kSimtThreads, 2) attention_forward_simt(T* __restrict__ out, float* __restrict__ lse,
                                                                       const T* __restrict__ qkv, int T_, int64_t C,
                                                                       int NH, int HS, int heads, int query_tiles,
                                                                       float scale_log2) {
  extern __shared__ __align__(16) float shared_f32[];  // Q first: its rows (HS % 4 == 0) are float4-aligned
  float* sQ = shared_f32;
  float* sK = sQ + kSimtBQ * HS;
  float* sV = sK + kSimtBK * (HS + 1);

  const int bh = blockIdx.x % heads;
  const int qt = query_tiles - 1 - static_cast<int>(blockIdx.x / heads);
  const int64_t b = bh / NH, h = bh % NH, row = 3 * C;
  const T* q = qkv + b * T_ * row + h * HS;
  const T* k = q + C;
  const T* v = q + 2 * C;
  const int i0 = qt * kSimtBQ;
  const int key_tiles = (min(i0 + kSimtBQ, T_) + kSimtBK - 1) / kSimtBK;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int e = threadIdx.x; e < kSimtBQ * HS; e += kSimtThreads) {
    const int r = e / HS, d = e % HS;
    sQ[e] = i0 + r < T_ ? to_f32(q[static_cast<int64_t>(i0 + r) * row + d]) * scale_log2 : 0.0f;
  }

  float acc[kRowsPerWarp][kChunks];
  float m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; c++) acc[rr][c] = 0.0f;
  }
  const float* myQ = sQ + warp * kRowsPerWarp * HS;

  for (int kt = 0; kt < key_tiles; kt++) {
    const int j0 = kt * kSimtBK;
    __syncthreads();  // the previous tile's readers are done (and sQ is written, on the first)
    for (int e = threadIdx.x; e < kSimtBK * HS; e += kSimtThreads) {
      const int r = e / HS, d = e % HS;
      const bool inside = j0 + r < T_;
      const int64_t at = static_cast<int64_t>(j0 + r) * row + d;
      sK[r * (HS + 1) + d] = inside ? to_f32(k[at]) : 0.0f;
      sV[r * HS + d] = inside ? to_f32(v[at]) : 0.0f;
    }
    __syncthreads();

    float s[kRowsPerWarp] = {};
    dot_rows(s, myQ, sK + lane * (HS + 1), HS);
    const int j = j0 + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; rr++) {
      const int i = i0 + warp * kRowsPerWarp + rr;
      if (j > i || j >= T_) s[rr] = -INFINITY;
      const float m_new = fmaxf(m[rr], warp_max(s[rr]));
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet: avoid -inf - -inf
      const float alpha = exp2f(m[rr] - m_use);
      s[rr] = exp2f(s[rr] - m_use);
      l[rr] = l[rr] * alpha + warp_sum(s[rr]);
      m[rr] = m_new;
#pragma unroll
      for (int c = 0; c < kChunks; c++) acc[rr][c] *= alpha;
    }
    const int keys = min(kSimtBK, T_ - j0);
    for (int jj = 0; jj < keys; jj++) {
      float p[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; rr++) p[rr] = __shfl_sync(0xffffffffu, s[rr], jj);
      const float* vr = sV + jj * HS;
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        const int d = 32 * c + lane;
        if (32 * c < HS) {
          const float vd = d < HS ? vr[d] : 0.0f;
#pragma unroll
          for (int rr = 0; rr < kRowsPerWarp; rr++) acc[rr][c] = fmaf(p[rr], vd, acc[rr][c]);
        }
      }
    }
  }

#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; rr++) {
    const int i = i0 + warp * kRowsPerWarp + rr;
    if (i >= T_) continue;
    const float inv = 1.0f / l[rr];
    T* dst = out + (b * T_ + i) * C + h * HS;
#pragma unroll
    for (int c = 0; c < kChunks; c++) {
      const int d = 32 * c + lane;
      if (d < HS) dst[d] = from_f32<T>(acc[rr][c] * inv);
    }
    if (lane == 0) lse[static_cast<int64_t>(bh) * T_ + i] = (m[rr] + log2f(l[rr])) * kLn2;
  }
}

template <class T>
void launch_forward_simt(T* out, float* lse, const T* qkv, int64_t B, int64_t T_, int64_t C, int64_t NH,
                         float scale_log2) {
  const int64_t hs = C / NH;
  const size_t shared = forward_simt_shared_bytes(hs);
  allow_shared(attention_forward_simt<T>, shared, "attention_forward", hs);
  const int64_t tiles = (T_ + kSimtBQ - 1) / kSimtBQ;
  const unsigned grid = tile_grid(tiles, B * NH, "attention_forward");
  attention_forward_simt<T><<<grid, kSimtThreads, shared, stream()>>>(
      out, lse, qkv, static_cast<int>(T_), C, static_cast<int>(NH), static_cast<int>(hs), static_cast<int>(B * NH),
      static_cast<int>(tiles), scale_log2);
  TG_CUDA_CHECK_LAUNCH("attention_forward_simt");
}

template <class T>
void forward_dispatch(void* out, float* lse, const void* qkv, int64_t B, int64_t T_, int64_t C, int64_t NH) {
  const int64_t hs = C / NH;
  const float scale_log2 = kLog2e / std::sqrt(static_cast<float>(hs));
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(qkv);
  if constexpr (!std::is_same_v<T, float>) {
    if (mma_head_size(hs) && aligned16(out) && aligned16(qkv)) {
      switch (hs) {
        case 32: launch_forward_mma<T, 32>(o, lse, x, B, T_, C, NH, scale_log2); return;
        case 64: launch_forward_mma<T, 64>(o, lse, x, B, T_, C, NH, scale_log2); return;
        default: launch_forward_mma<T, 128>(o, lse, x, B, T_, C, NH, scale_log2); return;
      }
    }
  }
  launch_forward_simt<T>(o, lse, x, B, T_, C, NH, scale_log2);
}

}  // namespace

void attention_forward(DType dtype, void* out, float* lse, const void* qkv, int64_t B, int64_t T, int64_t C,
                       int64_t NH) {
  check_attention_sizes("attention_forward", B, T, C, NH);
  if (B * T * C == 0) return;
  TG_DISPATCH_FLOAT(dtype, "attention_forward", S, forward_dispatch<S>(out, lse, qkv, B, T, C, NH));
}

}  // namespace tg::cuda
