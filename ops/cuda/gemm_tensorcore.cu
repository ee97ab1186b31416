// bf16 / f16 GEMM on tensor cores: mma.sync.m16n8k16 (f32 accumulators) fed by ldmatrix from a
// 4-stage cp.async shared-memory pipeline; the PTX wrappers and the fragment layouts are in
// ops/cuda/mma.cuh. Runs on sm_80 and later: sm_90 executes mma.sync too, though below its wgmma
// peak; a wgmma + TMA kernel for sm_90a would be the next step once it can be tested on the GPU.
//
// Tiling. A block computes a 128x128 tile of C with 8 warps (256 threads) in a 2 x 4 grid; each
// warp owns a 64x32 sub-tile = 4 x 4 mma tiles of 16x8, i.e. 64 f32 accumulators per thread.
// Per k16 step a warp issues 6 ldmatrix.x4 (4 for A, 2 for B) for 16 mma: shared-memory traffic
// per mma is low enough to keep the tensor cores fed. K advances 32 per stage (two k16 steps);
// 4 stages x (A 128x32 + B 32x128) x 2 bytes = 64 KB of shared memory keeps three tiles in flight
// while one is computed, which covers global-memory latency; at ~128 registers per thread two
// blocks fit on an SM (A100: 164 KB smem, H100: 228 KB).
//
// Shared layouts. Each operand's stage is stored the way it lies in global memory, so that every
// 16-byte chunk is one cp.async:
//   "row tile"  [128][32]: 128 rows (m or n) of 32 k values (A not transposed, B transposed)
//   "k tile"    [32][128]: 32 k rows of 128 values (A transposed, B not transposed)
// ldmatrix reads 8 rows of one 16-byte column at a time. Unswizzled, those 8 rows hit the same
// banks (4-way for 64-byte rows, 8-way for 256-byte rows), so the chunk index is XOR-swizzled:
//   row tile: chunk ^ ((row >> 1) & 3)    (rows r and r+1 share a 128-byte line; pairs are XORed)
//   k tile:   chunk ^ (row & 7)
// which spreads any 8 consecutive rows over all 8 16-byte bank groups, for the cp.async writes
// and for the ldmatrix reads alike. Fragments of transposed operands come from ldmatrix.trans.
//
// Edges. Chunks past M, N or K are zero-filled by cp.async's src-size operand (a partial chunk at
// the K or contiguous-dim edge copies only its valid bytes), so the mma needs no predicates and
// zero products pad the K tail. Operands that are not 16-byte aligned (gemm_operand_vectorizable)
// are loaded element by element into the same layout: the general path, same pipeline.
//
// Epilogue. The accumulators go through shared memory (reusing the pipeline's buffers) so that
// each thread then owns 8 consecutive columns of a row and reads / writes C, bias, residual and
// the pre-activation with 16-byte accesses, coalesced across the warp.
#include <atomic>
#include <string>

#include "ops/cuda/gemm_internal.cuh"
#include "ops/cuda/mma.cuh"

namespace tg::cuda::gemm_detail {

namespace {

constexpr int kBlockM = 128, kBlockN = 128, kBlockK = 32, kStages = 4, kThreads = 256;
constexpr int kWarpM = 64, kWarpN = 32;                  // 2 x 4 warps
constexpr int kTileElems = kBlockM * kBlockK;            // one operand's stage: 4096 elements, 8 KB
constexpr int kStageElems = 2 * kTileElems;              // A then B
constexpr int kPipelineBytes = kStages * kStageElems * 2;
constexpr int kEpilogueStride = kBlockN + 8;             // floats; +8 makes float2 writes conflict-free
constexpr int kEpilogueBytes = kBlockM * kEpilogueStride * 4;
constexpr int kSmemBytes = kPipelineBytes > kEpilogueBytes ? kPipelineBytes : kEpilogueBytes;
constexpr int kChunksPerThread = kTileElems / 8 / kThreads;  // 16-byte chunks per operand per stage
static_assert(kChunksPerThread * 8 * kThreads == kTileElems, "every thread loads whole chunks");
static_assert(kBlockM == kBlockN, "A and B tiles share one shape");

// Element offset of 16-byte chunk `chunk` of row `row` in a swizzled tile with COLS columns.
template <int COLS> __device__ __forceinline__ int swizzled(int row, int chunk);
template <> __device__ __forceinline__ int swizzled<kBlockK>(int row, int chunk) {
  return row * kBlockK + ((chunk ^ ((row >> 1) & 3)) << 3);
}
template <> __device__ __forceinline__ int swizzled<kBlockM>(int row, int chunk) {
  return row * kBlockM + ((chunk ^ (row & 7)) << 3);
}

// Loads one operand's stage: the ROWS x COLS block of a row-major matrix (row stride ld) starting at
// (row0, col0), of which rows < row_limit and columns < col_limit exist; the rest is zero.
// Thread tid copies chunks tid and tid + 256 (consecutive threads take consecutive chunks of a row,
// so a warp reads whole 64- or 256-byte row segments).
template <int ROWS, int COLS>
__device__ __forceinline__ void load_tile(uint16_t* tile, const uint16_t* base, int64_t ld, int64_t row0,
                                          int64_t col0, int64_t row_limit, int64_t col_limit, bool vector) {
  constexpr int kChunksPerRow = COLS / 8;
  static_assert(ROWS * kChunksPerRow == kChunksPerThread * kThreads, "tile is 512 chunks");
#pragma unroll
  for (int j = 0; j < kChunksPerThread; j++) {
    const int chunk_id = static_cast<int>(threadIdx.x) + j * kThreads;
    const int row = chunk_id / kChunksPerRow, chunk = chunk_id % kChunksPerRow;
    const int64_t grow = row0 + row, gcol = col0 + chunk * 8;
    int64_t valid = grow < row_limit ? col_limit - gcol : 0;  // elements of this chunk that exist
    valid = valid < 0 ? 0 : (valid > 8 ? 8 : valid);
    uint16_t* dst = tile + swizzled<COLS>(row, chunk);
    const uint16_t* src = base + grow * ld + gcol;
    if (vector) {
      // With nothing to copy the source is never read, but keep a valid address anyway.
      cp_async_16(dst, valid > 0 ? src : base, static_cast<int>(valid) * 2);
    } else {
      uint16_t e[8];
#pragma unroll
      for (int i = 0; i < 8; i++) e[i] = i < valid ? src[i] : uint16_t(0);
      uint4 packed;
      packed.x = e[0] | (uint32_t(e[1]) << 16);
      packed.y = e[2] | (uint32_t(e[3]) << 16);
      packed.z = e[4] | (uint32_t(e[5]) << 16);
      packed.w = e[6] | (uint32_t(e[7]) << 16);
      *reinterpret_cast<uint4*>(dst) = packed;
    }
  }
}

// One block: C tile (tile_m, tile_n) of batch item z, for every item z = blockIdx.z + k * gridDim.z.
// grid.x = tiles of C in grouped order (grouped_tile), block = 256 threads, dynamic smem kSmemBytes.
// Each thread accumulates acc[mt][nt][4]: rows warp_m*64 + mt*16 + {g, g+8}, columns
// warp_n*32 + nt*8 + {2t, 2t+1} of the tile.
template <class T, bool TRANS_A, bool TRANS_B>
__global__ void __launch_bounds__(kThreads, 2) gemm_tensorcore_kernel(const GemmParams p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  uint16_t* smem = reinterpret_cast<uint16_t*>(smem_raw);
  float* staging = reinterpret_cast<float*>(smem_raw);  // epilogue, after the pipeline drains

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warp_m = warp >> 2, warp_n = warp & 3;
  const int64_t tiles_m = (p.M + kBlockM - 1) / kBlockM, tiles_n = (p.N + kBlockN - 1) / kBlockN;
  const TileCoord tile = grouped_tile(blockIdx.x, tiles_m, tiles_n);
  const int64_t m0 = tile.m * kBlockM, n0 = tile.n * kBlockN;
  const int k_tiles = static_cast<int>((p.K + kBlockK - 1) / kBlockK);

  for (int64_t item = blockIdx.z; item < p.batch; item += gridDim.z) {
    const uint16_t* A = static_cast<const uint16_t*>(p.A) + item * p.stride_a;
    const uint16_t* B = static_cast<const uint16_t*>(p.B) + item * p.stride_b;

    auto load_stage = [&](int stage, int kt) {
      uint16_t* a_tile = smem + stage * kStageElems;
      uint16_t* b_tile = a_tile + kTileElems;
      const int64_t k0 = static_cast<int64_t>(kt) * kBlockK;
      if (TRANS_A) load_tile<kBlockK, kBlockM>(a_tile, A, p.lda, k0, m0, p.K, p.M, p.a_vector);  // A^T stored (K,M)
      else load_tile<kBlockM, kBlockK>(a_tile, A, p.lda, m0, k0, p.M, p.K, p.a_vector);          // A stored (M,K)
      if (TRANS_B) load_tile<kBlockN, kBlockK>(b_tile, B, p.ldb, n0, k0, p.N, p.K, p.b_vector);  // B^T stored (N,K)
      else load_tile<kBlockK, kBlockN>(b_tile, B, p.ldb, k0, n0, p.K, p.N, p.b_vector);          // B stored (K,N)
    };

    float acc[4][4][4];
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
      for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.0f;

    // Prologue: stages 0..kStages-2 in flight, one commit group each (empty groups past k_tiles
    // keep the group count, and so the wait below, uniform).
#pragma unroll
    for (int s = 0; s < kStages - 1; s++) {
      if (s < k_tiles) load_stage(s, s);
      cp_async_commit();
    }

    for (int kt = 0; kt < k_tiles; kt++) {
      // Groups committed so far: (kStages - 1) + kt; allowing kStages - 2 pending means group kt
      // (this thread's part of tile kt) has landed. The barrier then makes every thread's part
      // visible, and guarantees that all warps finished computing tile kt - 1, whose stage the
      // load below overwrites.
      cp_async_wait<kStages - 2>();
      __syncthreads();
      if (kt + kStages - 1 < k_tiles) load_stage((kt + kStages - 1) % kStages, kt + kStages - 1);
      cp_async_commit();

      const uint16_t* a_tile = smem + (kt % kStages) * kStageElems;
      const uint16_t* b_tile = a_tile + kTileElems;
#pragma unroll
      for (int ks = 0; ks < kBlockK / 16; ks++) {
        uint32_t a[4][4], b[4][2];
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
          const int mbase = warp_m * kWarpM + mt * 16;
          if (TRANS_A) {
            // k tile [k][m]: matrix q = lane / 8 covers m + (q & 1) * 8, k + (q >> 1) * 8.
            const int q = lane >> 3;
            const int k = ks * 16 + (q >> 1) * 8 + (lane & 7), m = mbase + (q & 1) * 8;
            ldmatrix_x4_trans(a[mt], a_tile + swizzled<kBlockM>(k, m >> 3));
          } else {
            // row tile [m][k]: lanes 0-15 give rows m..m+15 at k, lanes 16-31 the same rows at k + 8.
            const int m = mbase + (lane & 15), chunk = ks * 2 + (lane >> 4);
            ldmatrix_x4(a[mt], a_tile + swizzled<kBlockK>(m, chunk));
          }
        }
#pragma unroll
        for (int np = 0; np < 2; np++) {
          const int nbase = warp_n * kWarpN + np * 16;
          const int q = lane >> 3;
          uint32_t r[4];
          if (TRANS_B) {
            // row tile [n][k]: matrix q covers n + (q >> 1) * 8, k + (q & 1) * 8.
            const int n = nbase + (q >> 1) * 8 + (lane & 7), chunk = ks * 2 + (q & 1);
            ldmatrix_x4(r, b_tile + swizzled<kBlockK>(n, chunk));
          } else {
            // k tile [k][n]: matrix q covers k + (q & 1) * 8, n + (q >> 1) * 8, transposed.
            const int k = ks * 16 + (q & 1) * 8 + (lane & 7), n = nbase + (q >> 1) * 8;
            ldmatrix_x4_trans(r, b_tile + swizzled<kBlockN>(k, n >> 3));
          }
          b[2 * np][0] = r[0];
          b[2 * np][1] = r[1];
          b[2 * np + 1][0] = r[2];
          b[2 * np + 1][1] = r[3];
        }
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
          for (int nt = 0; nt < 4; nt++) mma_m16n8k16<T>(acc[mt][nt], a[mt], b[nt][0], b[nt][1]);
      }
    }
    // Drain (only empty groups can remain) and let every warp finish reading the pipeline before
    // its memory becomes the staging area.
    cp_async_wait<0>();
    __syncthreads();

    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
      for (int nt = 0; nt < 4; nt++) {
        const int r = warp_m * kWarpM + mt * 16 + g, c = warp_n * kWarpN + nt * 8 + 2 * t;
        *reinterpret_cast<float2*>(staging + r * kEpilogueStride + c) = make_float2(acc[mt][nt][0], acc[mt][nt][1]);
        *reinterpret_cast<float2*>(staging + (r + 8) * kEpilogueStride + c) =
            make_float2(acc[mt][nt][2], acc[mt][nt][3]);
      }
    __syncthreads();

    // 16 threads per row, 8 columns each; 16 rows per pass, 8 passes.
    constexpr int kThreadsPerRow = kBlockN / 8;
#pragma unroll 1
    for (int pass = 0; pass < kBlockM / (kThreads / kThreadsPerRow); pass++) {
      const int r = pass * (kThreads / kThreadsPerRow) + static_cast<int>(threadIdx.x) / kThreadsPerRow;
      const int c = (static_cast<int>(threadIdx.x) % kThreadsPerRow) * 8;
      const int64_t row = m0 + r, col = n0 + c;
      if (row >= p.M || col >= p.N) continue;
      const float* src = staging + r * kEpilogueStride + c;
      const float4 lo = *reinterpret_cast<const float4*>(src), hi = *reinterpret_cast<const float4*>(src + 4);
      const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      epilogue_store<T, 8>(p, item, row, col, v, p.epilogue_vector && col + 8 <= p.N);
    }
    // The next batch item's prologue overwrites the staging area.
    __syncthreads();
  }
}

template <class T, bool TRANS_A, bool TRANS_B> void launch(const GemmParams& p) {
  auto kernel = gemm_tensorcore_kernel<T, TRANS_A, TRANS_B>;
  // Above 48 KB a block's dynamic shared memory must be allowed explicitly, once per device and
  // kernel (kept out of the launch path, which a CUDA graph may be capturing).
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> allowed[kMaxDevices];
  int device = 0;
  TG_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= kMaxDevices || !allowed[device].load(std::memory_order_acquire)) {
    TG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
    if (device < kMaxDevices) allowed[device].store(true, std::memory_order_release);
  }
  const int64_t tiles = ((p.M + kBlockM - 1) / kBlockM) * ((p.N + kBlockN - 1) / kBlockN);
  if (tiles > 0x7fffffff) throw Error("gemm: " + std::to_string(tiles) + " output tiles exceed the CUDA grid");
  const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(p.batch < 65535 ? p.batch : 65535));
  kernel<<<grid, kThreads, kSmemBytes, stream()>>>(p);
  TG_CUDA_CHECK_LAUNCH("gemm_tensorcore_kernel");
}

}  // namespace

template <class T> void launch_gemm_tensorcore(const GemmParams& p, bool trans_a, bool trans_b) {
  if (trans_a) {
    if (trans_b) launch<T, true, true>(p);
    else launch<T, true, false>(p);
  } else {
    if (trans_b) launch<T, false, true>(p);
    else launch<T, false, false>(p);
  }
}

template void launch_gemm_tensorcore<bf16>(const GemmParams& p, bool trans_a, bool trans_b);
template void launch_gemm_tensorcore<f16>(const GemmParams& p, bool trans_a, bool trans_b);

}  // namespace tg::cuda::gemm_detail
