// What the attention kernels share: tensor-core fragment loads and cp.async tile loads built on
// ops/cuda/mma.cuh (which states the instructions and the fragment layouts), a SIMT dot product,
// and the host-side limits and launch sizing. Device code; include from .cu files.
//
// The property the kernels rely on (see the layouts in ops/cuda/mma.cuh): two C tiles side by side
// (16 x 16) hold exactly the elements of one A fragment, so a score tile computed by mma feeds the
// next mma as its A operand without leaving registers (scores_as_a).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "ops/cuda/attention.h"
#include "ops/cuda/common.cuh"
#include "ops/cuda/mma.cuh"

namespace tg::cuda::attention_detail {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- fragment loads (the instructions and layouts: ops/cuda/mma.cuh) ----------------------------

// The A fragment of rows [r0, r0+16) x columns [c0, c0+16) of a row-major tile (ld elements per
// row): matrices 0..3 are (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15),
// (rows 8-15, cols 8-15), which is a[0..3] of the A layout (ops/cuda/mma.cuh).
template <class T>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* tile, int ld, int r0, int c0, int lane) {
  ldmatrix_x4(a, tile + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8);
}
// B fragments for B = X^T where X is a row-major tile whose rows are the n index: rows
// [n0, n0+16) x columns (the k index) [k0, k0+16). b[0], b[1] serve n-tile n0, b[2], b[3] n-tile
// n0+8 (matrices: rows 0-7 cols 0-7, rows 0-7 cols 8-15, rows 8-15 cols 0-7, rows 8-15 cols 8-15).
template <class T>
__device__ __forceinline__ void load_b_rows_n(uint32_t (&b)[4], const T* tile, int ld, int n0, int k0, int lane) {
  ldmatrix_x4(b, tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + k0 + ((lane >> 3) & 1) * 8);
}
// B fragments for B = X where X is a row-major tile whose rows are the k index: rows
// [k0, k0+16) x columns (the n index) [n0, n0+16), transposed by ldmatrix. b[0], b[1] serve
// n-tile n0, b[2], b[3] n-tile n0+8 (matrices: k 0-7 n 0-7, k 8-15 n 0-7, k 0-7 n 8-15, k 8-15 n 8-15).
template <class T>
__device__ __forceinline__ void load_b_rows_k(uint32_t (&b)[4], const T* tile, int ld, int k0, int n0, int lane) {
  ldmatrix_x4_trans(b, tile + (k0 + (lane & 15)) * ld + n0 + (lane >> 4) * 8);
}

// The A fragment for k-block kk (16 columns) of a score tile held as C fragments s[n][4]
// (n-tiles of 8 columns), rounded to T.
template <class T, int N>
__device__ __forceinline__ void scores_as_a(uint32_t (&a)[4], const float (&s)[N][4], int kk) {
  a[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
  a[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
  a[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// ---- tile loads ------------------------------------------------------------------------------

// Rows [r0, r0+ROWS) of one head's HS columns (rows `stride` elements apart in global memory)
// into a row-major shared tile with `ld` elements per row; rows at or past T become zeros, so
// padded queries and keys are finite and contribute nothing that is stored. All THREADS threads
// of the block call this; 16-byte chunks, consecutive threads on consecutive chunks of a row.
template <class T, int HS, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_async(T* tile, int ld, const T* head, int64_t stride, int r0, int T_) {
  constexpr int kChunks = HS * static_cast<int>(sizeof(T)) / 16;  // per row
  for (int c = threadIdx.x; c < ROWS * kChunks; c += THREADS) {
    const int r = c / kChunks, chunk = c % kChunks;
    const bool inside = r0 + r < T_;
    const T* src = head + (inside ? static_cast<int64_t>(r0 + r) * stride : 0) + chunk * (16 / sizeof(T));
    cp_async_16(tile + r * ld + chunk * (16 / sizeof(T)), src, inside ? 16 : 0);
  }
}

// ---- SIMT helpers ---------------------------------------------------------------------------------

// s[r] += own[r*HS + d] * other[d] over d < HS, for R rows `own` that every lane of the warp reads
// alike (broadcasts) and one row `other` per lane (padded rows: distinct banks across lanes).
// When HS is a multiple of 4 the own rows are read as float4 (one broadcast load per 4 columns
// instead of 4): `own` must then be 16-byte aligned. Fixed order either way: deterministic.
template <int R>
__device__ __forceinline__ void dot_rows(float (&s)[R], const float* own, const float* other, int HS) {
  if (HS % 4 == 0) {
    for (int d = 0; d < HS; d += 4) {
      const float o0 = other[d], o1 = other[d + 1], o2 = other[d + 2], o3 = other[d + 3];
#pragma unroll
      for (int r = 0; r < R; r++) {
        const float4 w = *reinterpret_cast<const float4*>(own + r * HS + d);
        s[r] = fmaf(w.x, o0, s[r]);
        s[r] = fmaf(w.y, o1, s[r]);
        s[r] = fmaf(w.z, o2, s[r]);
        s[r] = fmaf(w.w, o3, s[r]);
      }
    }
  } else {
    for (int d = 0; d < HS; d++) {
      const float o = other[d];
#pragma unroll
      for (int r = 0; r < R; r++) s[r] = fmaf(own[r * HS + d], o, s[r]);
    }
  }
}

// ---- host side ----------------------------------------------------------------------------------

// The largest dynamic shared memory a block may opt into on the current device.
inline int max_shared_per_block() {
  int device = 0, bytes = 0;
  TG_CUDA_CHECK(cudaGetDevice(&device));
  TG_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

// Raises `kernel`'s dynamic shared-memory limit to `bytes` (needed past 48 KB), or throws naming
// the op and the head size when the device has less.
template <class Kernel>
void allow_shared(Kernel kernel, size_t bytes, const char* op, int64_t head_size) {
  const int limit = max_shared_per_block();
  if (bytes > static_cast<size_t>(limit))
    throw Error(std::string(op) + ": head size " + std::to_string(head_size) + " needs " + std::to_string(bytes) +
                " bytes of shared memory per block, this GPU allows " + std::to_string(limit));
  TG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

// One block per (tile, batch*head), the heaviest tiles (latest in time) first so that the
// triangle's long rows do not finish last. Throws when the grid would not fit one dimension.
inline unsigned tile_grid(int64_t tiles, int64_t heads, const char* op) {
  const int64_t blocks = tiles * heads;
  if (blocks > 2147483647)
    throw Error(std::string(op) + ": " + std::to_string(blocks) + " blocks exceed the grid limit (B*NH*tiles)");
  return static_cast<unsigned>(blocks);
}

// The tensor-core path's preconditions: a 16-bit dtype, a head size it is instantiated for, and
// 16-byte aligned rows (cp.async moves 16-byte chunks; HS, C and 3C are then multiples of 8
// elements, so only the base pointers remain to check).
inline bool mma_head_size(int64_t hs) { return hs == 32 || hs == 64 || hs == 128; }

// What every attention launcher checks first: a head size the kernels serve and sizes that fit
// the kernels' 32-bit time and head indices (element offsets are 64-bit throughout).
inline void check_attention_sizes(const char* op, int64_t B, int64_t T, int64_t C, int64_t NH) {
  const int64_t hs = NH > 0 ? C / NH : 0;
  if (NH <= 0 || C % NH != 0)
    throw Error(std::string(op) + ": C = " + std::to_string(C) + " is not divisible by NH = " + std::to_string(NH));
  if (B * T * C == 0) return;
  if (hs > kAttentionMaxHeadSize)
    throw Error(std::string(op) + ": head size HS = " + std::to_string(hs) + " (C = " + std::to_string(C) +
                ", NH = " + std::to_string(NH) + ") is not supported on CUDA; the kernels serve HS <= " +
                std::to_string(kAttentionMaxHeadSize));
  if (T > 2147483647 / 2 || B * NH > 2147483647)
    throw Error(std::string(op) + ": T = " + std::to_string(T) + ", B*NH = " + std::to_string(B * NH) +
                " exceed the kernels' 32-bit limits");
}

}  // namespace tg::cuda::attention_detail
