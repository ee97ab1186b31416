#include "ops/gemm.h"

#include <algorithm>
#include <vector>

#include "ops/check.h"
#include "ops/flops.h"
#include "ops/profiler.h"
#include "ops/cpu/activation.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/half_convert.h"
#ifdef TG_CUDA
#include "ops/cuda/gemm.h"
#endif

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

// The bits of a bf16 / f16 tensor, for the CPU kernels that take them (data<T> has no 16-bit T).
uint16_t* half_bits(const Tensor& t) { return static_cast<uint16_t*>(t.data_raw()); }

// ops::linear on the CPU for bf16 and f16: x (M,K) @ W^T through the 16-bit GEMM (bf16 on
// AVX512_BF16 where the CPU has it, f16 always widened to f32), accumulated in f32, and every
// output rounded once from f32, as the CUDA epilogue does.
void linear_half_cpu(Tensor& out, const Tensor& x, bool tx, int64_t ldx, const Tensor& weight, bool tw, int64_t ldw,
                     const Tensor& bias, const LinearEpilogue& epilogue, int64_t M, int64_t N, int64_t K) {
  const DType dtype = out.dtype();
  const float beta = bias.defined() ? 1.0f : 0.0f;
  if (!epilogue.gelu && !epilogue.residual.defined()) {
    // The bias rows (exact: already in out's dtype), then the GEMM adding onto them: acc + bias
    // formed in f32 and rounded once.
    if (bias.defined()) cpu::broadcast_rows_half(dtype, half_bits(out), half_bits(bias), M, N);
    cpu::gemm_half_batched(dtype, tx, tw, M, N, K, 1.0f, half_bits(x), ldx, half_bits(weight), ldw, beta,
                           half_bits(out), N, 1, 0, 0, 0);
    return;
  }
  // With GELU or a residual, v = x W^T + b stays in f32 for the epilogue, which rounds once. v is
  // formed a band of rows at a time (about kBandBytes of f32), so the f32 copy of a wide layer's
  // output is never whole: each output element is the same f32 sum, rounded once, whatever the band.
  constexpr int64_t kBandBytes = int64_t(2) << 20;
  const int64_t band = std::min(M, std::max<int64_t>(64, kBandBytes / (4 * std::max<int64_t>(N, 1)) / 64 * 64));
  Tensor v = Tensor::empty({band, N}, DType::F32, out.device());
  Tensor bias32;
  if (bias.defined()) {
    bias32 = Tensor::empty({N}, DType::F32, out.device());
    cpu::convert_half_to_f32(dtype, half_bits(bias), bias32.data<float>(), N);
  }
  uint16_t* pre_gelu = epilogue.pre_gelu.defined() ? half_bits(epilogue.pre_gelu) : nullptr;
  const uint16_t* residual = epilogue.residual.defined() ? half_bits(epilogue.residual) : nullptr;
  for (int64_t m0 = 0; m0 < M; m0 += band) {
    const int64_t rows = std::min(band, M - m0);
    if (bias.defined()) cpu::broadcast_rows(v.data<float>(), bias32.data<float>(), rows, N);
    // Rows m0.. of op(x): x stored (M,K) starts row m0 at m0 * ldx; stored (K,M), at column m0.
    cpu::gemm_half_batched(dtype, tx, tw, rows, N, K, 1.0f, half_bits(x) + (tx ? m0 : m0 * ldx), ldx, half_bits(weight),
                           ldw, beta, v.data<float>(), N, 1, 0, 0, 0);
    cpu::linear_epilogue_half(dtype, half_bits(out) + m0 * N, pre_gelu ? pre_gelu + m0 * N : nullptr, v.data<float>(),
                              epilogue.gelu, residual ? residual + m0 * N : nullptr, rows * N);
  }
}

}  // namespace

bool matmul_readable(const Tensor& t) { return t.defined() && t.dim() >= 2 && layout_of(t).readable; }

// The contract of a pre-packed B operand (matmul's packed_b, linear's packed_weight): packed as
// the call reads b (its storage, transposition and row stride, and op(b)'s K x N), for a 2-D f32
// product on the CPU. Throws tg::Error naming the op and what differs.
static void check_packed_b(const char* op, const cpu::PackedB& packed, const Tensor& b, bool tb, int64_t ldb,
                           int64_t K, int64_t N, bool batched, Device device, DType dtype) {
  if (!device.is_cpu() || dtype != DType::F32 || batched)
    throw Error(std::string(op) + ": a pre-packed operand needs a 2-D f32 product on the CPU, found " +
                (batched ? "a batched " : "a ") + dtype_name(dtype) + " product on " + device.str());
  if (!packed.packs(tb, b.data<float>(), ldb) || packed.rows() != K || packed.cols() != N)
    throw Error(std::string(op) + ": the pre-packed operand is not this call's b: it packs " +
                std::to_string(packed.rows()) + " x " + std::to_string(packed.cols()) + ", the call reads " +
                std::to_string(K) + " x " + std::to_string(N) + " (or another storage or transposition)");
}

void matmul(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, float beta,
            const cpu::PackedB* packed_b) {
  const char* op = "matmul";
  check_defined(op, out, "out");
  check_defined(op, a, "a");
  check_defined(op, b, "b");
  check_float_or_half_dtype(op, a, "a");
  check_same_dtype(op, a, "a", b, "b");
  check_same_dtype(op, a, "a", out, "out");
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
  // A transposed view of a matrix is the row-major storage of the matrix itself, read the other
  // way round: flip the flag instead of copying.
  const bool ta = trans_a != la.transposed, tb = trans_b != lb.transposed;
  if (packed_b) check_packed_b(op, *packed_b, b, tb, lb.ld, K, N, batch != 0, device, out.dtype());
  const int64_t stride_a = a.dim() == 3 ? a.strides()[0] : 0, stride_b = b.dim() == 3 ? b.strides()[0] : 0;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) *
                       static_cast<double>(batch ? batch : 1);
  count_flops(flops);
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.reads("a", a).reads("b", b);
    if (beta != 0.0f) cost.updates("out", out);
    else cost.writes("out", out);
    cost.flops = flops;
    cost.bf16_dot = gemm_runs_on_bf16_dot(a.dtype(), device);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      if (out.dtype() != DType::F32) {
        // bf16 / f16: f32 accumulation, out (with beta * out) rounded once; see ops/cpu/gemm_bf16.h.
        cpu::gemm_half_batched(out.dtype(), ta, tb, M, N, K, 1.0f, half_bits(a), la.ld, half_bits(b), lb.ld, beta,
                               half_bits(out), N, batch ? batch : 1, stride_a, stride_b, M * N);
      } else if (packed_b) {
        cpu::gemm_packed(M, N, K, 1.0f, cpu::MatrixPackA(ta, a.data<float>(), la.ld), *packed_b, beta,
                         out.data<float>(), N);
      } else if (!batch) {
        cpu::gemm(ta, tb, M, N, K, 1.0f, a.data<float>(), la.ld, b.data<float>(), lb.ld, beta, out.data<float>(), N);
      } else {
        cpu::gemm_batched(ta, tb, M, N, K, 1.0f, a.data<float>(), la.ld, b.data<float>(), lb.ld, beta,
                          out.data<float>(), N, batch, stride_a, stride_b, M * N);
      }
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::gemm_batched(out.dtype(), ta, tb, M, N, K, 1.0f, a.data_raw(), la.ld, b.data_raw(), lb.ld, beta,
                         out.data_raw(), N, batch ? batch : 1, stride_a, stride_b, M * N);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void linear(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias, const LinearEpilogue& epilogue,
            const cpu::PackedB* packed_weight) {
  const char* op = "linear";
  check_defined(op, out, "out");
  check_defined(op, x, "x");
  check_defined(op, weight, "weight");
  check_float_or_half_dtype(op, x, "x");
  check_same_dtype(op, x, "x", weight, "weight");
  check_same_dtype(op, x, "x", out, "out");
  auto shapes = [&] {
    return "x " + shape_str(x.shape()) + ", weight " + shape_str(weight.shape()) +
           (bias.defined() ? ", bias " + shape_str(bias.shape()) : std::string()) + ", out " + shape_str(out.shape());
  };
  if (x.dim() != 2 || weight.dim() != 2 || x.size(1) != weight.size(1))
    throw Error(std::string(op) + ": expected x (M, IN) and weight (OUT, IN); got " + shapes());
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  check_shape(op, out, "out", {M, N}, "x's rows by weight's OUT");
  check_contiguous(op, out, "out");
  if (bias.defined()) {
    check_shape(op, bias, "bias", {N}, "weight's OUT");
    check_same_dtype(op, x, "x", bias, "bias");
    check_contiguous(op, bias, "bias");
  }
  if (epilogue.pre_gelu.defined()) {
    if (!epilogue.gelu) throw Error(std::string(op) + ": pre_gelu is given but the epilogue applies no GELU");
    check_shape(op, epilogue.pre_gelu, "pre_gelu", {M, N}, "out's shape");
    check_same_dtype(op, x, "x", epilogue.pre_gelu, "pre_gelu");
    check_contiguous(op, epilogue.pre_gelu, "pre_gelu");
  }
  if (epilogue.residual.defined()) {
    check_shape(op, epilogue.residual, "residual", {M, N}, "out's shape");
    check_same_dtype(op, x, "x", epilogue.residual, "residual");
    check_contiguous(op, epilogue.residual, "residual");
  }
  const MatrixLayout lx = layout_of(x), lw = layout_of(weight);
  if (!lx.readable || !lw.readable)
    throw Error(std::string(op) + ": " + (lx.readable ? "weight" : "x") + " has strides " +
                shape_str((lx.readable ? weight : x).strides()) +
                ", neither row-major nor a transposed view (call .contiguous()); got " + shapes());
  Device device = check_same_device(op, {&out, &x, &weight, &bias, &epilogue.pre_gelu, &epilogue.residual});
  // weight (OUT, IN) is read transposed; a transposed view flips the flag, as in matmul.
  const bool tx = lx.transposed, tw = !lw.transposed;
  if (packed_weight) check_packed_b(op, *packed_weight, weight, tw, lw.ld, K, N, false, device, out.dtype());
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  count_flops(flops);
  // The epilogue's elementwise work (bias, GELU, residual: a few FLOPs per output) is left out of
  // the FLOPs, as MFU leaves it out; its traffic (the extra tensors) is in the bytes.
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.reads("x", x).reads("weight", weight).reads("bias", bias).writes("out", out);
    cost.writes("pre_gelu", epilogue.pre_gelu).reads("residual", epilogue.residual);
    cost.flops = flops;
    cost.bf16_dot = gemm_runs_on_bf16_dot(x.dtype(), device);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      if (out.dtype() != DType::F32) {
        linear_half_cpu(out, x, tx, lx.ld, weight, tw, lw.ld, bias, epilogue, M, N, K);
        break;
      }
      // The passes below overwrite out before the residual is added: keep a residual that is out
      // itself (allowed, as on CUDA where each element is read before it is written).
      Tensor residual = epilogue.residual;
      if (residual.defined() && residual.data_raw() == out.data_raw()) residual = residual.clone();
      // v = x W^T + b goes where the GELU will read it: the pre-activation buffer when one is kept.
      Tensor v = epilogue.gelu && epilogue.pre_gelu.defined() ? epilogue.pre_gelu : out;  // a handle
      if (bias.defined()) cpu::broadcast_rows(v.data<float>(), bias.data<float>(), M, N);
      const float beta = bias.defined() ? 1.0f : 0.0f;
      if (packed_weight)
        cpu::gemm_packed(M, N, K, 1.0f, cpu::MatrixPackA(tx, x.data<float>(), lx.ld), *packed_weight, beta,
                         v.data<float>(), N);
      else
        cpu::gemm(tx, tw, M, N, K, 1.0f, x.data<float>(), lx.ld, weight.data<float>(), lw.ld, beta, v.data<float>(), N);
      if (epilogue.gelu) cpu::gelu_forward(out.data<float>(), v.data<float>(), M * N);  // in place when v is out
      if (residual.defined()) {
        const std::vector<int64_t> strides = {N, 1}, shape = {M, N};
        cpu::add_forward(out.data<float>(), out.data<float>(), strides, residual.data<float>(), strides, shape);
      }
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      cuda::GemmEpilogue fused;
      fused.bias = bias.defined() ? bias.data_raw() : nullptr;
      fused.gelu = epilogue.gelu;
      fused.pre_gelu = epilogue.pre_gelu.defined() ? epilogue.pre_gelu.data_raw() : nullptr;
      fused.residual = epilogue.residual.defined() ? epilogue.residual.data_raw() : nullptr;
      cuda::gemm(out.dtype(), tx, tw, M, N, K, 1.0f, x.data_raw(), lx.ld, weight.data_raw(), lw.ld, 0.0f,
                 out.data_raw(), N, fused);
      break;
    }
#endif
    default: throw_unsupported_device(op, device);
  }
}

// The bias helpers' contract: `row` (N) and `rows` (..., N), both contiguous, of one float dtype
// and one device. Returns N.
static int64_t check_row_against_rows(const char* op, const Tensor& row, const char* row_name, const Tensor& rows,
                                      const char* rows_name) {
  check_dim(op, row, row_name, 1);
  check_float_or_half_contiguous(op, row, row_name);
  check_same_dtype(op, row, row_name, rows, rows_name);
  check_contiguous(op, rows, rows_name);
  const int64_t N = row.size(0);
  if (rows.dim() < 1 || rows.size(-1) != N)
    throw Error(std::string(op) + ": " + rows_name + " has shape " + shape_str(rows.shape()) +
                ", expected a last dimension of " + std::to_string(N) + " (the length of " + row_name + ")");
  check_same_device(op, {&row, &rows});
  return N;
}

void broadcast_rows(Tensor& out, const Tensor& bias) {
  const char* op = "broadcast_rows";
  const int64_t N = check_row_against_rows(op, bias, "bias", out, "out");
  ProfiledOp profiled(op, [&](OpCost& cost) { cost.reads("bias", bias).writes("out", out); });
  Device device = out.device();
  switch (device.type) {
    case DeviceType::CPU:
      if (out.dtype() == DType::F32)
        cpu::broadcast_rows(out.data<float>(), bias.data<float>(), N ? out.numel() / N : 0, N);
      else
        cpu::broadcast_rows_half(out.dtype(), half_bits(out), half_bits(bias), N ? out.numel() / N : 0, N);
      break;
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::broadcast_rows(out.dtype(), out.data_raw(), bias.data_raw(), N ? out.numel() / N : 0, N);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

bool gemm_runs_on_bf16_dot(DType dtype, Device device) {
  return device.is_cpu() && dtype == DType::BF16 && cpu::gemm_bf16_path() == cpu::GemmBf16Path::Avx512Bf16;
}

void column_sums_accumulate(Tensor& dbias, const Tensor& dout) {
  const char* op = "column_sums_accumulate";
  const int64_t N = check_row_against_rows(op, dbias, "dbias", dout, "dout");
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.updates("dbias", dbias).reads("dout", dout);
    cost.flops = static_cast<double>(dout.numel());  // one add per element
  });
  Device device = dout.device();
  switch (device.type) {
    case DeviceType::CPU:
      if (dout.dtype() == DType::F32)
        cpu::column_sums_accumulate(dbias.data<float>(), dout.data<float>(), N ? dout.numel() / N : 0, N);
      else
        cpu::column_sums_accumulate_half(dout.dtype(), half_bits(dbias), half_bits(dout), N ? dout.numel() / N : 0, N);
      break;
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      const int64_t M = N ? dout.numel() / N : 0;
      // Per-band partial sums live here between the two deterministic passes.
      Tensor scratch = Tensor::empty({std::max<int64_t>(cuda::column_sums_scratch_floats(M, N), 1)}, DType::F32, device);
      cuda::column_sums_accumulate(dbias.dtype(), dbias.data_raw(), dout.data_raw(), M, N, scratch.data<float>());
      break;
    }
#endif
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
