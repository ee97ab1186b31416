#include "dist/communicator.h"

namespace tg::dist {

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "average"; }

std::string Communicator::describe(const char* op, const Tensor& tensor, const std::string& label,
                                   const char* detail) const {
  std::string text = "rank " + std::to_string(rank()) + " of " + std::to_string(world_size()) + ": " + op;
  if (detail) text += std::string(" (") + detail + ")";
  if (tensor.defined()) {
    text += " of " + (label.empty() ? std::string("a tensor") : label) + " (" + dtype_name(tensor.dtype()) +
            ", shape " + shape_str(tensor.shape()) + ")";
  } else if (!label.empty()) {
    text += " of " + label;
  }
  return text;
}

void Communicator::check_tensor(const char* op, const Tensor& tensor, const std::string& label) const {
  if (!tensor.defined()) throw Error(describe(op, tensor, label) + ": the tensor is undefined");
  if (tensor.device().type != device_type())
    throw Error(describe(op, tensor, label) + ": the " + engine() + " engine moves " +
                (device_type() == DeviceType::CPU ? "CPU" : "CUDA") + " tensors, this one is on " +
                tensor.device().str());
  if (!tensor.is_contiguous()) throw Error(describe(op, tensor, label) + ": the tensor must be contiguous");
}

void Communicator::check_reduce_op(const char* op, const Tensor& tensor, ReduceOp reduce, const std::string& label) const {
  if (reduce == ReduceOp::Average && !is_floating(tensor.dtype()))
    throw Error(describe(op, tensor, label, reduce_op_name(reduce)) +
                ": average needs a floating-point dtype (f32, bf16, f16); sum integer tensors instead");
}

void Communicator::check_scatter_gather(const char* op, const Tensor& small, const char* small_name, const Tensor& big,
                                        const char* big_name, const std::string& label) const {
  check_tensor(op, small, label);
  check_tensor(op, big, label);
  if (small.dtype() != big.dtype())
    throw Error(describe(op, big, label) + ": " + small_name + " is " + dtype_name(small.dtype()) + " and " + big_name +
                " is " + dtype_name(big.dtype()) + "; they must have one dtype");
  if (big.numel() != small.numel() * world_size())
    throw Error(describe(op, big, label) + ": " + big_name + " has " + std::to_string(big.numel()) +
                " elements, expected world size " + std::to_string(world_size()) + " x " + small_name + "'s " +
                std::to_string(small.numel()) + " = " + std::to_string(small.numel() * world_size()));
}

void divide_cpu_in_place(Tensor& tensor, int divisor) {
  const int64_t n = tensor.numel();
  const float d = static_cast<float>(divisor);
  switch (tensor.dtype()) {
    case DType::F32: {
      float* p = tensor.data<float>();
      for (int64_t i = 0; i < n; i++) p[i] /= d;
      return;
    }
    case DType::BF16: {
      uint16_t* p = static_cast<uint16_t*>(tensor.data_raw());
      for (int64_t i = 0; i < n; i++) p[i] = f32_to_bf16(bf16_to_f32(p[i]) / d);
      return;
    }
    case DType::F16: {
      uint16_t* p = static_cast<uint16_t*>(tensor.data_raw());
      for (int64_t i = 0; i < n; i++) p[i] = f32_to_f16(f16_to_f32(p[i]) / d);
      return;
    }
    default:
      throw Error(std::string("divide_cpu_in_place: expected a floating-point tensor, found ") + dtype_name(tensor.dtype()));
  }
}

}  // namespace tg::dist
