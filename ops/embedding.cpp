#include "ops/embedding.h"


#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/embedding.h"
#ifdef TG_CUDA
#include "ops/cuda/embedding.h"
#endif

namespace tg::ops {

static const char* kOp = "embedding";

// The shape of the output: ids' shape followed by C.
static Shape output_shape(const Tensor& ids, int64_t C) {
  Shape shape = ids.shape();
  shape.push_back(C);
  return shape;
}

// Every id must index a row of weight; a wrong id would otherwise read or write outside it. Checked
// on the host for both devices: for CUDA ids that is one copy of N ints to the host, which waits
// for the work queued before it (the message names the position of the first bad id, as on the CPU).
static void check_ids_in_range(const Tensor& ids, int64_t V) {
  Tensor host = ids.device().is_cpu() ? ids : ids.to(Device::cpu());
  const int32_t* values = host.data<int32_t>();
  for (int64_t i = 0; i < host.numel(); i++)
    if (values[i] < 0 || values[i] >= V)
      throw Error(std::string(kOp) + ": ids" + position_str(i, ids.shape()) + " = " + std::to_string(values[i]) +
                  " is out of range for a weight of " + std::to_string(V) + " rows (expected 0 <= id < V = " +
                  std::to_string(V) + ")");
}

// ids: i32, contiguous; weight (or dweight): 2-d, a float dtype (f32 on the CPU), contiguous.
static void check_arguments(const Tensor& ids, const Tensor& weight, const char* weight_name) {
  check_dtype(kOp, ids, "ids", DType::I32);
  check_contiguous(kOp, ids, "ids");
  check_dim(kOp, weight, weight_name, 2);
  check_float_or_half_contiguous(kOp, weight, weight_name);
}

// The (..., C) operand: the shape ids + (C), weight's dtype, contiguous.
static void check_rows(const Tensor& t, const char* name, const Tensor& ids, const Tensor& weight,
                       const char* weight_name) {
  std::string why = "ids " + shape_str(ids.shape()) + " followed by C of " + weight_name + " " + shape_str(weight.shape());
  check_shape(kOp, t, name, output_shape(ids, weight.size(1)), why.c_str());
  check_same_dtype(kOp, weight, weight_name, t, name);
  check_contiguous(kOp, t, name);
}

void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& weight) {
  check_arguments(ids, weight, "weight");
  const int64_t V = weight.size(0), C = weight.size(1);
  check_rows(out, "out", ids, weight, "weight");
  Device device = check_same_device(kOp, {&out, &ids, &weight});
  check_ids_in_range(ids, V);
  // A gather: the traffic is the rows touched, not the whole table.
  ProfiledOp profiled("embedding", [&](OpCost& c) {
    c.reads("ids", ids).shape_of("weight", weight).writes("out", out);
    c.bytes += static_cast<double>(out.nbytes());  // the rows gathered
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      const float* w = staged.in(weight);
      if (out.dtype() == DType::F32) {
        cpu::embedding_forward(out.data<float>(), ids.data<int32_t>(), w, ids.numel(), C);
        break;
      }
      // The rows are independent: out is staged a few rows at a time (ops/f32_staging.h).
      const int32_t* id = ids.data<int32_t>();
      const int64_t N = ids.numel();
      staged_rows({{&out, PointwiseOperand::Out}}, N, staged_row_groups(N, N * C),
                  [&](int64_t, int64_t first, int64_t rows, float* const* blocks) {
                    cpu::embedding_forward(blocks[0], id + first, w, rows, C);
                  });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::embedding_forward(weight.dtype(), out.data_raw(), ids.data<int32_t>(), weight.data_raw(), ids.numel(), C);
      break;
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void embedding_backward(Tensor& dweight, const Tensor& dout, const Tensor& ids) {
  check_arguments(ids, dweight, "dweight");
  const int64_t V = dweight.size(0), C = dweight.size(1);
  check_rows(dout, "dout", ids, dweight, "dweight");
  Device device = check_same_device(kOp, {&dweight, &dout, &ids});
  check_ids_in_range(ids, V);
  ProfiledOp profiled("embedding_backward", [&](OpCost& c) {
    c.reads("ids", ids).reads("dout", dout).shape_of("dweight", dweight);
    c.bytes += 2.0 * static_cast<double>(dout.nbytes());  // the rows updated, read and written
    c.flops = static_cast<double>(dout.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::embedding_backward(staged.inout(dweight), staged.in(dout), ids.data<int32_t>(), ids.numel(), C);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      const int64_t N = ids.numel();
      // Scratch: the sorted (id, position) keys, 64-bit words held in pairs of i32, and the partial
      // rows of the runs of equal ids that cross a chunk boundary.
      Tensor keys = Tensor::empty({2 * cuda::embedding_backward_key_words(N)}, DType::I32, device);
      Tensor partials = Tensor::empty({cuda::embedding_backward_partial_floats(N, C)}, DType::F32, device);
      cuda::embedding_backward(dweight.dtype(), dweight.data_raw(), dout.data_raw(), ids.data<int32_t>(),
                               keys.data_raw(), partials.data<float>(), N, C);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
