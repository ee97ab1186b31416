// CUDA activations: GELU (tanh approximation), ReLU, tanh, sigmoid, SiLU, forward and backward. Each is one
// vectorized pass (ops/cuda/elementwise.cuh) whose arithmetic follows ops/cpu/activation.cpp, so the
// two devices differ only by the last bits of exp/tanh.
#include "ops/cuda/activation.h"

#include "ops/cuda/common.cuh"
#include "ops/cuda/elementwise.cuh"

namespace tg::cuda {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// GELU in its sigmoid form, as on the CPU: 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)). The tanh form
// cancels for negative inputs (1 + tanh(u) near 0); this one keeps full relative precision there.
// Past |2u| = 80 the answer is settled in f32 (gelu = x or 0, gelu' = 1 or 0) and is returned
// outright, so a huge |x| (where x^3 overflows) cannot turn into inf * 0.
__device__ __forceinline__ float gelu_arg(float x) { return -2.0f * kSqrt2OverPi * (x + kGeluCubic * x * x * x); }
__device__ __forceinline__ float clamp80(float arg) { return arg > 80.0f ? 80.0f : (arg < -80.0f ? -80.0f : arg); }

struct Gelu {
  __device__ static float forward(float x) {
    const float arg = gelu_arg(x);
    const float y = x / (1.0f + expf(clamp80(arg)));
    return arg > 80.0f ? 0.0f : y;
  }
  // With s = sigmoid(2u) = 1 / (1 + e), e = exp(-2u): gelu' = s + x 2 s (1 - s) u', and 1 - s = e s
  // avoids the subtraction that cancels when s is near 1.
  __device__ static float derivative(float x) {
    const float arg = gelu_arg(x);
    const float e = expf(clamp80(arg));
    const float s = 1.0f / (1.0f + e);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
    const float grad = s * (1.0f + 2.0f * x * du * (e * s));
    return arg > 80.0f ? 0.0f : (arg < -80.0f ? 1.0f : grad);
  }
};

struct Relu {
  __device__ static float forward(float x) { return x > 0.0f ? x : 0.0f; }
};

struct Tanh {
  __device__ static float forward(float x) { return tanhf(x); }
  __device__ static float derivative_from_output(float y) { return 1.0f - y * y; }
};

// Sigmoid through e = exp(-|x|) in [0, 1], as on the CPU: sigmoid(x) and sigmoid(-x) are t and e t
// (in the order of x's sign), t = 1 / (1 + e), both with full relative precision, no inf / inf,
// and subnormal tails (sigmoid(-100) = 3.7e-44; expf keeps subnormals without -ftz).
__device__ __forceinline__ void sigmoid_pair(float x, float& s, float& c) {  // s = sigmoid(x), c = sigmoid(-x)
  const float e = expf(-fabsf(x));
  const float t = 1.0f / (1.0f + e);
  s = x >= 0.0f ? t : e * t;
  c = x >= 0.0f ? e * t : t;
}

struct Sigmoid {
  __device__ static float forward(float x) {
    float s, c;
    sigmoid_pair(x, s, c);
    return s;
  }
  __device__ static float derivative(float x) {  // s (1 - s), as s c: no cancellation where s is 1
    float s, c;
    sigmoid_pair(x, s, c);
    return s * c;
  }
};

// silu = x s, written as 0 where s is 0 (so -inf gives 0, not -inf * 0); silu' = s (1 + x c), 1 or 0
// where c or s is 0 (x = +-inf give the limits).
struct Silu {
  __device__ static float forward(float x) {
    float s, c;
    sigmoid_pair(x, s, c);
    return s == 0.0f ? 0.0f : x * s;
  }
  __device__ static float derivative(float x) {
    float s, c;
    sigmoid_pair(x, s, c);
    const float grad = s * (1.0f + x * c);
    return c == 0.0f ? 1.0f : (s == 0.0f ? 0.0f : grad);
  }
};

// out (n) = Act::forward(inp)
template <class Act, class T>
struct ForwardBody {
  T* out;
  const T* inp;
  template <int W>
  __device__ void run(int64_t i) const {
    float x[W];
    load_f32(x, inp + i);
#pragma unroll
    for (int k = 0; k < W; k++) x[k] = Act::forward(x[k]);
    store_f32(out + i, x);
  }
};

// The backward rules, each in terms of the tensor the autograd function saved (GELU, sigmoid and
// SiLU: their input; ReLU and tanh: their output) and the incoming gradient g.
struct GeluGrad {  // dout * gelu'(inp)
  __device__ static float apply(float x, float g) { return g * Gelu::derivative(x); }
};
// out > 0 ? dout : 0. Written in the output (out > 0 exactly when inp > 0); a select, not
// dout * (out > 0), so a NaN dout stays 0 where the unit is off, as on the CPU.
struct ReluGrad {
  __device__ static float apply(float y, float g) { return y > 0.0f ? g : 0.0f; }
};
struct TanhGrad {  // dout * (1 - out^2)
  __device__ static float apply(float y, float g) { return g * Tanh::derivative_from_output(y); }
};
struct SigmoidGrad {  // dout * sigmoid'(inp)
  __device__ static float apply(float x, float g) { return g * Sigmoid::derivative(x); }
};
struct SiluGrad {  // dout * silu'(inp)
  __device__ static float apply(float x, float g) { return g * Silu::derivative(x); }
};

// dinp (n) += Grad::apply(saved, dout)
template <class Grad, class T>
struct BackwardBody {
  T* dinp;
  const T* saved;
  const T* dout;
  template <int W>
  __device__ void run(int64_t i) const {
    float v[W], g[W];
    load_f32(v, saved + i);
    load_f32(g, dout + i);
#pragma unroll
    for (int k = 0; k < W; k++) g[k] = Grad::apply(v[k], g[k]);
    add_f32<W>(dinp + i, g);
  }
};

template <class Act>
void unary_forward(const char* op, DType dtype, void* out, const void* inp, int64_t n) {
  TG_DISPATCH_FLOAT(dtype, op, T, {
    launch_pack_loop<T>(op, n, all_aligned16({out, inp}),
                        ForwardBody<Act, T>{static_cast<T*>(out), static_cast<const T*>(inp)});
  });
}

template <class Grad>
void unary_backward(const char* op, DType dtype, void* dinp, const void* saved, const void* dout, int64_t n) {
  TG_DISPATCH_FLOAT(dtype, op, T, {
    launch_pack_loop<T>(op, n, all_aligned16({dinp, saved, dout}),
                        BackwardBody<Grad, T>{static_cast<T*>(dinp), static_cast<const T*>(saved),
                                              static_cast<const T*>(dout)});
  });
}

}  // namespace

void gelu_forward(DType dtype, void* out, const void* inp, int64_t n) { unary_forward<Gelu>("gelu", dtype, out, inp, n); }
void relu_forward(DType dtype, void* out, const void* inp, int64_t n) { unary_forward<Relu>("relu", dtype, out, inp, n); }
void tanh_forward(DType dtype, void* out, const void* inp, int64_t n) { unary_forward<Tanh>("tanh", dtype, out, inp, n); }
void sigmoid_forward(DType dtype, void* out, const void* inp, int64_t n) {
  unary_forward<Sigmoid>("sigmoid", dtype, out, inp, n);
}
void silu_forward(DType dtype, void* out, const void* inp, int64_t n) { unary_forward<Silu>("silu", dtype, out, inp, n); }

void gelu_backward(DType dtype, void* dinp, const void* inp, const void* dout, int64_t n) {
  unary_backward<GeluGrad>("gelu_backward", dtype, dinp, inp, dout, n);
}
void relu_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t n) {
  unary_backward<ReluGrad>("relu_backward", dtype, dinp, out, dout, n);
}
void tanh_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t n) {
  unary_backward<TanhGrad>("tanh_backward", dtype, dinp, out, dout, n);
}
void sigmoid_backward(DType dtype, void* dinp, const void* inp, const void* dout, int64_t n) {
  unary_backward<SigmoidGrad>("sigmoid_backward", dtype, dinp, inp, dout, n);
}
void silu_backward(DType dtype, void* dinp, const void* inp, const void* dout, int64_t n) {
  unary_backward<SiluGrad>("silu_backward", dtype, dinp, inp, dout, n);
}

}  // namespace tg::cuda
