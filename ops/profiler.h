// Op profiling at the fronts. While a Profiler is alive on a thread, every op front called from
// that thread times its kernel and records one OpRecord: the front's name, the phase (forward,
// backward, optimizer, copy), the autograd node it ran for (in the backward), the operands'
// shapes, and the FLOPs and bytes its own formula gives. The formulas live in the fronts, next to
// the checks that already know every dimension, so no second description of an op can drift.
//
// Cost when no profiler is active: one thread-local pointer test per front (ProfiledOp's
// constructor is inline; the describing lambda is never called).
//
// Nested fronts (a front that calls another front) record once, at the outermost: the inner call's
// time is part of the outer one's, and the outer formula counts the whole op.
//
// CPU ops are timed by wall clock around the kernel. CUDA ops record a pair of events on the
// compute stream around the launch; records() waits for the device and reads them, so the
// launch itself is never synchronised.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace tg::ops {

enum class Phase { Forward, Backward, Optimizer, Copy };
const char* phase_name(Phase phase);  // "forward", "backward", "optimizer", "copy"

// What one call of an op costs, filled by the front's describing lambda: FLOPs from its formula,
// bytes as the compulsory traffic (every operand read once, every result written once; an
// operand updated in place, like a gradient accumulated with +=, is both).
struct OpCost {
  double flops = 0;
  double bytes = 0;
  std::vector<std::pair<std::string, Shape>> operands;  // ("x", {768, 384}), in the front's order
  Device device;

  OpCost& reads(const char* name, const Tensor& t);
  OpCost& writes(const char* name, const Tensor& t);
  OpCost& updates(const char* name, const Tensor& t);  // read and written
  // An operand whose traffic is not a whole tensor (an index vector, a scalar): shape only.
  OpCost& shape_of(const char* name, const Tensor& t);
  // Ops over a list of tensors (the optimizer's): their traffic and elements, summed, shown as one
  // operand "name[E values in N tensors]" instead of N shapes.
  OpCost& reads_list(const char* name, const std::vector<Tensor>& list, int passes = 1);
  std::string summary;  // when set, the operands' description in place of their shapes
  // The FLOPs run on the CPU's bf16 dot-product unit (vdpbf16ps: a bf16 GEMM on AVX512_BF16),
  // whose peak is not the FMA one; the report judges them against it.
  bool bf16_dot = false;
};

// "x[768x384] weight[1152x384] out[768x1152]": no commas, so a CSV field needs no quoting
std::string operands_str(const std::vector<std::pair<std::string, Shape>>& operands);

struct OpRecord {
  std::string op;    // the front: "linear", "gelu_backward"
  std::string node;  // the autograd node whose backward called it ("" outside a backward)
  Phase phase = Phase::Forward;
  std::vector<std::pair<std::string, Shape>> operands;
  std::string summary;  // OpCost::summary, for ops over lists of tensors
  double flops = 0, bytes = 0;
  double seconds = 0;
  bool bf16_dot = false;  // OpCost::bf16_dot

  std::string shapes() const;  // the summary, else operands_str(operands)
};

class Profiler {
 public:
  Profiler();   // becomes this thread's active profiler (profilers nest; the innermost records)
  ~Profiler();  // the previous one, if any, is active again; pending CUDA events are released
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  Phase phase() const { return phase_; }
  const std::string& node() const { return node_; }

  // Every op recorded so far, in call order; waits for the GPU first when CUDA ops are pending.
  const std::vector<OpRecord>& records();
  void clear();

  // Used by ProfiledOp, PhaseScope and NodeScope.
  void begin_op(const char* op, OpCost&& cost);
  void end_op();
  int depth = 0;  // fronts currently open on this thread; only depth 0 records
  Phase phase_ = Phase::Forward;
  std::string node_;

 private:
  struct Pending {
    size_t record;
    void* start;
    void* stop;
  };
  void resolve_events();
  std::vector<OpRecord> records_;
  std::vector<Pending> pending_;  // CUDA ops whose events have not been read yet
  int64_t open_ = -1;            // the record being timed
  double start_seconds_ = 0;
  void* start_event_ = nullptr;
  Profiler* previous_;
};

namespace detail {
extern thread_local Profiler* active_profiler;
}

// This thread's active profiler, or nullptr.
inline Profiler* active_profiler() { return detail::active_profiler; }

// Opened at the top of a front, after its checks: `ProfiledOp profiled("gelu_forward", [&](OpCost& c)
// { c.reads("inp", inp).writes("out", out); c.flops = 14.0 * inp.numel(); });`. The lambda runs
// only when a profiler is active; the op is timed until the ProfiledOp goes out of scope.
class ProfiledOp {
 public:
  template <class Describe>
  ProfiledOp(const char* op, Describe&& describe) : profiler_(detail::active_profiler) {
    if (profiler_) {
      if (profiler_->depth++ == 0) {
        OpCost cost;
        describe(cost);
        profiler_->begin_op(op, std::move(cost));
      }
    }
  }
  ~ProfiledOp() {
    if (profiler_ && --profiler_->depth == 0) profiler_->end_op();
  }
  ProfiledOp(const ProfiledOp&) = delete;
  ProfiledOp& operator=(const ProfiledOp&) = delete;

 private:
  Profiler* profiler_;
};

// Sets the phase of the ops recorded in its lifetime (the trainer marks the optimizer step and the
// batch copies; the autograd engine the backward). Nothing without an active profiler.
class PhaseScope {
 public:
  explicit PhaseScope(Phase phase);
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  Profiler* profiler_;
  Phase previous_ = Phase::Forward;
};

// The autograd engine opens one around each node's backward: the ops it runs are recorded in
// phase backward under the node's name.
class NodeScope {
 public:
  explicit NodeScope(const std::string& node);
  ~NodeScope();
  NodeScope(const NodeScope&) = delete;
  NodeScope& operator=(const NodeScope&) = delete;

 private:
  Profiler* profiler_;
  Phase previous_phase_ = Phase::Forward;
  std::string previous_node_;
};

}  // namespace tg::ops
