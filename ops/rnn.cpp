#include "ops/rnn.h"

#include <initializer_list>
#include <string>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/rnn.h"
#ifdef TG_CUDA
#include "ops/cuda/rnn.h"
#endif

namespace tg::ops {

namespace {

// The sizes of one cell call, read from a gates tensor (B, gate_count·H).
struct CellSize {
  int64_t B, H;
};

CellSize cell_size(const char* op, const Tensor& gates, const char* name, int64_t gate_count) {
  check_dim(op, gates, name, 2);
  int64_t width = gates.size(1);
  if (width == 0 || width % gate_count != 0)
    throw Error(std::string(op) + ": " + name + " has shape " + shape_str(gates.shape()) + ", expected (B, " +
                std::to_string(gate_count) + "·H): its last dimension must be a positive multiple of " +
                std::to_string(gate_count) + " (one block of H per gate)");
  return {gates.size(0), width / gate_count};
}

// Every operand of a cell: of its expected shape, contiguous, of gates_x's float dtype and
// device. `optional` operands (gradients) may be undefined. Returns the device.
struct Operand {
  const Tensor* tensor;
  const char* name;
  Shape shape;
  bool optional;
};

Device check_operands(const char* op, const char* why, std::initializer_list<Operand> operands) {
  const Operand* first = nullptr;
  for (const Operand& o : operands) {
    if (o.optional && !o.tensor->defined()) continue;
    check_shape(op, *o.tensor, o.name, o.shape, why);
    check_float_or_half_contiguous(op, *o.tensor, o.name);
    if (!first) {
      first = &o;
      continue;
    }
    check_same_dtype(op, *first->tensor, first->name, *o.tensor, o.name);
    if (o.tensor->device() != first->tensor->device())
      throw Error(std::string(op) + ": " + o.name + " is on " + o.tensor->device().str() + " but " + first->name +
                  " is on " + first->tensor->device().str());
  }
  return first->tensor->device();
}

#ifdef TG_CUDA
void* raw_or_null(Tensor& t) { return t.defined() ? t.data_raw() : nullptr; }
#endif

constexpr const char* kLstmShapes = "B and H from gates_x (B, 4H)";
constexpr const char* kGruShapes = "B and H from gates_x (B, 3H)";

}  // namespace

void lstm_cell_forward(Tensor& h, Tensor& c, Tensor& gates, const Tensor& gates_x, const Tensor& gates_h,
                       const Tensor& c_prev) {
  const char* op = "lstm_cell";
  auto [B, H] = cell_size(op, gates_x, "gates_x", 4);
  Device device = check_operands(op, kLstmShapes,
                                 {{&gates_x, "gates_x", {B, 4 * H}, false},
                                  {&gates_h, "gates_h", {B, 4 * H}, false},
                                  {&c_prev, "c_prev", {B, H}, false},
                                  {&h, "h", {B, H}, false},
                                  {&c, "c", {B, H}, false},
                                  {&gates, "gates", {B, 4 * H}, false}});
  // Per hidden unit: the gate sums, three sigmoids, two tanhs and the state update (about 20 FLOPs).
  // (B*H from c_prev: a lambda may not capture the structured bindings B, H in C++17.)
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.reads("gates_x", gates_x).reads("gates_h", gates_h).reads("c_prev", c_prev).writes("h", h).writes("c", c).writes("gates", gates);
    cost.flops = 20.0 * static_cast<double>(c_prev.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::lstm_cell_forward(staged.out(h), staged.out(c), staged.out(gates), staged.in(gates_x), staged.in(gates_h),
                             staged.in(c_prev), B, H);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::lstm_cell_forward(gates_x.dtype(), h.data_raw(), c.data_raw(), gates.data_raw(), gates_x.data_raw(),
                              gates_h.data_raw(), c_prev.data_raw(), B, H);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void lstm_cell_backward(Tensor& dgates_x, Tensor& dgates_h, Tensor& dc_prev, const Tensor& gates,
                        const Tensor& c_prev, const Tensor& c, const Tensor& dh, const Tensor& dc) {
  const char* op = "lstm_cell_backward";
  auto [B, H] = cell_size(op, gates, "gates", 4);
  Device device = check_operands(op, "B and H from gates (B, 4H)",
                                 {{&gates, "gates", {B, 4 * H}, false},
                                  {&c_prev, "c_prev", {B, H}, false},
                                  {&c, "c", {B, H}, false},
                                  {&dh, "dh", {B, H}, false},
                                  {&dc, "dc", {B, H}, false},
                                  {&dgates_x, "dgates_x", {B, 4 * H}, true},
                                  {&dgates_h, "dgates_h", {B, 4 * H}, true},
                                  {&dc_prev, "dc_prev", {B, H}, true}});
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.reads("gates", gates).reads("c_prev", c_prev).reads("c", c).reads("dh", dh).reads("dc", dc);
    cost.updates("dgates_x", dgates_x).updates("dgates_h", dgates_h).updates("dc_prev", dc_prev);
    cost.flops = 30.0 * static_cast<double>(c_prev.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::lstm_cell_backward(staged.inout(dgates_x), staged.inout(dgates_h), staged.inout(dc_prev), staged.in(gates),
                              staged.in(c_prev), staged.in(c), staged.in(dh), staged.in(dc), B, H);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::lstm_cell_backward(gates.dtype(), raw_or_null(dgates_x), raw_or_null(dgates_h), raw_or_null(dc_prev),
                               gates.data_raw(), c_prev.data_raw(), c.data_raw(), dh.data_raw(), dc.data_raw(), B, H);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void gru_cell_forward(Tensor& h, Tensor& saved, const Tensor& gates_x, const Tensor& gates_h, const Tensor& h_prev) {
  const char* op = "gru_cell";
  auto [B, H] = cell_size(op, gates_x, "gates_x", 3);
  Device device = check_operands(op, kGruShapes,
                                 {{&gates_x, "gates_x", {B, 3 * H}, false},
                                  {&gates_h, "gates_h", {B, 3 * H}, false},
                                  {&h_prev, "h_prev", {B, H}, false},
                                  {&h, "h", {B, H}, false},
                                  {&saved, "saved", {B, 4 * H}, false}});
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.reads("gates_x", gates_x).reads("gates_h", gates_h).reads("h_prev", h_prev).writes("h", h).writes("saved", saved);
    cost.flops = 15.0 * static_cast<double>(h_prev.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::gru_cell_forward(staged.out(h), staged.out(saved), staged.in(gates_x), staged.in(gates_h), staged.in(h_prev),
                            B, H);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::gru_cell_forward(gates_x.dtype(), h.data_raw(), saved.data_raw(), gates_x.data_raw(), gates_h.data_raw(),
                             h_prev.data_raw(), B, H);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void gru_cell_backward(Tensor& dgates_x, Tensor& dgates_h, Tensor& dh_prev, const Tensor& saved,
                       const Tensor& h_prev, const Tensor& dh) {
  const char* op = "gru_cell_backward";
  check_dim(op, h_prev, "h_prev", 2);
  int64_t B = h_prev.size(0), H = h_prev.size(1);
  Device device = check_operands(op, "B and H from h_prev (B, H)",
                                 {{&h_prev, "h_prev", {B, H}, false},
                                  {&saved, "saved", {B, 4 * H}, false},
                                  {&dh, "dh", {B, H}, false},
                                  {&dgates_x, "dgates_x", {B, 3 * H}, true},
                                  {&dgates_h, "dgates_h", {B, 3 * H}, true},
                                  {&dh_prev, "dh_prev", {B, H}, true}});
  ProfiledOp profiled(op, [&](OpCost& cost) {
    cost.reads("saved", saved).reads("h_prev", h_prev).reads("dh", dh);
    cost.updates("dgates_x", dgates_x).updates("dgates_h", dgates_h).updates("dh_prev", dh_prev);
    cost.flops = 25.0 * static_cast<double>(B) * static_cast<double>(H);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::gru_cell_backward(staged.inout(dgates_x), staged.inout(dgates_h), staged.inout(dh_prev), staged.in(saved),
                             staged.in(h_prev), staged.in(dh), B, H);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::gru_cell_backward(saved.dtype(), raw_or_null(dgates_x), raw_or_null(dgates_h), raw_or_null(dh_prev),
                              saved.data_raw(), h_prev.data_raw(), dh.data_raw(), B, H);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
