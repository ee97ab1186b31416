#include "ops/elementwise.h"

#include <algorithm>
#include <string>

#include "ops/check.h"
#include "ops/cpu/elementwise.h"
#include "ops/reduce.h"

namespace tg::ops {

Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t k = 0; k < nd; k++) {
    // Align from the right: a dimension missing on one side counts as size 1.
    int64_t da = k < nd - a.size() ? 1 : a[k - (nd - a.size())];
    int64_t db = k < nd - b.size() ? 1 : b[k - (nd - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                  " do not broadcast (dimension " + std::to_string(k) + " of the result: " + std::to_string(da) +
                  " vs " + std::to_string(db) + "; each pair must be equal or contain a 1)");
    out[k] = da == 1 ? db : da;
  }
  return out;
}

// Element strides that walk `t` over the broadcast shape `out_shape`: 0 along dimensions that t
// lacks or has size 1 in.
static Shape broadcast_strides(const Tensor& t, const Shape& out_shape) {
  size_t nd = out_shape.size(), offset = nd - static_cast<size_t>(t.dim());
  Shape strides(nd, 0);
  for (size_t k = offset; k < nd; k++)
    strides[k] = t.shape()[k - offset] == 1 ? 0 : t.strides()[k - offset];
  return strides;
}

namespace {
enum class BinaryOp { Add, Sub, Mul, Div };

void binary_forward(const char* op, BinaryOp kind, Tensor& out, const Tensor& a, const Tensor& b) {
  check_dtype(op, a, "a", DType::F32);
  check_dtype(op, b, "b", DType::F32);
  check_dtype(op, out, "out", DType::F32);
  check_shape(op, out, "out", broadcast_shape(op, a.shape(), b.shape()), "the broadcast shape of a and b");
  check_contiguous(op, out, "out");
  Device device = check_same_device(op, {&out, &a, &b});
  switch (device.type) {
    case DeviceType::CPU: {
      Shape a_strides = broadcast_strides(a, out.shape()), b_strides = broadcast_strides(b, out.shape());
      const float* pa = a.data<float>();
      const float* pb = b.data<float>();
      float* po = out.data<float>();
      switch (kind) {
        case BinaryOp::Add: cpu::add_forward(po, pa, a_strides, pb, b_strides, out.shape()); break;
        case BinaryOp::Sub: cpu::sub_forward(po, pa, a_strides, pb, b_strides, out.shape()); break;
        case BinaryOp::Mul: cpu::mul_forward(po, pa, a_strides, pb, b_strides, out.shape()); break;
        case BinaryOp::Div: cpu::div_forward(po, pa, a_strides, pb, b_strides, out.shape()); break;
      }
      break;
    }
    default: throw_unsupported_device(op, device);
  }
}

// How a backward can treat its operands: both dense with dout's shape, or the second one a single
// row (C) broadcast against a dense (rows, C) first one, or neither (the general path).
enum class Layout { Same, Rows, General };

Layout classify(const Tensor& dout, const Tensor& full, const Tensor& row) {
  if (!full.is_contiguous() || !row.is_contiguous() || full.shape() != dout.shape()) return Layout::General;
  if (row.shape() == dout.shape()) return Layout::Same;
  if (dout.dim() == 0) return Layout::General;
  // The row operand must be (C) after dropping leading size-1 dimensions.
  int64_t C = dout.shape().back();
  const Shape& s = row.shape();
  if (s.empty() || s.back() != C || C == 1) return Layout::General;
  for (size_t k = 0; k + 1 < s.size(); k++)
    if (s[k] != 1) return Layout::General;
  return Layout::Rows;
}

float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

void check_grad(const char* op, const Tensor& grad, const char* name) {
  if (!grad.defined()) return;
  check_dtype(op, grad, name, DType::F32);
  check_contiguous(op, grad, name);
}

// grad (shape S, contiguous) += sign * (term summed down to S): the general broadcasting backward.
void accumulate_reduced(Tensor& grad, const Tensor& term, float sign) {
  Tensor reduced = sum_to(term, grad.shape());
  scale_backward(grad, reduced, sign);
}

void check_backward(const char* op, const Tensor& da, const Tensor& db, const Tensor& dout) {
  check_dtype(op, dout, "dout", DType::F32);
  check_contiguous(op, dout, "dout");
  check_grad(op, da, "da");
  check_grad(op, db, "db");
  if (da.defined()) broadcast_shape(op, da.shape(), dout.shape());
  if (db.defined()) broadcast_shape(op, db.shape(), dout.shape());
}

void add_sub_backward(const char* op, Tensor& da, Tensor& db, const Tensor& dout, float sign) {
  check_backward(op, da, db, dout);
  Device device = check_same_device(op, {&da, &db, &dout});
  if (device.type != DeviceType::CPU) throw_unsupported_device(op, device);
  bool da_same = !da.defined() || da.shape() == dout.shape();
  bool db_same = !db.defined() || db.shape() == dout.shape();
  if (da_same && db_same) {
    cpu::add_backward(data_or_null(da), data_or_null(db), dout.data<float>(), dout.numel(), sign);
    return;
  }
  if (da_same && classify(dout, dout, db) == Layout::Rows) {
    int64_t C = dout.shape().back();
    cpu::add_rows_backward(data_or_null(da), db.data<float>(), dout.data<float>(), dout.numel() / C, C, sign);
    return;
  }
  if (da.defined()) accumulate_reduced(da, dout, 1.0f);
  if (db.defined()) accumulate_reduced(db, dout, sign);
}
}  // namespace

void add_forward(Tensor& out, const Tensor& a, const Tensor& b) { binary_forward("add", BinaryOp::Add, out, a, b); }
void sub_forward(Tensor& out, const Tensor& a, const Tensor& b) { binary_forward("sub", BinaryOp::Sub, out, a, b); }
void mul_forward(Tensor& out, const Tensor& a, const Tensor& b) { binary_forward("mul", BinaryOp::Mul, out, a, b); }
void div_forward(Tensor& out, const Tensor& a, const Tensor& b) { binary_forward("div", BinaryOp::Div, out, a, b); }

void add_backward(Tensor& da, Tensor& db, const Tensor& dout) { add_sub_backward("add_backward", da, db, dout, 1.0f); }
void sub_backward(Tensor& da, Tensor& db, const Tensor& dout) { add_sub_backward("sub_backward", da, db, dout, -1.0f); }

void mul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b) {
  const char* op = "mul_backward";
  check_backward(op, da, db, dout);
  Device device = check_same_device(op, {&da, &db, &dout, &a, &b});
  if (device.type != DeviceType::CPU) throw_unsupported_device(op, device);
  // Multiplication commutes, so a row operand on either side takes the fused pass.
  switch (classify(dout, a, b)) {
    case Layout::Same:
      cpu::mul_backward(data_or_null(da), data_or_null(db), dout.data<float>(), a.data<float>(), b.data<float>(),
                        dout.numel());
      return;
    case Layout::Rows: {
      int64_t C = dout.shape().back();
      cpu::mul_rows_backward(data_or_null(da), data_or_null(db), dout.data<float>(), a.data<float>(), b.data<float>(),
                             dout.numel() / C, C);
      return;
    }
    case Layout::General: break;
  }
  if (classify(dout, b, a) == Layout::Rows) {
    int64_t C = dout.shape().back();
    cpu::mul_rows_backward(data_or_null(db), data_or_null(da), dout.data<float>(), b.data<float>(), a.data<float>(),
                           dout.numel() / C, C);
    return;
  }
  if (da.defined()) {
    Tensor term = Tensor::empty(dout.shape(), DType::F32, device);
    mul_forward(term, dout, b);
    accumulate_reduced(da, term, 1.0f);
  }
  if (db.defined()) {
    Tensor term = Tensor::empty(dout.shape(), DType::F32, device);
    mul_forward(term, dout, a);
    accumulate_reduced(db, term, 1.0f);
  }
}

void div_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b) {
  const char* op = "div_backward";
  check_backward(op, da, db, dout);
  Device device = check_same_device(op, {&da, &db, &dout, &a, &b});
  if (device.type != DeviceType::CPU) throw_unsupported_device(op, device);
  switch (classify(dout, a, b)) {
    case Layout::Same:
      cpu::div_backward(data_or_null(da), data_or_null(db), dout.data<float>(), a.data<float>(), b.data<float>(),
                        dout.numel());
      return;
    case Layout::Rows: {
      int64_t C = dout.shape().back();
      cpu::div_rows_backward(data_or_null(da), data_or_null(db), dout.data<float>(), a.data<float>(), b.data<float>(),
                             dout.numel() / C, C);
      return;
    }
    case Layout::General: break;
  }
  if (da.defined()) {  // da += dout / b
    Tensor term = Tensor::empty(dout.shape(), DType::F32, device);
    div_forward(term, dout, b);
    accumulate_reduced(da, term, 1.0f);
  }
  if (db.defined()) {  // db -= dout * a / b^2
    Tensor term = Tensor::empty(dout.shape(), DType::F32, device);
    mul_forward(term, dout, a);
    div_forward(term, term, b);
    div_forward(term, term, b);
    accumulate_reduced(db, term, -1.0f);
  }
}

void scale_forward(Tensor& out, const Tensor& inp, float s) {
  const char* op = "scale";
  Device device = check_elementwise(op, {{&out, "out"}, {&inp, "inp"}});
  switch (device.type) {
    case DeviceType::CPU: cpu::scale_forward(out.data<float>(), inp.data<float>(), s, inp.numel()); break;
    default: throw_unsupported_device(op, device);
  }
}

void scale_backward(Tensor& dinp, const Tensor& dout, float s) {
  const char* op = "scale_backward";
  Device device = check_elementwise(op, {{&dinp, "dinp"}, {&dout, "dout"}});
  switch (device.type) {
    case DeviceType::CPU: cpu::scale_backward(dinp.data<float>(), dout.data<float>(), s, dout.numel()); break;
    default: throw_unsupported_device(op, device);
  }
}

void add_scalar_forward(Tensor& out, const Tensor& inp, float s) {
  const char* op = "add_scalar";
  Device device = check_elementwise(op, {{&out, "out"}, {&inp, "inp"}});
  switch (device.type) {
    case DeviceType::CPU: cpu::add_scalar_forward(out.data<float>(), inp.data<float>(), s, inp.numel()); break;
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
