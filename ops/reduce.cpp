#include "ops/reduce.h"

#include <string>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/reduce.h"
#ifdef TG_CUDA
#include "ops/cuda/reduce.h"
#endif

namespace tg::ops {

namespace {
// The (outer, size, inner) view of summing `shape` over `dim`.
struct Span {
  int64_t outer = 1, size = 1, inner = 1;
};

Span span_of(const Shape& shape, int64_t dim) {
  Span s;
  for (int64_t k = 0; k < static_cast<int64_t>(shape.size()); k++) {
    if (k < dim) s.outer *= shape[k];
    else if (k == dim) s.size = shape[k];
    else s.inner *= shape[k];
  }
  return s;
}

// The two shapes a sum over `dim` may produce: without the dimension, and with it kept as 1.
bool is_reduced_shape(const Shape& out, const Shape& inp, int64_t dim) {
  Shape kept = inp, dropped = inp;
  kept[dim] = 1;
  dropped.erase(dropped.begin() + dim);
  return out == kept || out == dropped;
}

void check_reduced(const char* op, const Tensor& out, const char* out_name, const Tensor& inp, const char* inp_name,
                   int64_t dim) {
  if (!is_reduced_shape(out.shape(), inp.shape(), dim))
    throw Error(std::string(op) + ": " + out_name + " has shape " + shape_str(out.shape()) + ", expected " +
                inp_name + "'s shape " + shape_str(inp.shape()) + " without dimension " + std::to_string(dim) +
                " (or with it kept as 1)");
}

// Both tensors of one floating dtype and contiguous.
void check_pair(const char* op, const Tensor& out, const char* out_name, const Tensor& inp, const char* inp_name) {
  check_float_or_half_contiguous(op, inp, inp_name);
  check_contiguous(op, out, out_name);
  check_same_dtype(op, inp, inp_name, out, out_name);
}

#ifdef TG_CUDA
// The CUDA sum with the f32 scratch its first pass may need (freed at once: one stream, see
// ops/cuda/reduce.h).
void cuda_sum(Tensor& out, const Tensor& inp, const Span& s, float scale) {
  int64_t count = cuda::sum_scratch_floats(s.outer, s.size, s.inner);
  Tensor scratch = count > 0 ? Tensor::empty({count}, DType::F32, inp.device()) : Tensor();
  cuda::sum_forward(inp.dtype(), out.data_raw(), inp.data_raw(), s.outer, s.size, s.inner, scale,
                    scratch.defined() ? scratch.data<float>() : nullptr);
}
#endif
}  // namespace

void sum_forward(Tensor& out, const Tensor& inp, float scale) {
  const char* op = "sum";
  check_pair(op, out, "out", inp, "inp");
  TG_CHECK(out.numel() == 1, std::string(op) + ": out has shape " + shape_str(out.shape()) + ", expected one element");
  Device device = check_same_device(op, {&out, &inp});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::sum_forward(staged.out(out), staged.in(inp), 1, inp.numel(), 1, scale);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda_sum(out, inp, Span{1, inp.numel(), 1}, scale); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void sum_backward(Tensor& dinp, const Tensor& dout, float scale) {
  const char* op = "sum_backward";
  check_pair(op, dinp, "dinp", dout, "dout");
  TG_CHECK(dout.numel() == 1, std::string(op) + ": dout has shape " + shape_str(dout.shape()) + ", expected one element");
  Device device = check_same_device(op, {&dinp, &dout});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("dout", dout).updates("dinp", dinp); c.flops = static_cast<double>(dinp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::sum_backward(staged.inout(dinp), staged.in(dout), 1, dinp.numel(), 1, scale);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::sum_backward(dout.dtype(), dinp.data_raw(), dout.data_raw(), 1, dinp.numel(), 1, scale);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void sum_dim_forward(Tensor& out, const Tensor& inp, int64_t dim, float scale) {
  const char* op = "sum";
  check_pair(op, out, "out", inp, "inp");
  dim = wrap_dim(dim, inp.dim(), op);
  check_reduced(op, out, "out", inp, "inp", dim);
  Device device = check_same_device(op, {&out, &inp});
  Span s = span_of(inp.shape(), dim);
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::sum_forward(staged.out(out), staged.in(inp), s.outer, s.size, s.inner, scale);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda_sum(out, inp, s, scale); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void sum_dim_backward(Tensor& dinp, const Tensor& dout, int64_t dim, float scale) {
  const char* op = "sum_backward";
  check_pair(op, dinp, "dinp", dout, "dout");
  dim = wrap_dim(dim, dinp.dim(), op);
  check_reduced(op, dout, "dout", dinp, "dinp", dim);
  Device device = check_same_device(op, {&dinp, &dout});
  Span s = span_of(dinp.shape(), dim);
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("dout", dout).updates("dinp", dinp); c.flops = static_cast<double>(dinp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::sum_backward(staged.inout(dinp), staged.in(dout), s.outer, s.size, s.inner, scale);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::sum_backward(dout.dtype(), dinp.data_raw(), dout.data_raw(), s.outer, s.size, s.inner, scale);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  const char* op = "sum_to";
  check_float_or_half_dtype(op, x, "x");
  const Shape& from = x.shape();
  size_t lead = from.size() >= shape.size() ? from.size() - shape.size() : 0;
  bool fits = from.size() >= shape.size();
  for (size_t k = 0; fits && k < shape.size(); k++) fits = shape[k] == from[lead + k] || shape[k] == 1;
  if (!fits)
    throw Error(std::string(op) + ": cannot sum shape " + shape_str(from) + " down to " + shape_str(shape) +
                " (it must broadcast to the former)");
  Tensor current = x.contiguous();
  // Runs of adjacent dimensions to reduce collapse into one (outer, size, inner) pass each; the
  // leading extra dimensions form the first run.
  Shape cur = from;  // shape of `current`, with reduced dimensions kept as 1
  size_t k = 0;
  while (k < cur.size()) {
    bool reduce = k < lead ? true : (shape[k - lead] == 1 && cur[k] != 1);
    if (!reduce) { k++; continue; }
    size_t end = k;
    while (end < cur.size() && (end < lead || (shape[end - lead] == 1))) end++;
    // Merge dimensions [k, end) into one and sum it.
    Shape merged(cur.begin(), cur.begin() + k);
    int64_t run = 1;
    for (size_t j = k; j < end; j++) run *= cur[j];
    merged.push_back(run);
    merged.insert(merged.end(), cur.begin() + end, cur.end());
    Tensor input = current.view(merged);
    Shape result_shape = merged;
    result_shape[k] = 1;
    Tensor result = Tensor::empty(result_shape, x.dtype(), x.device());
    sum_dim_forward(result, input, static_cast<int64_t>(k), 1.0f);
    // Back to one entry per original dimension, the reduced ones now 1.
    for (size_t j = k; j < end; j++) cur[j] = 1;
    current = result.view(cur);
    k = end;
  }
  return current.view(shape);
}

}  // namespace tg::ops
