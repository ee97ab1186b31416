// Winograd convolution for 3x3, stride-1, ungrouped, undilated layers on the CPU, f32, NHWC.
// F(m x m, 3 x 3) computes each m x m block of outputs from the (m+2) x (m+2) inputs under it with
// (m+2)^2 multiplications per channel pair instead of 9 m^2: 2.25x fewer for F(2x2,3x3), 4x fewer
// for F(4x4,3x3). The price is rounding error grown by the transforms, the more the larger the tile
// (F(6x6), at about 8x direct convolution's, is not offered). The convolution front chooses
// between these kernels and im2col by timing both on the layer's shape.
//
// Compiled per instruction-set level (ops/cpu/isa.h): the forms taking a tile are each level's; the
// forms without one (ops/cpu/isa_dispatch.cpp) call the active level's with the default tile.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {

// The output tile: F(2x2,3x3) or F(4x4,3x3).
enum class WinogradTile { F2x2, F4x4 };

// The tile the overloads without a tile argument use for an output of P x Q: F(4x4) unless the
// output is smaller than 4 in a dimension, where its tiles would be mostly padding.
inline WinogradTile winograd_default_tile(int64_t P, int64_t Q) {
  return P >= 4 && Q >= 4 ? WinogradTile::F4x4 : WinogradTile::F2x2;
}

// Layout NHWC; weight in PyTorch order (K, C, 3, 3); groups 1, stride 1, dilation 1; pad_h, pad_w in [0, 2].
// x (N,H,W,C), bias (K) or nullptr -> out (N,P,Q,K) written, P = H + 2*pad_h - 2, Q = W + 2*pad_w - 2.
void conv2d_winograd_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N,
                             int64_t H, int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w);
TG_CPU_ISA_BEGIN
void conv2d_winograd_forward(float* out, const float* x, const float* weight, const float* bias, int64_t N,
                             int64_t H, int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w,
                             WinogradTile tile);
TG_CPU_ISA_END

// dx (N,H,W,C) += input gradient of dout (N,P,Q,K) (a 3x3 stride-1 convolution of dout with the
// flipped, in/out-swapped weight and padding 2 - pad).
void conv2d_winograd_backward_input(float* dx, const float* dout, const float* weight, int64_t N, int64_t H,
                                    int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w);
TG_CPU_ISA_BEGIN
void conv2d_winograd_backward_input(float* dx, const float* dout, const float* weight, int64_t N, int64_t H,
                                    int64_t W, int64_t C, int64_t K, int64_t pad_h, int64_t pad_w,
                                    WinogradTile tile);
TG_CPU_ISA_END

// Whether these kernels serve a convolution of this shape.
inline bool winograd_applicable(int64_t R, int64_t S, int64_t stride_h, int64_t stride_w, int64_t dilation_h,
                                int64_t dilation_w, int64_t groups, int64_t pad_h, int64_t pad_w) {
  return R == 3 && S == 3 && stride_h == 1 && stride_w == 1 && dilation_h == 1 && dilation_w == 1 && groups == 1 &&
         pad_h >= 0 && pad_h <= 2 && pad_w >= 0 && pad_w <= 2;
}

}  // namespace tg::cpu
