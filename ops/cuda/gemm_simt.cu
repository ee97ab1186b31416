// f32 GEMM on the CUDA cores (FFMA): the --dtype fp32 path. Exact f32 products summed in f32 in
// ascending k order, so it matches the CPU kernel to f32 rounding (no TF32).
//
// Tiling. A block computes a 128x128 tile of C with 256 threads in a 16 x 16 grid; thread (ty, tx)
// owns an 8x8 sub-tile: rows {ty*4 + i, 64 + ty*4 + i} and columns {tx*4 + j, 64 + tx*4 + j}
// (i, j < 4). Splitting each thread's rows and columns into two groups of 4, 64 apart, lets it read
// its operands from shared memory as float4s that a warp's 16 tx values lay side by side
// (conflict-free) while the 2 ty values of a warp broadcast. Per k step: 4 float4 loads, 64 FFMA.
// K advances 8 per tile; shared memory is double-buffered: the next tile's global loads are
// issued into registers before the current tile's FMAs, and stored to the other buffer after
// them, so one barrier per tile suffices. The 64 accumulators and operands take ~170 registers (no
// spills), so one 8-warp block runs per SM; its 64 independent FMAs per k step are the latency
// hiding. (Capping at 128 registers for two blocks per SM spills the accumulators.)
//
// Shared layout: As[k][m] and Bs[k][n], k-major whatever the transposes, each row padded to 132
// floats (528 bytes, still 16-byte aligned for the float4 reads). Global loads follow the storage:
//   k contiguous (A not transposed, B transposed): thread -> row tid/2, k (tid%2)*4 + j
//   m/n contiguous (A transposed, B not transposed): thread -> k tid/32, column tid%32 + 32j
// Every load is bounds-checked (any M, N, K, ld and alignment); missing elements are 0.
#include "ops/cuda/gemm_internal.cuh"

namespace tg::cuda::gemm_detail {

namespace {

constexpr int kTile = 128, kTileK = 8, kThreads = 256, kPad = 4;
constexpr int kRowFloats = kTile + kPad;

// The 4 elements this thread loads of one operand's 128 x 8 tile, at the (outer, k) positions
// described above. The matrix is stored row-major with row stride ld: as (outer, K) when
// K_CONTIGUOUS, else as (K, outer). Everything that does not change along K (the thread's pointer,
// which of its elements exist along outer) is worked out once per item, so the k loop only adds a
// step and checks k against K.
template <bool K_CONTIGUOUS> struct OperandLoader {
  const float* ptr;  // this thread's first element in k tile 0
  int64_t step;      // elements from one k tile to the next
  int k_offset;      // this thread's first k within a tile
  unsigned inside;   // bit j: element j is inside along outer

  __device__ __forceinline__ OperandLoader(const float* base, int64_t ld, int64_t outer0, int64_t outer_limit) {
    const int tid = static_cast<int>(threadIdx.x);
    if (K_CONTIGUOUS) {
      const int64_t outer = outer0 + tid / 2;
      k_offset = (tid % 2) * 4;
      inside = outer < outer_limit ? 0xfu : 0u;
      ptr = base + (outer < outer_limit ? outer : 0) * ld + k_offset;
      step = kTileK;
    } else {
      const int64_t outer = outer0 + tid % 32;
      k_offset = tid / 32;
      inside = 0;
#pragma unroll
      for (int j = 0; j < 4; j++) inside |= (outer + 32 * j < outer_limit ? 1u : 0u) << j;
      ptr = base + k_offset * ld + outer;
      step = kTileK * ld;
    }
  }

  __device__ __forceinline__ void load(float (&reg)[4], int64_t kt, int64_t K) const {
    const float* p = ptr + kt * step;
    const int64_t k = kt * kTileK + k_offset;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const bool ok = ((inside >> j) & 1u) && (K_CONTIGUOUS ? k + j : k) < K;
      reg[j] = ok ? p[K_CONTIGUOUS ? j : 32 * j] : 0.0f;
    }
  }
};

template <bool K_CONTIGUOUS>
__device__ __forceinline__ void store_operand(float* tile, const float (&reg)[4]) {
  const int tid = static_cast<int>(threadIdx.x);
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if (K_CONTIGUOUS) tile[((tid % 2) * 4 + j) * kRowFloats + tid / 2] = reg[j];
    else tile[(tid / 32) * kRowFloats + tid % 32 + 32 * j] = reg[j];
  }
}

// One block: C tile (tile_m, tile_n) of batch item z for z = blockIdx.z, blockIdx.z + gridDim.z, ...
// grid.x = tiles of C in grouped order, block = 256 threads.
template <bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(kThreads) gemm_simt_kernel(const GemmParams p) {
  __shared__ __align__(16) float As[2][kTileK][kRowFloats];
  __shared__ __align__(16) float Bs[2][kTileK][kRowFloats];

  const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
  const int64_t tiles_m = (p.M + kTile - 1) / kTile, tiles_n = (p.N + kTile - 1) / kTile;
  const TileCoord tile = grouped_tile(blockIdx.x, tiles_m, tiles_n);
  const int64_t m0 = tile.m * kTile, n0 = tile.n * kTile;
  const int64_t k_tiles = (p.K + kTileK - 1) / kTileK;

  for (int64_t item = blockIdx.z; item < p.batch; item += gridDim.z) {
    const float* A = static_cast<const float*>(p.A) + item * p.stride_a;
    const float* B = static_cast<const float*>(p.B) + item * p.stride_b;
    const OperandLoader<!TRANS_A> a_loader(A, p.lda, m0, p.M);
    const OperandLoader<TRANS_B> b_loader(B, p.ldb, n0, p.N);
    float a_next[4], b_next[4];
    auto load = [&](int64_t kt) {
      a_loader.load(a_next, kt, p.K);
      b_loader.load(b_next, kt, p.K);
    };
    auto store = [&](int buffer) {
      store_operand<!TRANS_A>(&As[buffer][0][0], a_next);
      store_operand<TRANS_B>(&Bs[buffer][0][0], b_next);
    };

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
      for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    if (k_tiles > 0) {
      load(0);
      store(0);
    }
    __syncthreads();
    for (int64_t kt = 0; kt < k_tiles; kt++) {
      const int buffer = static_cast<int>(kt & 1);
      const bool more = kt + 1 < k_tiles;
      if (more) load(kt + 1);  // in flight during the FMAs below
#pragma unroll
      for (int k = 0; k < kTileK; k++) {
        const float4 a_lo = *reinterpret_cast<const float4*>(&As[buffer][k][ty * 4]);
        const float4 a_hi = *reinterpret_cast<const float4*>(&As[buffer][k][64 + ty * 4]);
        const float4 b_lo = *reinterpret_cast<const float4*>(&Bs[buffer][k][tx * 4]);
        const float4 b_hi = *reinterpret_cast<const float4*>(&Bs[buffer][k][64 + tx * 4]);
        const float a[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
        const float b[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
          for (int j = 0; j < 8; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      // The other buffer was last read in iteration kt - 1, which every thread finished before
      // the barrier that ended it; the barrier below publishes the stores for iteration kt + 1
      // and keeps this buffer intact until everyone is done reading it.
      if (more) store(buffer ^ 1);
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; i++) {
      const int64_t row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
      if (row >= p.M) continue;
#pragma unroll
      for (int half = 0; half < 2; half++) {
        const int64_t col = n0 + half * 64 + tx * 4;
        if (col >= p.N) continue;
        const float v[4] = {acc[i][half * 4], acc[i][half * 4 + 1], acc[i][half * 4 + 2], acc[i][half * 4 + 3]};
        epilogue_store<float, 4>(p, item, row, col, v, p.epilogue_vector && col + 4 <= p.N);
      }
    }
  }
}

template <bool TRANS_A, bool TRANS_B> void launch(const GemmParams& p) {
  const int64_t tiles = ((p.M + kTile - 1) / kTile) * ((p.N + kTile - 1) / kTile);
  if (tiles > 0x7fffffff) throw Error("gemm: " + std::to_string(tiles) + " output tiles exceed the CUDA grid");
  const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(p.batch < 65535 ? p.batch : 65535));
  gemm_simt_kernel<TRANS_A, TRANS_B><<<grid, kThreads, 0, stream()>>>(p);
  TG_CUDA_CHECK_LAUNCH("gemm_simt_kernel");
}

}  // namespace

void launch_gemm_simt(const GemmParams& p, bool trans_a, bool trans_b) {
  if (trans_a) {
    if (trans_b) launch<true, true>(p);
    else launch<true, false>(p);
  } else {
    if (trans_b) launch<false, true>(p);
    else launch<false, false>(p);
  }
}

}  // namespace tg::cuda::gemm_detail
