// Single-precision GEMM on row-major matrices, BLIS-style (packed panels + register micro-kernel),
// parallel over macro-tiles with OpenMP. The one matmul kernel behind Linear, attention and conv.
//
// Compiled once per instruction-set level (ops/cpu/isa.h): the register tile differs per level, so
// the packed-operand interface takes the tile's width at run time from the GEMM that calls it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "ops/cpu/isa.h"
#include "tensor/dtype.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C (M,N); every matrix row-major.
// A is stored (M,K) with row stride lda, or (K,M) when trans_a; B is (K,N) with row stride ldb, or
// (N,K) when trans_b; C has row stride ldc. Transposes cost nothing extra: they are read in packing.
// beta == 0 writes C without reading it, so NaN or garbage in C does not leak into the result.
// Any M, N, K >= 0 works (K == 0 gives C = beta * C).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// `batch` independent GEMMs as above; item i uses A + i*stride_a, B + i*stride_b, C + i*stride_c.
// A stride of 0 on A or B broadcasts that operand over the batch. C items must not overlap.
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch,
                  int64_t stride_a, int64_t stride_b, int64_t stride_c);

// out (M,N) row i = bias (N), for every row: the starting value of a Linear output before its
// GEMM accumulates (beta = 1) on top.
void broadcast_rows(float* out, const float* bias, int64_t M, int64_t N);

// dbias (N) += column sums of dout (M,N): the bias gradient of Linear.
void column_sums_accumulate(float* dbias, const float* dout, int64_t M, int64_t N);

// The 16-bit twins of the two above, for bf16 or f16 bits (`dtype`): the bias rows are copied bit
// for bit; the column sums are formed in f32 on top of the widened dbias and rounded once.
void broadcast_rows_half(DType dtype, uint16_t* out, const uint16_t* bias, int64_t M, int64_t N);
void column_sums_accumulate_half(DType dtype, uint16_t* dbias, const uint16_t* dout, int64_t M, int64_t N);

// The epilogue of a 16-bit Linear (ops::linear), on v (n) = x W^T + b in f32, as the CUDA GEMM's
// epilogue computes it: with gelu, u = v rounded to `dtype` is the pre-activation (stored in
// pre_gelu when given) and x = gelu(u), else x = v; then x += residual when given; out = x rounded
// once. The GELU reads the rounded u so that forward and backward see the same pre-activation and
// the fused Linear equals a Linear followed by a GELU. residual may be out itself.
void linear_epilogue_half(DType dtype, uint16_t* out, uint16_t* pre_gelu, const float* v, bool gelu,
                          const uint16_t* residual, int64_t n);

// The active level's micro-kernel, e.g. "avx512 14x32" (what ./train prints, and what the tests
// check to know that a forced level really ran).
const char* gemm_kernel_name();

TG_CPU_ISA_END

// ---- GEMM on packed operands -------------------------------------------------------------------
// The micro-kernel's register tile is MR rows of op(A) by NR columns of op(B): per level, 14 x 32
// (avx512), 6 x 16 (avx2), 4 x 16 (scalar). A packer fills slivers of MR rows of op(A), or of NR
// columns of op(B), in the order the micro-kernel reads them; the GEMM passes it MR or NR.
constexpr int kGemmMaxMR = 16, kGemmMaxNR = 32;

// Produces blocks of op(A) (M,K) for the blocked GEMM. An operand that is not a stored matrix (the
// patch matrix of a convolution, gathered from the image) is a packer. pack() is called from
// several threads at once, each with its own buffer, so it must not change shared state.
class GemmPackA {
 public:
  virtual ~GemmPackA() = default;
  // op(A)[i0 : i0+m, p0 : p0+k] -> a_pack (ceil(m/mr), k, mr): sliver s holds rows i0 + s*mr ..,
  // k-major; rows past m are zeros. a_pack has room for 16 floats past the last sliver.
  virtual void pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const = 0;
};

// The same for op(B) (K,N).
class GemmPackB {
 public:
  virtual ~GemmPackB() = default;
  // op(B)[p0 : p0+k, j0 : j0+n] -> b_pack (ceil(n/nr), k, nr): sliver s holds columns j0 + s*nr ..,
  // k-major; columns past n are zeros. b_pack has room for 16 floats past the last sliver.
  virtual void pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const = 0;
  // The same block already packed, exactly as pack() would write it, or null when this operand
  // holds no such block: the GEMM reads a block given here in place instead of calling pack().
  // PackedB holds them.
  virtual const float* packed(int64_t /*p0*/, int64_t /*k*/, int64_t /*j0*/, int64_t /*n*/, int /*nr*/) const {
    return nullptr;
  }
};

// A stored row-major matrix as a packer: (M,K) with row stride ld, or (K,M) when trans.
class MatrixPackA : public GemmPackA {
 public:
  MatrixPackA(bool trans, const float* a, int64_t ld) : trans_(trans), a_(a), ld_(ld) {}
  void pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const override;

 private:
  bool trans_;
  const float* a_;
  int64_t ld_;
};

// A stored row-major matrix as a packer: (K,N) with row stride ld, or (N,K) when trans.
class MatrixPackB : public GemmPackB {
 public:
  MatrixPackB(bool trans, const float* b, int64_t ld) : trans_(trans), b_(b), ld_(ld) {}
  void pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const override;
  bool trans() const { return trans_; }
  const float* data() const { return b_; }
  int64_t ld() const { return ld_; }

 private:
  bool trans_;
  const float* b_;
  int64_t ld_;
};

// A stored op(B) (K,N) packed once, whole, for many GEMMs that read it as their B: a weight that
// every chunk of the blockwise MLP multiplies (ops/blockwise_mlp.cpp), which would otherwise be
// re-packed by each chunk's GEMM, the packing traffic of a 2 MB weight rivalling a short chunk's
// FLOPs. The layout is the active level's GEMM's: for each KC block of K (gemm_kc()), the
// ceil(N/NR) slivers (kc, NR) of that block side by side, so that every block the GEMM asks for
// is a run of it, read in place and shared by any number of threads. A GEMM of a level with
// another tile (ScopedCpuIsa changed in between) is served by pack() from the stored matrix, which
// must therefore outlive this, as must every GEMM's use of it. Results are bit for bit those of
// the same GEMM on MatrixPackB(trans, b, ld).
class PackedB : public GemmPackB {
 public:
  // op(B) of b stored (K,N) with row stride ld, or (N,K) when trans, as MatrixPackB reads it.
  PackedB(bool trans, const float* b, int64_t ld, int64_t K, int64_t N);
  void pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const override;
  const float* packed(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr) const override;
  int64_t rows() const { return K_; }  // K
  int64_t cols() const { return N_; }  // N
  // Whether this packs b read as (trans, ld): a caller's check that it was given the right one.
  bool packs(bool trans, const float* b, int64_t ld) const {
    return trans == source_.trans() && b == source_.data() && ld == source_.ld();
  }

 private:
  // The panels come from the CPU allocator (tensor/cpu_allocator.h), whose cache hands the same
  // sizes back call after call: glibc would keep a freed block of a few MB in a thread's arena, and
  // the peak RSS the blockwise MLP exists to lower grew by tens of MB.
  struct Free {
    size_t bytes;
    void operator()(float* p) const;
  };
  MatrixPackB source_;
  int64_t K_, N_, kc_;
  int nr_;
  std::unique_ptr<float, Free> panels_;  // (ceil(K/kc), ceil(N/nr), kc, nr), the last K block shorter
};

TG_CPU_ISA_BEGIN

#ifdef TG_CPU_ISA_NS
// This level's tile, for the files compiled per level (elsewhere: gemm_mr(), gemm_nr()). AVX-512 has
// 32 zmm registers: 14 x 32 keeps 28 accumulators, 2 B vectors and one broadcast A value live, and
// 28 independent FMAs per k step cover the 2 FMA pipes x 4-cycle latency many times over. AVX2
// (16 ymm): 6 x 16 = 12 accumulators + 2 B + 1 broadcast.
#if defined(__AVX512F__)
constexpr int kGemmMR = 14, kGemmNR = 32;
#elif defined(__AVX2__)
constexpr int kGemmMR = 6, kGemmNR = 16;
#else
constexpr int kGemmMR = 4, kGemmNR = 16;
#endif
static_assert(kGemmMR <= kGemmMaxMR && kGemmNR <= kGemmMaxNR, "kGemmMax* bound every level's tile");
#endif

// C (M,N) = alpha * op(A) @ op(B) + beta * C, with the operands produced by packers; the same loop
// nest, threading and micro-kernel as gemm() (which is this with two matrix packers).
void gemm_packed(int64_t M, int64_t N, int64_t K, float alpha, const GemmPackA& a, const GemmPackB& b, float beta,
                 float* C, int64_t ldc);

// The active level's register tile: MR (rows of op(A)) and NR (columns of op(B)), and its K block
// KC (the depth of every packed block but a K's last).
int gemm_mr();
int gemm_nr();
int64_t gemm_kc();

// op(A) of a stored matrix -> a_pack, and op(B) -> b_pack, as MatrixPackA / MatrixPackB::pack,
// for the tile the level's GEMM uses (mr, nr must be its gemm_mr(), gemm_nr()).
void gemm_pack_matrix_a(bool trans, const float* a, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t k, int mr,
                        float* a_pack);
void gemm_pack_matrix_b(bool trans, const float* b, int64_t ld, int64_t p0, int64_t k, int64_t j0, int64_t n, int nr,
                        float* b_pack);

// For custom A packers: one sliver segment from mr row streams. rows[r] points at k consecutive
// floats of row r (null: a row of zeros); writes sliver (k, mr) k-major, sliver[p*mr + r] = rows[r][p].
// May write up to 16 floats past the end of the segment (callers fill segments in increasing
// order, and the pack buffer has slack for the last one). mr must be gemm_mr().
void pack_a_rows(const float* const* rows, int64_t k, int mr, float* sliver);

TG_CPU_ISA_END
}  // namespace tg::cpu
