#include "ops/concat.h"

#include <string>

#include "ops/accumulate.h"
#include "ops/check.h"
#include "ops/profiler.h"
#include "ops/cpu/concat.h"
#ifdef TG_CUDA
#include "ops/cuda/concat.h"
#endif

namespace tg::ops {

namespace {
std::string entry(size_t i) { return "tensors[" + std::to_string(i) + "]"; }
}  // namespace

Shape concat_shape(const char* op, const std::vector<Tensor>& inputs, int64_t dim) {
  if (inputs.empty()) throw Error(std::string(op) + ": tensors is an empty list; expected at least one tensor");
  for (size_t i = 0; i < inputs.size(); i++) check_defined(op, inputs[i], entry(i).c_str());
  const Tensor& first = inputs[0];
  for (size_t i = 0; i < inputs.size(); i++)
    if (inputs[i].dim() == 0)
      throw Error(std::string(op) + ": " + entry(i) +
                  " is zero-dimensional (shape ()) and has no dimension to join along; stack joins along a new one");
  const int64_t d = wrap_dim(dim, first.dim(), op);
  Shape shape = first.shape();
  for (size_t i = 1; i < inputs.size(); i++) {
    const Tensor& t = inputs[i];
    const std::string name = entry(i);
    if (t.dim() != first.dim())
      throw Error(std::string(op) + ": " + name + " has shape " + shape_str(t.shape()) + " but tensors[0] has " +
                  shape_str(first.shape()) + "; they must have the same number of dimensions");
    for (int64_t k = 0; k < t.dim(); k++)
      if (k != d && t.shape()[k] != first.shape()[k])
        throw Error(std::string(op) + ": " + name + " has shape " + shape_str(t.shape()) + " but tensors[0] has " +
                    shape_str(first.shape()) + "; they must match in every dimension but " + std::to_string(d) +
                    " (the one joined along)");
    check_same_dtype(op, first, "tensors[0]", t, name.c_str());
    if (t.device() != first.device())
      throw Error(std::string(op) + ": " + name + " is on " + t.device().str() + " but tensors[0] is on " +
                  first.device().str());
    shape[d] += t.shape()[d];
  }
  return shape;
}

void concat_forward(Tensor& out, const std::vector<Tensor>& inputs, int64_t dim) {
  const char* op = "concat";
  check_contiguous(op, out, "out");
  if (dim < 0 || dim >= out.dim())
    throw Error(std::string(op) + ": dim " + std::to_string(dim) + " out of range for out of shape " +
                shape_str(out.shape()));
  check_shape(op, out, "out", concat_shape(op, inputs, dim), "the inputs joined along dim");
  check_same_dtype(op, out, "out", inputs[0], "tensors[0]");
  if (out.device() != inputs[0].device())
    throw Error(std::string(op) + ": out is on " + out.device().str() + " but the inputs are on " +
                inputs[0].device().str());
  // Row-major: each input is (outer, its run) and out is (outer, the sum of the runs).
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < dim; k++) outer *= out.shape()[k];
  for (int64_t k = dim + 1; k < out.dim(); k++) inner *= out.shape()[k];
  const int64_t element = static_cast<int64_t>(dtype_size(out.dtype()));
  std::vector<const void*> pointers;
  std::vector<int64_t> run_bytes;
  for (size_t i = 0; i < inputs.size(); i++) {
    check_contiguous(op, inputs[i], entry(i).c_str());
    pointers.push_back(inputs[i].data_raw());
    run_bytes.push_back(inputs[i].shape()[dim] * inner * element);
  }
  const Device device = out.device();
  ProfiledOp profiled(op, [&](OpCost& c) {
    for (const Tensor& input : inputs) c.reads("input", input);
    c.writes("out", out);
  });
  switch (device.type) {
    case DeviceType::CPU: cpu::concat_forward(out.data_raw(), pointers, run_bytes, outer); break;
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::concat_forward(out.data_raw(), pointers, run_bytes, outer); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void concat_backward(std::vector<Tensor>& dinputs, const Tensor& dout, int64_t dim, const std::vector<int64_t>& sizes) {
  const char* op = "concat_backward";
  check_defined(op, dout, "dout");
  if (dinputs.size() != sizes.size())
    throw Error(std::string(op) + ": " + std::to_string(dinputs.size()) + " gradient buffers for " +
                std::to_string(sizes.size()) + " sizes");
  if (dim < 0 || dim >= dout.dim())
    throw Error(std::string(op) + ": dim " + std::to_string(dim) + " out of range for dout of shape " +
                shape_str(dout.shape()));
  int64_t total = 0;
  for (int64_t size : sizes) total += size;
  if (total != dout.shape()[dim])
    throw Error(std::string(op) + ": sizes sum to " + std::to_string(total) + " but dout of shape " +
                shape_str(dout.shape()) + " has " + std::to_string(dout.shape()[dim]) + " in dimension " +
                std::to_string(dim));
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.reads("dout", dout);
    for (const Tensor& d : dinputs) c.updates("dinput", d);
    c.flops = static_cast<double>(dout.numel());
  });
  int64_t start = 0;
  for (size_t i = 0; i < sizes.size(); i++) {
    if (dinputs[i].defined()) accumulate(dinputs[i], dout.narrow(dim, start, sizes[i]));
    start += sizes[i];
  }
}

}  // namespace tg::ops
