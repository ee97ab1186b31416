#include "ops/reduce.h"

#include <string>

#include "ops/check.h"
#include "ops/cpu/reduce.h"

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
}  // namespace

void sum_forward(Tensor& out, const Tensor& inp, float scale) {
  const char* op = "sum";
  check_f32_contiguous(op, inp, "inp");
  check_f32_contiguous(op, out, "out");
  TG_CHECK(out.numel() == 1, std::string(op) + ": out has shape " + shape_str(out.shape()) + ", expected one element");
  Device device = check_same_device(op, {&out, &inp});
  switch (device.type) {
    case DeviceType::CPU: cpu::sum_forward(out.data<float>(), inp.data<float>(), 1, inp.numel(), 1, scale); break;
    default: throw_unsupported_device(op, device);
  }
}

void sum_backward(Tensor& dinp, const Tensor& dout, float scale) {
  const char* op = "sum_backward";
  check_f32_contiguous(op, dinp, "dinp");
  check_f32_contiguous(op, dout, "dout");
  TG_CHECK(dout.numel() == 1, std::string(op) + ": dout has shape " + shape_str(dout.shape()) + ", expected one element");
  Device device = check_same_device(op, {&dinp, &dout});
  switch (device.type) {
    case DeviceType::CPU: cpu::sum_backward(dinp.data<float>(), dout.data<float>(), 1, dinp.numel(), 1, scale); break;
    default: throw_unsupported_device(op, device);
  }
}

void sum_dim_forward(Tensor& out, const Tensor& inp, int64_t dim, float scale) {
  const char* op = "sum";
  check_f32_contiguous(op, inp, "inp");
  check_f32_contiguous(op, out, "out");
  dim = wrap_dim(dim, inp.dim(), op);
  check_reduced(op, out, "out", inp, "inp", dim);
  Device device = check_same_device(op, {&out, &inp});
  Span s = span_of(inp.shape(), dim);
  switch (device.type) {
    case DeviceType::CPU: cpu::sum_forward(out.data<float>(), inp.data<float>(), s.outer, s.size, s.inner, scale); break;
    default: throw_unsupported_device(op, device);
  }
}

void sum_dim_backward(Tensor& dinp, const Tensor& dout, int64_t dim, float scale) {
  const char* op = "sum_backward";
  check_f32_contiguous(op, dinp, "dinp");
  check_f32_contiguous(op, dout, "dout");
  dim = wrap_dim(dim, dinp.dim(), op);
  check_reduced(op, dout, "dout", dinp, "dinp", dim);
  Device device = check_same_device(op, {&dinp, &dout});
  Span s = span_of(dinp.shape(), dim);
  switch (device.type) {
    case DeviceType::CPU: cpu::sum_backward(dinp.data<float>(), dout.data<float>(), s.outer, s.size, s.inner, scale); break;
    default: throw_unsupported_device(op, device);
  }
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  const char* op = "sum_to";
  check_dtype(op, x, "x", DType::F32);
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
    Tensor result = Tensor::empty(result_shape, DType::F32, x.device());
    sum_dim_forward(result, input, static_cast<int64_t>(k), 1.0f);
    // Back to one entry per original dimension, the reduced ones now 1.
    for (size_t j = k; j < end; j++) cur[j] = 1;
    current = result.view(cur);
    k = end;
  }
  return current.view(shape);
}

}  // namespace tg::ops
