#include "ops/gemm.h"

#include <algorithm>

#include "ops/check.h"
#include "ops/cpu/gemm.h"

namespace tg::ops {

namespace {

// How a strided (rows, cols) matrix sits in memory, in the terms the GEMM kernel takes: row-major
// with row stride ld, or (transposed) the row-major storage of its (cols, rows) transpose.
struct MatrixLayout {
  bool readable = false;
  bool transposed = false;
  int64_t ld = 1;
};

// Size-1 dims have meaningless strides (a (1, K) row can come from anywhere), so they never
// decide the layout; the leading dimension just has to keep rows from overlapping.
MatrixLayout layout_of(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  MatrixLayout layout;
  if ((cols <= 1 || col_stride == 1) && (rows <= 1 || row_stride >= cols)) {
    layout.readable = true;
    layout.ld = rows <= 1 ? std::max<int64_t>(cols, 1) : row_stride;
  } else if ((rows <= 1 || row_stride == 1) && (cols <= 1 || col_stride >= rows)) {
    layout.readable = layout.transposed = true;
    layout.ld = cols <= 1 ? std::max<int64_t>(rows, 1) : col_stride;
  }
  return layout;
}

MatrixLayout layout_of(const Tensor& t) {
  const int64_t d = t.dim();
  return layout_of(t.size(d - 2), t.size(d - 1), t.strides()[d - 2], t.strides()[d - 1]);
}

std::string flag_str(const char* name, bool trans) { return trans ? std::string(name) + "^T" : std::string(name); }

}  // namespace

bool matmul_readable(const Tensor& t) { return t.defined() && t.dim() >= 2 && layout_of(t).readable; }

void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float beta) {
  const char* op = "matmul";
  check_defined(op, out, "out");
  check_defined(op, a, "a");
  check_defined(op, b, "b");
  check_dtype(op, a, "a", DType::F32);
  check_dtype(op, b, "b", DType::F32);
  check_dtype(op, out, "out", DType::F32);
  auto shapes = [&] {
    return "a " + shape_str(a.shape()) + ", b " + shape_str(b.shape()) + ", out " + shape_str(out.shape()) +
           " computing " + flag_str("a", trans_a) + " @ " + flag_str("b", trans_b);
  };
  if (a.dim() < 2 || a.dim() > 3 || b.dim() < 2 || b.dim() > 3)
    throw Error(std::string(op) + ": operands must be 2-D or 3-D (batched); got " + shapes());
  const int64_t batch = std::max(a.dim(), b.dim()) == 3 ? (a.dim() == 3 ? a.size(0) : b.size(0)) : 0;
  if (a.dim() == 3 && b.dim() == 3 && a.size(0) != b.size(0))
    throw Error(std::string(op) + ": batch sizes differ (" + std::to_string(a.size(0)) + " vs " +
                std::to_string(b.size(0)) + "); got " + shapes());
  const int64_t M = trans_a ? a.size(-1) : a.size(-2), K = trans_a ? a.size(-2) : a.size(-1);
  const int64_t KB = trans_b ? b.size(-1) : b.size(-2), N = trans_b ? b.size(-2) : b.size(-1);
  if (K != KB)
    throw Error(std::string(op) + ": inner dimensions differ (" + std::to_string(K) + " vs " + std::to_string(KB) +
                "); got " + shapes());
  const Shape expected = batch ? Shape{batch, M, N} : Shape{M, N};
  if (out.shape() != expected)
    throw Error(std::string(op) + ": out has the wrong shape, expected " + shape_str(expected) + "; got " + shapes());
  check_contiguous(op, out, "out");
  const MatrixLayout la = layout_of(a), lb = layout_of(b);
  if (!la.readable)
    throw Error(std::string(op) + ": a has strides " + shape_str(a.strides()) +
                ", neither row-major nor a transposed view in its last two dims (call .contiguous()); got " + shapes());
  if (!lb.readable)
    throw Error(std::string(op) + ": b has strides " + shape_str(b.strides()) +
                ", neither row-major nor a transposed view in its last two dims (call .contiguous()); got " + shapes());
  Device device = check_same_device(op, {&out, &a, &b});
  switch (device.type) {
    case DeviceType::CPU: {
      // A transposed view of a matrix is the row-major storage of the matrix itself, read the
      // other way round: flip the flag instead of copying.
      const bool ta = trans_a != la.transposed, tb = trans_b != lb.transposed;
      if (!batch) {
        cpu::gemm(ta, tb, M, N, K, 1.0f, a.data<float>(), la.ld, b.data<float>(), lb.ld, beta, out.data<float>(), N);
      } else {
        const int64_t stride_a = a.dim() == 3 ? a.strides()[0] : 0, stride_b = b.dim() == 3 ? b.strides()[0] : 0;
        cpu::gemm_batched(ta, tb, M, N, K, 1.0f, a.data<float>(), la.ld, b.data<float>(), lb.ld, beta,
                          out.data<float>(), N, batch, stride_a, stride_b, M * N);
      }
      break;
    }
    default: throw_unsupported_device(op, device);
  }
}

void broadcast_rows(Tensor& out, const Tensor& bias) {
  const char* op = "broadcast_rows";
  check_dim(op, bias, "bias", 1);
  check_dtype(op, bias, "bias", DType::F32);
  check_dtype(op, out, "out", DType::F32);
  check_contiguous(op, out, "out");
  check_contiguous(op, bias, "bias");
  const int64_t N = bias.size(0);
  if (out.dim() < 1 || out.size(-1) != N)
    throw Error(std::string(op) + ": out has shape " + shape_str(out.shape()) + ", expected a last dimension of " +
                std::to_string(N) + " (the length of bias)");
  Device device = check_same_device(op, {&out, &bias});
  switch (device.type) {
    case DeviceType::CPU: cpu::broadcast_rows(out.data<float>(), bias.data<float>(), N ? out.numel() / N : 0, N); break;
    default: throw_unsupported_device(op, device);
  }
}

void column_sums_accumulate(Tensor& dbias, const Tensor& dout) {
  const char* op = "column_sums_accumulate";
  check_dim(op, dbias, "dbias", 1);
  check_dtype(op, dbias, "dbias", DType::F32);
  check_dtype(op, dout, "dout", DType::F32);
  check_contiguous(op, dbias, "dbias");
  check_contiguous(op, dout, "dout");
  const int64_t N = dbias.size(0);
  if (dout.dim() < 1 || dout.size(-1) != N)
    throw Error(std::string(op) + ": dout has shape " + shape_str(dout.shape()) + ", expected a last dimension of " +
                std::to_string(N) + " (the length of dbias)");
  Device device = check_same_device(op, {&dbias, &dout});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::column_sums_accumulate(dbias.data<float>(), dout.data<float>(), N ? dout.numel() / N : 0, N);
      break;
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
