#include "ops/elementwise.h"

#include <algorithm>
#include <string>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/elementwise.h"
#include "ops/reduce.h"
#ifdef TG_CUDA
#include "ops/cuda/elementwise.h"
#endif

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

// When one operand has out's shape and the other is its trailing dimensions (leading size-1
// dimensions allowed), both contiguous: the latter, a table repeated along the leading
// dimensions. Null otherwise.
static const Tensor* repeated_table(const Tensor& out, const Tensor& a, const Tensor& b) {
  auto trailing = [&](const Tensor& t) {
    const Shape& s = t.shape();
    size_t lead = 0;
    while (lead < s.size() && s[lead] == 1) lead++;
    const size_t kept = s.size() - lead;
    return t.is_contiguous() && t.numel() > 0 && kept < out.shape().size() &&
           std::equal(s.begin() + lead, s.end(), out.shape().end() - kept);
  };
  if (a.shape() == out.shape() && a.is_contiguous() && trailing(b)) return &b;
  if (b.shape() == out.shape() && b.is_contiguous() && trailing(a)) return &a;
  return nullptr;
}

namespace {
enum class BinaryOp { Add, Sub, Mul, Div };

void binary_forward(const char* op, BinaryOp kind, Tensor& out, const Tensor& a, const Tensor& b) {
  check_float_or_half_dtype(op, a, "a");
  check_same_dtype(op, a, "a", b, "b");
  check_same_dtype(op, a, "a", out, "out");
  check_shape(op, out, "out", broadcast_shape(op, a.shape(), b.shape()), "the broadcast shape of a and b");
  check_contiguous(op, out, "out");
  Device device = check_same_device(op, {&out, &a, &b});
  Shape a_strides = broadcast_strides(a, out.shape()), b_strides = broadcast_strides(b, out.shape());
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("a", a).reads("b", b).writes("out", out); c.flops = static_cast<double>(out.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      auto run = [kind](float* po, const float* pa, const Shape& as, const float* pb, const Shape& bs, const Shape& shape) {
        switch (kind) {
          case BinaryOp::Add: cpu::add_forward(po, pa, as, pb, bs, shape); break;
          case BinaryOp::Sub: cpu::sub_forward(po, pa, as, pb, bs, shape); break;
          case BinaryOp::Mul: cpu::mul_forward(po, pa, as, pb, bs, shape); break;
          case BinaryOp::Div: cpu::div_forward(po, pa, as, pb, bs, shape); break;
        }
      };
      F32Staging staged;
      const Tensor* table = repeated_table(out, a, b);
      if (out.dtype() != DType::F32 && table) {
        // A half full operand and a table repeated along the leading dimensions (GPT's position
        // embeddings): rows of the table's size, staged a few at a time (ops/f32_staging.h); the
        // table is widened once.
        const Tensor& full = table == &b ? a : b;
        const float* pt = staged.in(*table);
        const int64_t W = table->numel(), N = out.numel() / W;
        const Shape row_strides{W, 1}, table_strides{0, 1};
        staged_rows({{&out, PointwiseOperand::Out}, {&full, PointwiseOperand::In}}, N,
                    staged_row_groups(N, out.numel()),
                    [&](int64_t, int64_t, int64_t rows, float* const* blocks) {
                      if (table == &b) run(blocks[0], blocks[1], row_strides, pt, table_strides, {rows, W});
                      else run(blocks[0], pt, table_strides, blocks[1], row_strides, {rows, W});
                    });
        break;
      }
      const float* pa = staged.in(a);
      const float* pb = staged.in(b);
      float* po = staged.out(out);
      run(po, pa, a_strides, pb, b_strides, out.shape());
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      DType dtype = out.dtype();
      const void* pa = a.data_raw();
      const void* pb = b.data_raw();
      void* po = out.data_raw();
      switch (kind) {
        case BinaryOp::Add: cuda::add_forward(dtype, po, pa, a_strides, pb, b_strides, out.shape()); break;
        case BinaryOp::Sub: cuda::sub_forward(dtype, po, pa, a_strides, pb, b_strides, out.shape()); break;
        case BinaryOp::Mul: cuda::mul_forward(dtype, po, pa, a_strides, pb, b_strides, out.shape()); break;
        case BinaryOp::Div: cuda::div_forward(dtype, po, pa, a_strides, pb, b_strides, out.shape()); break;
      }
      break;
    }
#endif
    default: throw_unsupported_device(op, device);
  }
}

// How a backward can treat its operands: both dense with dout's shape, or the second one a single
// row broadcast against a dense first one, or neither (the general path).
enum class Layout { Same, Rows, General };

// Rows: after dropping its leading size-1 dimensions, the row operand is dout's trailing dimensions,
// so dout reads as (rows, C) with C = row.numel(): a bias (C) against (B, T, C), and on CUDA also a
// position table (T, C) against (B, T, C). The CPU kernel splits its work by blocks of 64 rows, so
// there a (T, C) table against a handful of rows would run on one thread: on the CPU only a
// one-dimensional row qualifies, and the rest takes the general path (parallel sums). A single
// element (C = 1) always takes the general path.
Layout classify(const Tensor& dout, const Tensor& full, const Tensor& row) {
  if (!full.is_contiguous() || !row.is_contiguous() || full.shape() != dout.shape()) return Layout::General;
  if (row.shape() == dout.shape()) return Layout::Same;
  const Shape& s = row.shape();
  size_t lead = 0;
  while (lead < s.size() && s[lead] == 1) lead++;
  size_t kept = s.size() - lead, most = row.device().is_cuda() ? dout.shape().size() - 1 : 1;
  if (kept == 0 || kept > most || kept >= dout.shape().size() || row.numel() == 1) return Layout::General;
  if (!std::equal(s.begin() + lead, s.end(), dout.shape().end() - kept)) return Layout::General;
  return Layout::Rows;
}


#ifdef TG_CUDA
void* raw_or_null(const Tensor& t) { return t.defined() ? t.data_raw() : nullptr; }

// The f32 scratch of the CUDA rows backward's two-pass column sum for db; undefined when db is not
// wanted or one pass does it. The kernels run on the one stream, so the buffer may go back to the
// caching allocator as soon as they are launched.
Tensor rows_scratch(const Tensor& db, int64_t rows, int64_t C, Device device) {
  int64_t count = db.defined() ? cuda::rows_backward_scratch_floats(rows, C) : 0;
  return count > 0 ? Tensor::empty({count}, DType::F32, device) : Tensor();
}
float* scratch_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
#endif

void check_grad(const char* op, const Tensor& grad, const char* name, const Tensor& dout) {
  if (!grad.defined()) return;
  check_same_dtype(op, dout, "dout", grad, name);
  check_contiguous(op, grad, name);
}

// grad (shape S, contiguous) += sign * (term summed down to S): the general broadcasting backward.
void accumulate_reduced(Tensor& grad, const Tensor& term, float sign) {
  Tensor reduced = sum_to(term, grad.shape());
  scale_backward(grad, reduced, sign);
}

void check_backward(const char* op, const Tensor& da, const Tensor& db, const Tensor& dout) {
  check_float_or_half_contiguous(op, dout, "dout");
  check_grad(op, da, "da", dout);
  check_grad(op, db, "db", dout);
  if (da.defined()) broadcast_shape(op, da.shape(), dout.shape());
  if (db.defined()) broadcast_shape(op, db.shape(), dout.shape());
}

// The saved operands of mul and div: one dtype with dout, on its device.
void check_operands(const char* op, const Tensor& dout, const Tensor& a, const Tensor& b) {
  check_same_dtype(op, dout, "dout", a, "a");
  check_same_dtype(op, dout, "dout", b, "b");
}

void add_sub_backward(const char* op, Tensor& da, Tensor& db, const Tensor& dout, float sign) {
  check_backward(op, da, db, dout);
  Device device = check_same_device(op, {&da, &db, &dout});
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.reads("dout", dout).updates("da", da).updates("db", db);
    c.flops = static_cast<double>(da.defined() + db.defined()) * static_cast<double>(dout.numel());
  });
  bool da_same = !da.defined() || da.shape() == dout.shape();
  bool db_same = !db.defined() || db.shape() == dout.shape();
  if (da_same && db_same) {
    switch (device.type) {
      case DeviceType::CPU: {
        // Pointwise: half operands are staged a chunk at a time (ops/f32_staging.h).
        const int64_t n = dout.numel();
        if (da.defined() && db.defined())
          staged_pointwise({{&da, PointwiseOperand::InOut}, {&db, PointwiseOperand::InOut}, {&dout, PointwiseOperand::In}},
                           n, [&](float* const* p, int64_t m) { cpu::add_backward(p[0], p[1], p[2], m, sign); });
        else if (da.defined() || db.defined()) {
          Tensor& grad = da.defined() ? da : db;
          const bool is_a = da.defined();
          staged_pointwise({{&grad, PointwiseOperand::InOut}, {&dout, PointwiseOperand::In}}, n,
                           [&](float* const* p, int64_t m) {
                             cpu::add_backward(is_a ? p[0] : nullptr, is_a ? nullptr : p[0], p[1], m, sign);
                           });
        }
        return;
      }
#ifdef TG_CUDA
      case DeviceType::CUDA:
        cuda::add_backward(dout.dtype(), raw_or_null(da), raw_or_null(db), dout.data_raw(), dout.numel(), sign);
        return;
#endif
      default: throw_unsupported_device(op, device);
    }
  }
  if (da_same && classify(dout, dout, db) == Layout::Rows) {
    int64_t C = db.numel(), rows = dout.numel() / C;
    switch (device.type) {
      case DeviceType::CPU: {
        F32Staging staged;
        cpu::add_rows_backward(staged.inout(da), staged.inout(db), staged.in(dout), rows, C, sign);
        staged.finish();
        return;
      }
#ifdef TG_CUDA
      case DeviceType::CUDA: {
        Tensor scratch = rows_scratch(db, rows, C, device);
        cuda::add_rows_backward(dout.dtype(), raw_or_null(da), db.data_raw(), dout.data_raw(), rows, C, sign,
                                scratch_or_null(scratch));
        return;
      }
#endif
      default: throw_unsupported_device(op, device);
    }
  }
  if (da.defined()) accumulate_reduced(da, dout, 1.0f);
  if (db.defined()) accumulate_reduced(db, dout, sign);
}

enum class Product { Mul, Div };

// The fused same-shape pass: da, db, dout, a, b all of dout's shape.
void product_same(const char* op, Product kind, Device device, Tensor& da, Tensor& db, const Tensor& dout,
                  const Tensor& a, const Tensor& b) {
  int64_t n = dout.numel();
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      if (kind == Product::Mul)
        cpu::mul_backward(staged.inout(da), staged.inout(db), staged.in(dout), staged.in(a), staged.in(b), n);
      else
        cpu::div_backward(staged.inout(da), staged.inout(db), staged.in(dout), staged.in(a), staged.in(b), n);
      staged.finish();
      return;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      if (kind == Product::Mul)
        cuda::mul_backward(dout.dtype(), raw_or_null(da), raw_or_null(db), dout.data_raw(), a.data_raw(), b.data_raw(), n);
      else
        cuda::div_backward(dout.dtype(), raw_or_null(da), raw_or_null(db), dout.data_raw(), a.data_raw(), b.data_raw(), n);
      return;
#endif
    default: throw_unsupported_device(op, device);
  }
}

// The fused rows pass: a (and da) dense (rows, C) like dout, b (and db) one row (C).
void product_rows(const char* op, Product kind, Device device, Tensor& da, Tensor& db, const Tensor& dout,
                  const Tensor& a, const Tensor& b) {
  int64_t C = b.numel(), rows = dout.numel() / C;
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      if (kind == Product::Mul)
        cpu::mul_rows_backward(staged.inout(da), staged.inout(db), staged.in(dout), staged.in(a), staged.in(b),
                               rows, C);
      else
        cpu::div_rows_backward(staged.inout(da), staged.inout(db), staged.in(dout), staged.in(a), staged.in(b),
                               rows, C);
      staged.finish();
      return;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      Tensor scratch = rows_scratch(db, rows, C, device);
      if (kind == Product::Mul)
        cuda::mul_rows_backward(dout.dtype(), raw_or_null(da), raw_or_null(db), dout.data_raw(), a.data_raw(),
                                b.data_raw(), rows, C, scratch_or_null(scratch));
      else
        cuda::div_rows_backward(dout.dtype(), raw_or_null(da), raw_or_null(db), dout.data_raw(), a.data_raw(),
                                b.data_raw(), rows, C, scratch_or_null(scratch));
      return;
    }
#endif
    default: throw_unsupported_device(op, device);
  }
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
  check_operands(op, dout, a, b);
  Device device = check_same_device(op, {&da, &db, &dout, &a, &b});
  // Multiplication commutes, so a row operand on either side takes the fused pass.
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.reads("dout", dout).reads("a", a).reads("b", b).updates("da", da).updates("db", db);
    c.flops = 2.0 * static_cast<double>(da.defined() + db.defined()) * static_cast<double>(dout.numel());
  });
  switch (classify(dout, a, b)) {
    case Layout::Same: product_same(op, Product::Mul, device, da, db, dout, a, b); return;
    case Layout::Rows: product_rows(op, Product::Mul, device, da, db, dout, a, b); return;
    case Layout::General: break;
  }
  if (classify(dout, b, a) == Layout::Rows) {
    product_rows(op, Product::Mul, device, db, da, dout, b, a);
    return;
  }
  if (da.defined()) {
    Tensor term = Tensor::empty(dout.shape(), dout.dtype(), device);
    mul_forward(term, dout, b);
    accumulate_reduced(da, term, 1.0f);
  }
  if (db.defined()) {
    Tensor term = Tensor::empty(dout.shape(), dout.dtype(), device);
    mul_forward(term, dout, a);
    accumulate_reduced(db, term, 1.0f);
  }
}

void div_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b) {
  const char* op = "div_backward";
  check_backward(op, da, db, dout);
  check_operands(op, dout, a, b);
  Device device = check_same_device(op, {&da, &db, &dout, &a, &b});
  ProfiledOp profiled(op, [&](OpCost& c) {
    c.reads("dout", dout).reads("a", a).reads("b", b).updates("da", da).updates("db", db);
    c.flops = (2.0 * da.defined() + 4.0 * db.defined()) * static_cast<double>(dout.numel());
  });
  switch (classify(dout, a, b)) {
    case Layout::Same: product_same(op, Product::Div, device, da, db, dout, a, b); return;
    case Layout::Rows: product_rows(op, Product::Div, device, da, db, dout, a, b); return;
    case Layout::General: break;
  }
  if (da.defined()) {  // da += dout / b
    Tensor term = Tensor::empty(dout.shape(), dout.dtype(), device);
    div_forward(term, dout, b);
    accumulate_reduced(da, term, 1.0f);
  }
  if (db.defined()) {  // db -= dout * a / b^2
    Tensor term = Tensor::empty(dout.shape(), dout.dtype(), device);
    mul_forward(term, dout, a);
    div_forward(term, term, b);
    div_forward(term, term, b);
    accumulate_reduced(db, term, -1.0f);
  }
}

void scale_forward(Tensor& out, const Tensor& inp, float s) {
  const char* op = "scale";
  Device device = check_elementwise(op, {{&out, "out"}, {&inp, "inp"}});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = static_cast<double>(out.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::scale_forward(p[0], p[1], s, n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::scale_forward(out.dtype(), out.data_raw(), inp.data_raw(), s, inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void scale_backward(Tensor& dinp, const Tensor& dout, float s) {
  const char* op = "scale_backward";
  Device device = check_elementwise(op, {{&dinp, "dinp"}, {&dout, "dout"}});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("dout", dout).updates("dinp", dinp); c.flops = 2.0 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&dinp, PointwiseOperand::InOut}, {&dout, PointwiseOperand::In}}, dout.numel(),
                       [&](float* const* p, int64_t n) { cpu::scale_backward(p[0], p[1], s, n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::scale_backward(dout.dtype(), dinp.data_raw(), dout.data_raw(), s, dout.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void add_scalar_forward(Tensor& out, const Tensor& inp, float s) {
  const char* op = "add_scalar";
  Device device = check_elementwise(op, {{&out, "out"}, {&inp, "inp"}});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = static_cast<double>(out.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::add_scalar_forward(p[0], p[1], s, n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::add_scalar_forward(out.dtype(), out.data_raw(), inp.data_raw(), s, inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
