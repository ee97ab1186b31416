#include "ops/attention.h"

#include <omp.h>

#include <string>

#include "ops/check.h"
#include "ops/profiler.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/half_convert.h"
#ifdef TG_CUDA
#include "ops/cuda/attention.h"
#endif

namespace tg::ops {

// bf16 / f16 on the CPU: the f32 kernels run on exact f32 copies of the 16-bit tensors (scores,
// softmax and both products in f32), and each output is rounded once, so the results are bit for
// bit the f32 kernels' on the widened inputs, rounded: every (batch element, head) is computed on
// its own, from its own columns. With at least two of those per thread, each thread gathers one
// (b, h) at a time into its own f32 scratch, laid out as a one-head problem (T rows of q|k|v, HS
// columns each), runs the kernel on it with C = HS and one head, and rounds what it wrote back into
// the head's columns: the copies are O(threads T HS) instead of O(B T C). With fewer, the whole
// tensors are staged (copies no larger than two per thread) and the kernel's own loop over heads
// and query blocks keeps every thread busy.
static bool stage_per_head(int64_t B, int64_t NH) { return B * NH >= 2 * int64_t(omp_get_max_threads()); }

// Head h of batch element b of a (B, T, parts * C) tensor (qkv: parts 3; out: 1) <-> an f32
// (T, parts * HS) block.
struct HeadBlock {
  int64_t b, h, T, C, HS;
  const uint16_t* at(const Tensor& t, int64_t parts, int64_t time, int64_t part) const {
    return static_cast<const uint16_t*>(t.data_raw()) + ((b * T + time) * parts + part) * C + h * HS;
  }
  // One strided conversion per part (T rows of HS): a call per row cost more than converting its
  // HS values, several milliseconds of every bf16 attention call at the small preset's shape.
  void gather(const Tensor& t, int64_t parts, float* block) const {
    for (int64_t part = 0; part < parts; part++) {
      const uint16_t* src = at(t, parts, 0, part);
      cpu::convert_half_to_f32_rows(t.dtype(), src, parts * C, block + part * HS, parts * HS, T, HS);
    }
  }
  void scatter(const float* block, Tensor& t, int64_t parts) const {
    for (int64_t part = 0; part < parts; part++) {
      uint16_t* dst = const_cast<uint16_t*>(at(t, parts, 0, part));
      cpu::convert_f32_to_half_rows(t.dtype(), block + part * HS, parts * HS, dst, parts * C, T, HS);
    }
  }
};

// Runs task(head, scratch) for every (b, h), one OpenMP loop, each thread with `floats` of scratch
// from the caching allocator (uninitialised: every block is gathered before it is read).
template <typename Task>
static void for_each_head(int64_t B, int64_t T, int64_t C, int64_t NH, int64_t floats, const Task& task) {
  const int threads = omp_get_max_threads();
  Tensor scratch = Tensor::empty({threads * floats}, DType::F32, Device::cpu());
#pragma omp parallel num_threads(threads)
  {
    float* mine = scratch.data<float>() + omp_get_thread_num() * floats;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) task(HeadBlock{bh / NH, bh % NH, T, C, C / NH}, mine);
  }
}

static Tensor widened(const Tensor& t) {
  Tensor wide = Tensor::empty(t.shape(), DType::F32, t.device());
  cpu::convert_half_to_f32(t.dtype(), static_cast<const uint16_t*>(t.data_raw()), wide.data<float>(), t.numel());
  return wide;
}

static void round_into(Tensor& t, const Tensor& wide) {
  cpu::convert_f32_to_half(t.dtype(), wide.data<float>(), static_cast<uint16_t*>(t.data_raw()), t.numel());
}

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
  check_float_or_half_dtype(kOp, qkv, "qkv");
}

// out-like (B,T,C) tensors: right shape, qkv's dtype, contiguous.
static void check_like_qkv(const Tensor& t, const char* name, const Tensor& qkv, const Shape& expected,
                           const char* why) {
  check_shape(kOp, t, name, expected, why);
  check_same_dtype(kOp, qkv, "qkv", t, name);
  check_contiguous(kOp, t, name);
}

// lse (B,NH,T): right shape, f32 whatever qkv's dtype (the softmax statistics stay f32), contiguous.
static void check_lse(const Tensor& lse, const Shape& expected) {
  check_shape(kOp, lse, "lse", expected, "(B, n_head, T)");
  check_dtype(kOp, lse, "lse", DType::F32);
  check_contiguous(kOp, lse, "lse");
}

#ifdef TG_CUDA
// The CUDA kernels serve head sizes up to cuda::kAttentionMaxHeadSize; past it, an error naming
// the user-facing op and HS (the launchers check too, naming themselves).
static void check_cuda_head_size(const Tensor& qkv, int64_t n_head) {
  const int64_t C = qkv.size(2) / 3, hs = C / n_head;
  if (qkv.device().is_cuda() && hs > cuda::kAttentionMaxHeadSize)
    throw Error(std::string(kOp) + ": head size HS = " + std::to_string(hs) + " (C = " + std::to_string(C) +
                ", n_head = " + std::to_string(n_head) + ") is not supported on CUDA; HS <= " +
                std::to_string(cuda::kAttentionMaxHeadSize) + " is");
}
#endif

void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t n_head) {
  check_attention_qkv(qkv, n_head);
  check_contiguous(kOp, qkv, "qkv");
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  check_like_qkv(out, "out", qkv, {B, T, C}, "(B, T, C) for qkv (B, T, 3C)");
  check_lse(lse, {B, n_head, T});
  Device device = check_same_device(kOp, {&out, &lse, &qkv});
  // Per head, QK^T and PV are (T,HS)x(HS,T) and (T,T)x(T,HS) products, half of each under the causal
  // mask: 2*2*T*T*HS/2 FLOPs per head, 2*B*T*T*C in all (the softmax's elementwise work uncounted).
  ProfiledOp profiled("attention", [&](OpCost& c) {
    c.reads("qkv", qkv).writes("out", out).writes("lse", lse);
    c.flops = 2.0 * static_cast<double>(B) * static_cast<double>(T) * static_cast<double>(T) * static_cast<double>(C);
  });
  switch (device.type) {
    case DeviceType::CPU:
      if (qkv.dtype() == DType::F32)
        cpu::attention_forward(out.data<float>(), lse.data<float>(), qkv.data<float>(), B, T, C, n_head);
      else if (stage_per_head(B, n_head)) {
        float* l = lse.data<float>();
        const int64_t HS = C / n_head;
        for_each_head(B, T, C, n_head, 4 * T * HS, [&](const HeadBlock& head, float* scratch) {
          float* q = scratch;  // (T, 3 HS)
          float* o = q + 3 * T * HS;  // (T, HS)
          head.gather(qkv, 3, q);
          cpu::attention_forward(o, l + (head.b * n_head + head.h) * T, q, 1, T, HS, 1);
          head.scatter(o, out, 1);
        });
      } else {
        Tensor qkv32 = widened(qkv), out32 = Tensor::empty(out.shape(), DType::F32, device);
        cpu::attention_forward(out32.data<float>(), lse.data<float>(), qkv32.data<float>(), B, T, C, n_head);
        round_into(out, out32);
      }
      break;
#ifdef TG_CUDA
    case DeviceType::CUDA:
      check_cuda_head_size(qkv, n_head);
      cuda::attention_forward(qkv.dtype(), out.data_raw(), lse.data<float>(), qkv.data_raw(), B, T, C, n_head);
      break;
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t n_head) {
  check_attention_qkv(qkv, n_head);
  check_contiguous(kOp, qkv, "qkv");
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3;
  check_like_qkv(dqkv, "dqkv", qkv, qkv.shape(), "the shape of qkv");
  check_like_qkv(dout, "dout", qkv, {B, T, C}, "(B, T, C) for qkv (B, T, 3C)");
  check_like_qkv(out, "out", qkv, {B, T, C}, "(B, T, C) for qkv (B, T, 3C)");
  check_lse(lse, {B, n_head, T});
  Device device = check_same_device(kOp, {&dqkv, &dout, &qkv, &out, &lse});
  // The backward recomputes QK^T and forms dV, dP, dQ and dK: five such products, 5*B*T*T*C.
  ProfiledOp profiled("attention_backward", [&](OpCost& c) {
    c.reads("dout", dout).reads("qkv", qkv).reads("out", out).reads("lse", lse).updates("dqkv", dqkv);
    c.flops = 5.0 * static_cast<double>(B) * static_cast<double>(T) * static_cast<double>(T) * static_cast<double>(C);
  });
  switch (device.type) {
    case DeviceType::CPU:
      if (qkv.dtype() == DType::F32)
        cpu::attention_backward(dqkv.data<float>(), dout.data<float>(), qkv.data<float>(), out.data<float>(),
                                lse.data<float>(), B, T, C, n_head);
      else if (stage_per_head(B, n_head)) {  // dqkv + its gradient is formed in f32 and rounded once
        const float* l = lse.data<float>();
        const int64_t HS = C / n_head;
        for_each_head(B, T, C, n_head, 8 * T * HS, [&](const HeadBlock& head, float* scratch) {
          float* dq = scratch;         // (T, 3 HS)
          float* q = dq + 3 * T * HS;  // (T, 3 HS)
          float* go = q + 3 * T * HS;  // (T, HS)
          float* o = go + T * HS;      // (T, HS)
          head.gather(dqkv, 3, dq);
          head.gather(qkv, 3, q);
          head.gather(dout, 1, go);
          head.gather(out, 1, o);
          cpu::attention_backward(dq, go, q, o, l + (head.b * n_head + head.h) * T, 1, T, HS, 1);
          head.scatter(dq, dqkv, 3);
        });
      } else {
        Tensor dqkv32 = widened(dqkv), dout32 = widened(dout), qkv32 = widened(qkv), out32 = widened(out);
        cpu::attention_backward(dqkv32.data<float>(), dout32.data<float>(), qkv32.data<float>(), out32.data<float>(),
                                lse.data<float>(), B, T, C, n_head);
        round_into(dqkv, dqkv32);
      }
      break;
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      check_cuda_head_size(qkv, n_head);
      // D = rowsum(dout * out) per (b, head, t): scratch the kernels fill before they read it.
      Tensor delta = Tensor::empty({B, n_head, T}, DType::F32, device);
      cuda::attention_backward(qkv.dtype(), dqkv.data_raw(), dout.data_raw(), qkv.data_raw(), out.data_raw(),
                               lse.data<float>(), delta.data<float>(), B, T, C, n_head);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
