// The patch matrix of a convolution as GEMM operands, packed block by block straight from the image
// (implicit im2col): the whole (N*P*Q, R*S*Cg) matrix never exists in memory.
//
// For one group g, row i of the patch matrix is output pixel (n, p, q) (i = (n*P + p)*Q + q), and
// column (r, s, c) (= (r*S + s)*Cg + c, the order of a weight repacked to (K, R, S, Cg)) holds
//   x[n, p*stride_h - pad_h + r*dilation_h, q*stride_w - pad_w + s*dilation_w, g*Cg + c],
// or zero where that falls outside the image (the padding).
//
// A packer gathers row segments of that matrix: a column range is split once per call into its
// kernel taps (r, s) and channel runs, pixels are walked in order without divisions, and each row
// segment is then a few copies: in NHWC one pixel's channels are contiguous, and with groups == 1
// and dilation_w == 1 so are neighbouring taps of one kernel row, which the copy loop joins.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

#include "ops/cpu/conv2d.h"
#include "ops/cpu/gemm.h"

#ifndef TG_CPU_ISA_NS
#error "conv2d_pack.h is for the files compiled per instruction-set level (ISA_SRCS in the Makefile)"
#endif

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// op(A) = patches (N*P*Q, R*S*Cg): the forward's A operand (out = patches @ weight^T). Each sliver
// gathers its MR rows into a scratch row block, then transposes them into the k-major pack.
class PatchPackA : public GemmPackA {
 public:
  PatchPackA(const float* x, const Conv2dGeometry& g, int64_t group) : x_(x), g_(g), group_(group) {}
  void pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const override;

 private:
  const float* x_;
  Conv2dGeometry g_;
  int64_t group_;
};

// op(A) = patches^T (R*S*Cg, N*P*Q): the weight gradient's A operand (dweight^T = patches^T @ dout,
// whose N = Kg is a whole number of register tiles for the usual 32/64/128 filters). Walks the
// pixels (k) in order; each pixel's patch row is gathered once and dealt out MR columns per sliver.
// pixel0 makes the GEMM's k = 0 pixel pixel0, so that a range of pixels is its own GEMM (split-K).
class PatchTransposePackA : public GemmPackA {
 public:
  PatchTransposePackA(const float* x, const Conv2dGeometry& g, int64_t group, int64_t pixel0 = 0)
      : x_(x), g_(g), group_(group), pixel0_(pixel0) {}
  void pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const override;

 private:
  const float* x_;
  Conv2dGeometry g_;
  int64_t group_, pixel0_;
};

TG_CPU_ISA_END
}  // namespace tg::cpu
