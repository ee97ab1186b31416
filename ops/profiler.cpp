#include "ops/profiler.h"

#include <chrono>

#ifdef TG_CUDA
#include "ops/cuda/profiler_events.h"
#endif

namespace tg::ops {

namespace detail {
thread_local Profiler* active_profiler = nullptr;
}

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::Forward: return "forward";
    case Phase::Backward: return "backward";
    case Phase::Optimizer: return "optimizer";
    case Phase::Copy: return "copy";
  }
  return "?";
}

OpCost& OpCost::reads(const char* name, const Tensor& t) {
  if (!t.defined()) return *this;
  if (operands.empty()) device = t.device();
  operands.emplace_back(name, t.shape());
  bytes += static_cast<double>(t.nbytes());
  return *this;
}

OpCost& OpCost::writes(const char* name, const Tensor& t) { return reads(name, t); }

OpCost& OpCost::updates(const char* name, const Tensor& t) {
  if (t.defined()) bytes += static_cast<double>(t.nbytes());
  return reads(name, t);
}

OpCost& OpCost::shape_of(const char* name, const Tensor& t) {
  if (!t.defined()) return *this;
  if (operands.empty()) device = t.device();
  operands.emplace_back(name, t.shape());
  return *this;
}

OpCost& OpCost::reads_list(const char* name, const std::vector<Tensor>& list, int passes) {
  int64_t count = 0, elements = 0;
  for (const Tensor& t : list) {
    if (!t.defined()) continue;
    if (count++ == 0 && operands.empty() && summary.empty()) device = t.device();
    elements += t.numel();
    bytes += static_cast<double>(passes) * static_cast<double>(t.nbytes());
  }
  if (count == 0) return *this;  // an empty list (no f32 masters) is left out of the description
  summary += (summary.empty() ? "" : " ") + std::string(name) + "[" + std::to_string(elements) + " values in " +
             std::to_string(count) + " tensors]";
  return *this;
}

std::string OpRecord::shapes() const { return summary.empty() ? operands_str(operands) : summary; }

std::string operands_str(const std::vector<std::pair<std::string, Shape>>& operands) {
  std::string text;
  for (const auto& [name, shape] : operands) {
    if (!text.empty()) text += ' ';
    text += name + '[';
    for (size_t i = 0; i < shape.size(); i++) text += (i ? "x" : "") + std::to_string(shape[i]);
    text += ']';
  }
  return text;
}

Profiler::Profiler() : previous_(detail::active_profiler) { detail::active_profiler = this; }

Profiler::~Profiler() {
  detail::active_profiler = previous_;
#ifdef TG_CUDA
  for (const Pending& p : pending_) {
    cuda::profiler_event_destroy(p.start);
    cuda::profiler_event_destroy(p.stop);
  }
  if (start_event_) cuda::profiler_event_destroy(start_event_);
#endif
}

void Profiler::begin_op(const char* op, OpCost&& cost) {
  OpRecord record;
  record.op = op;
  record.node = phase_ == Phase::Backward ? node_ : std::string();
  record.phase = phase_;
  record.operands = std::move(cost.operands);
  record.summary = std::move(cost.summary);
  record.flops = cost.flops;
  record.bytes = cost.bytes;
  record.bf16_dot = cost.bf16_dot;
  open_ = static_cast<int64_t>(records_.size());
  records_.push_back(std::move(record));
#ifdef TG_CUDA
  if (cost.device.is_cuda()) {
    start_event_ = cuda::profiler_event_record();
    return;
  }
#endif
  start_seconds_ = now_seconds();
}

void Profiler::end_op() {
  if (open_ < 0) return;
#ifdef TG_CUDA
  if (start_event_) {
    pending_.push_back({static_cast<size_t>(open_), start_event_, cuda::profiler_event_record()});
    start_event_ = nullptr;
    open_ = -1;
    return;
  }
#endif
  records_[static_cast<size_t>(open_)].seconds = now_seconds() - start_seconds_;
  open_ = -1;
}

void Profiler::resolve_events() {
#ifdef TG_CUDA
  for (const Pending& p : pending_) {
    records_[p.record].seconds = 1e-3 * static_cast<double>(cuda::profiler_event_elapsed_ms(p.start, p.stop));
    cuda::profiler_event_destroy(p.start);
    cuda::profiler_event_destroy(p.stop);
  }
#endif
  pending_.clear();
}

const std::vector<OpRecord>& Profiler::records() {
  resolve_events();
  return records_;
}

void Profiler::clear() {
  resolve_events();
  records_.clear();
}

PhaseScope::PhaseScope(Phase phase) : profiler_(detail::active_profiler) {
  if (!profiler_) return;
  previous_ = profiler_->phase_;
  profiler_->phase_ = phase;
}

PhaseScope::~PhaseScope() {
  if (profiler_) profiler_->phase_ = previous_;
}

NodeScope::NodeScope(const std::string& node) : profiler_(detail::active_profiler) {
  if (!profiler_) return;
  previous_phase_ = profiler_->phase_;
  previous_node_ = std::move(profiler_->node_);
  profiler_->phase_ = Phase::Backward;
  profiler_->node_ = node;
}

NodeScope::~NodeScope() {
  if (!profiler_) return;
  profiler_->phase_ = previous_phase_;
  profiler_->node_ = std::move(previous_node_);
}

}  // namespace tg::ops
