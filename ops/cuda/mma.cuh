// The PTX layer of the tensor-core kernels (the GEMM, attention, and the convolutions to come): one
// wrapper per instruction, each stating the instruction, the fragment shapes and which lane holds
// what. sm_80 and later (mma.sync, ldmatrix and cp.async all arrived with sm_80); device code,
// include from .cu files.
//
// Fragment layouts of mma.m16n8k16 with 16-bit A/B and f32 C/D (PTX ISA, "Matrix fragments for
// mma.m16n8k16"), with g = lane / 4 (the group, 0..7) and t = lane % 4 (the thread in the group).
// Every A/B register holds two 16-bit elements, the lower column (A) or k (B) index in the low half:
//   A (16 x 16, row-major, m x k): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..2t+1),
//                                  a[2] = (g, 2t+8..2t+9), a[3] = (g+8, 2t+8..2t+9)
//   B (16 x 8, "col", k x n):      b[0] = (k = 2t..2t+1, n = g), b[1] = (k = 2t+8..2t+9, n = g)
//   C, D (16 x 8, f32, m x n):     c[0], c[1] = (g, 2t), (g, 2t+1); c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
// Two C tiles side by side (16 x 16) hold exactly the elements of one A fragment, so a tile
// computed by mma feeds the next mma as its A operand without leaving registers (pack2).
#pragma once
#include <cstdint>

#include "ops/cuda/common.cuh"

namespace tg::cuda {

// The 32-bit shared-memory address (the .shared state space) of a generic pointer into shared
// memory: what ldmatrix and cp.async take. cvta.to.shared.
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- 16-bit pairs ------------------------------------------------------------------------------

// Two floats rounded to nearest even into one register of two 16-bit values, `lo` in the low half
// (the lower column of a fragment pair): cvt.rn.bf16x2.f32 / cvt.rn.f16x2.f32.
template <class T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<bf16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<f16>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
// The inverse (exact): x = the low half, y = the high half.
template <class T> __device__ __forceinline__ float2 unpack2(uint32_t v);
template <> __device__ __forceinline__ float2 unpack2<bf16>(uint32_t v) {
  return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&v));
}
template <> __device__ __forceinline__ float2 unpack2<f16>(uint32_t v) {
  return __half22float2(*reinterpret_cast<__half2*>(&v));
}

// ---- mma.sync ----------------------------------------------------------------------------------

// d (16 x 8, f32) += a (16 x 16) * b (16 x 8), T = bf16 or f16, f32 accumulation:
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32, warp-wide (all 32 lanes, each
// holding its fragment elements as laid out at the top: a[4], b0 = b[0], b1 = b[1], d[4]).
template <class T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_m16n8k16<bf16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_m16n8k16<f16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- ldmatrix ----------------------------------------------------------------------------------

// Four 8 x 8 matrices of 16-bit elements from shared memory, warp-wide:
// ldmatrix.sync.aligned.m8n8.x4.shared.b16. Lanes 8i..8i+7 give the addresses of rows 0..7 of
// matrix i (16 contiguous bytes each, 16-byte aligned); lane l receives in r[i] the elements
// (row l/4, columns 2(l%4)..2(l%4)+1) of matrix i, which is the A/B register layout above.
// `p` is this lane's row address, a generic pointer into shared memory.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p))
               : "memory");
}
// The same with .trans: r[i] receives the elements (row l/4, columns 2(l%4)..+1) of matrix i's
// transpose, i.e. (rows 2(l%4)..+1, column l/4) of the matrix as stored. This turns a stored
// k-major (k rows, n columns) tile into B fragments.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(p))
               : "memory");
}

// ---- cp.async ----------------------------------------------------------------------------------

// 16 bytes global -> shared without passing through registers, cached in L2 only:
// cp.async.cg.shared.global [dst], [src], 16, src_bytes. Only the first src_bytes (0..16) are
// read; the rest of the 16 are zero-filled, so src_bytes = 0 writes 16 zeros (src must still be a
// valid address). dst and src 16-byte aligned; per thread, asynchronous until waited for.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}
// Closes this thread's group of cp.async issued since the last commit: cp.async.commit_group.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight:
// cp.async.wait_group N. Other threads' copies need a barrier after it to become visible.
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace tg::cuda
