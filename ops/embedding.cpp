#include "ops/embedding.h"

#include "ops/check.h"
#include "ops/cpu/embedding.h"

namespace tg::ops {

static const char* kOp = "embedding";

// The shape of the output: ids' shape followed by C.
static Shape output_shape(const Tensor& ids, int64_t C) {
  Shape shape = ids.shape();
  shape.push_back(C);
  return shape;
}

// Every id must index a row of weight; a wrong id would otherwise read or write outside it.
static void check_ids_in_range(const Tensor& ids, int64_t V) {
  Tensor host = ids.device().is_cpu() ? ids : ids.to(Device::cpu());
  const int32_t* values = host.data<int32_t>();
  for (int64_t i = 0; i < host.numel(); i++)
    if (values[i] < 0 || values[i] >= V)
      throw Error(std::string(kOp) + ": ids" + position_str(i, ids.shape()) + " = " + std::to_string(values[i]) +
                  " is out of range for a weight of " + std::to_string(V) + " rows (expected 0 <= id < V = " +
                  std::to_string(V) + ")");
}

static void check_arguments(const Tensor& ids, const Tensor& weight) {
  check_dtype(kOp, ids, "ids", DType::I32);
  check_contiguous(kOp, ids, "ids");
  check_dim(kOp, weight, "weight", 2);
  check_dtype(kOp, weight, "weight", DType::F32);
  check_contiguous(kOp, weight, "weight");
}

void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& weight) {
  check_arguments(ids, weight);
  const int64_t V = weight.size(0), C = weight.size(1);
  std::string why = "ids " + shape_str(ids.shape()) + " followed by C of weight " + shape_str(weight.shape());
  check_shape(kOp, out, "out", output_shape(ids, C), why.c_str());
  check_dtype(kOp, out, "out", DType::F32);
  check_contiguous(kOp, out, "out");
  Device device = check_same_device(kOp, {&out, &ids, &weight});
  check_ids_in_range(ids, V);
  switch (device.type) {
    case DeviceType::CPU:
      cpu::embedding_forward(out.data<float>(), ids.data<int32_t>(), weight.data<float>(), ids.numel(), C);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

void embedding_backward(Tensor& dweight, const Tensor& dout, const Tensor& ids) {
  check_arguments(ids, dweight);
  const int64_t V = dweight.size(0), C = dweight.size(1);
  std::string why = "ids " + shape_str(ids.shape()) + " followed by C of dweight " + shape_str(dweight.shape());
  check_shape(kOp, dout, "dout", output_shape(ids, C), why.c_str());
  check_dtype(kOp, dout, "dout", DType::F32);
  check_contiguous(kOp, dout, "dout");
  Device device = check_same_device(kOp, {&dweight, &dout, &ids});
  check_ids_in_range(ids, V);
  switch (device.type) {
    case DeviceType::CPU:
      cpu::embedding_backward(dweight.data<float>(), dout.data<float>(), ids.data<int32_t>(), ids.numel(), C);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
