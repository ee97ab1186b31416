#include "ops/attention.h"

#include <string>

#include "ops/check.h"
#include "ops/cpu/attention.h"

namespace tg::ops {

// The user-facing name: these fronts only ever run on behalf of tg::causal_self_attention.
static const char* kOp = "causal_self_attention";

void check_attention_qkv(const Tensor& qkv, int64_t n_head) {
  check_defined(kOp, qkv, "qkv");
  if (qkv.dim() != 3)
    throw Error(std::string(kOp) + ": qkv must have 3 dimensions (B, T, 3C), found shape " + shape_str(qkv.shape()));
  if (qkv.size(2) % 3 != 0)
    throw Error(std::string(kOp) + ": qkv has shape " + shape_str(qkv.shape()) + "; its last dimension " +
                std::to_string(qkv.size(2)) + " is not 3C (q, k and v side by side)");
  const int64_t C = qkv.size(2) / 3;
  if (n_head <= 0)
    throw Error(std::string(kOp) + ": n_head is " + std::to_string(n_head) + ", expected a positive number of heads");
  if (C % n_head != 0)
    throw Error(std::string(kOp) + ": C = " + std::to_string(C) + " (qkv of shape " + shape_str(qkv.shape()) +
                ") is not divisible by n_head = " + std::to_string(n_head));
  check_dtype(kOp, qkv, "qkv", DType::F32);
}

// out-like (B,T,C) and lse (B,NH,T) tensors: right shape, f32, contiguous.
static void check_result(const Tensor& t, const char* name, const Shape& expected, const char* why) {
  check_shape(kOp, t, name, expected, why);
  check_dtype(kOp, t, name, DType::F32);
  check_contiguous(kOp, t, name);
}

void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t n_head) {
  check_attention_qkv(qkv, n_head);
  check_contiguous(kOp, qkv, "qkv");
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  check_result(out, "out", {B, T, C}, "(B, T, C) for qkv (B, T, 3C)");
  check_result(lse, "lse", {B, n_head, T}, "(B, n_head, T)");
  Device device = check_same_device(kOp, {&out, &lse, &qkv});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::attention_forward(out.data<float>(), lse.data<float>(), qkv.data<float>(), B, T, C, n_head);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t n_head) {
  check_attention_qkv(qkv, n_head);
  check_contiguous(kOp, qkv, "qkv");
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  check_result(dqkv, "dqkv", qkv.shape(), "the shape of qkv");
  check_result(dout, "dout", {B, T, C}, "(B, T, C) for qkv (B, T, 3C)");
  check_result(out, "out", {B, T, C}, "(B, T, C) for qkv (B, T, 3C)");
  check_result(lse, "lse", {B, n_head, T}, "(B, n_head, T)");
  Device device = check_same_device(kOp, {&dqkv, &dout, &qkv, &out, &lse});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::attention_backward(dqkv.data<float>(), dout.data<float>(), qkv.data<float>(), out.data<float>(),
                              lse.data<float>(), B, T, C, n_head);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
