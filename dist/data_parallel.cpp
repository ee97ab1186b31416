#include "dist/data_parallel.h"

#include <algorithm>

#include "autograd/engine.h"

namespace tg::dist {

using Clock = std::chrono::steady_clock;

struct DataParallel::State {
  Communicator* comm = nullptr;
  std::vector<Bucket> buckets;
  // Per bucket, for the pass in progress.
  std::vector<int> pending;                 // gradients not yet final
  std::vector<std::vector<bool>> ready;     // [bucket][parameter]: final in this pass
  std::vector<Work> works;
  std::vector<bool> issued;
  size_t next_to_issue = 0;
  bool pass_started = false;
  int no_sync_depth = 0;
  Clock::time_point pass_start;
  SyncTrace trace, last;
  double total_wait = 0;

  double since_start() const { return std::chrono::duration<double>(Clock::now() - pass_start).count(); }

  void issue(size_t b, bool by_hook) {
    std::string label = "gradient bucket " + std::to_string(b);
    works[b] = buckets[b].shard.defined()
                   ? comm->reduce_scatter_async(buckets[b].buffer, buckets[b].shard, ReduceOp::Average, label)
                   : comm->all_reduce_async(buckets[b].buffer, ReduceOp::Average, label);
    issued[b] = true;
    trace.issue_seconds[b] = since_start();
    trace.issued_by_hook[b] = by_hook;
  }

  void start_pass() {
    pass_started = true;
    pass_start = Clock::now();
    trace = SyncTrace();
    trace.issue_seconds.assign(buckets.size(), 0.0);
    trace.issued_by_hook.assign(buckets.size(), false);
  }

  // A parameter's gradient is final for this backward pass.
  void on_grad_ready(size_t b, size_t i) {
    if (no_sync_depth > 0) return;
    if (!pass_started) start_pass();
    if (ready[b][i])
      throw Error("DataParallel: the gradient of " + buckets[b].names[i] + " was computed twice in one synced pass (bucket " +
                  std::to_string(b) + (issued[b] ? " is being averaged" : " waits to be averaged") +
                  "): call finish_gradient_sync() after each synced backward, and run the micro-batches before the "
                  "last under no_sync()");
    ready[b][i] = true;
    if (--pending[b] > 0) return;
    while (next_to_issue < buckets.size() && !issued[next_to_issue] && pending[next_to_issue] == 0)
      issue(next_to_issue++, /*by_hook=*/true);
  }
};

DataParallel::DataParallel(Module& model, Communicator& comm, DataParallelOptions options)
    : state_(std::make_shared<State>()) {
  state_->comm = &comm;
  // One model on every rank: rank 0's initial values (a seed that differs by rank, a checkpoint
  // read by one rank only, would otherwise diverge silently).
  for (auto& [name, tensor] : model.named_parameters()) comm.broadcast(tensor, 0, name);
  for (auto& [name, tensor] : model.named_buffers()) comm.broadcast(tensor, 0, name);

  // Buckets in reverse registration order: the output layers' gradients complete first.
  NamedTensors params = model.named_parameters();
  std::reverse(params.begin(), params.end());
  std::vector<NamedTensors> groups;
  size_t bytes = 0;
  for (auto& entry : params) {
    const Tensor& p = entry.second;
    double cap_mb = groups.size() <= 1 ? options.first_bucket_mb : options.bucket_mb;  // of the bucket being filled
    bool fits = !groups.empty() && groups.back().front().second.dtype() == p.dtype() &&
                groups.back().front().second.device() == p.device() &&
                static_cast<double>(bytes + p.nbytes()) <= cap_mb * 1e6;
    if (!fits) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(entry);
    bytes += p.nbytes();
  }
  for (size_t b = 0; b < groups.size(); b++) {
    int64_t numel = 0;
    for (auto& [name, p] : groups[b]) numel += p.numel();
    Bucket bucket;
    const Tensor& first = groups[b].front().second;
    const int64_t world = comm.world_size();
    if (options.shard_gradients) numel = (numel + world - 1) / world * world;  // equal chunks; the padding stays 0
    bucket.buffer = Tensor::zeros({numel}, first.dtype(), first.device());
    if (options.shard_gradients) bucket.shard = Tensor::zeros({numel / world}, first.dtype(), first.device());
    int64_t offset = 0;
    for (auto& [name, p] : groups[b]) {
      bucket.params.push_back(p);
      bucket.offsets.push_back(offset);
      Tensor view = bucket.buffer.narrow(0, offset, p.numel()).view(p.shape());
      if (p.grad().defined()) view.copy_(p.grad());
      Tensor(p).set_grad(view);
      bucket.names.push_back(name);
      std::weak_ptr<State> weak = state_;
      size_t i = bucket.names.size() - 1;
      add_grad_hook(p, [weak, b, i](const Tensor&) {
        if (auto state = weak.lock()) state->on_grad_ready(b, i);
      });
      offset += p.numel();
    }
    state_->buckets.push_back(std::move(bucket));
  }
  size_t n = state_->buckets.size();
  state_->works.assign(n, Work());
  state_->issued.assign(n, false);
  state_->pending.resize(n);
  state_->ready.resize(n);
  for (size_t b = 0; b < n; b++) {
    state_->pending[b] = static_cast<int>(state_->buckets[b].names.size());
    state_->ready[b].assign(state_->buckets[b].names.size(), false);
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::finish_gradient_sync() {
  State& s = *state_;
  if (!s.pass_started) s.start_pass();
  s.trace.finish_called_seconds = s.since_start();
  for (size_t b = 0; b < s.buckets.size(); b++)
    if (!s.issued[b]) s.issue(b, /*by_hook=*/false);
  Clock::time_point wait_start = Clock::now();
  for (Work& work : s.works) work.wait();
  s.trace.wait_seconds = std::chrono::duration<double>(Clock::now() - wait_start).count();
  s.total_wait += s.trace.wait_seconds;
  s.last = s.trace;
  for (size_t b = 0; b < s.buckets.size(); b++) {
    s.works[b] = Work();
    s.issued[b] = false;
    s.pending[b] = static_cast<int>(s.buckets[b].names.size());
    s.ready[b].assign(s.buckets[b].names.size(), false);
  }
  s.next_to_issue = 0;
  s.pass_started = false;
}

DataParallel::NoSync::NoSync(DataParallel* owner) : owner_(owner) { owner_->state_->no_sync_depth++; }
DataParallel::NoSync::~NoSync() {
  if (owner_) owner_->state_->no_sync_depth--;
}
DataParallel::NoSync& DataParallel::NoSync::operator=(NoSync&& other) noexcept {
  if (this != &other) {
    if (owner_) owner_->state_->no_sync_depth--;
    owner_ = other.owner_;
    other.owner_ = nullptr;
  }
  return *this;
}
DataParallel::NoSync DataParallel::no_sync() { return NoSync(this); }

const std::vector<DataParallel::Bucket>& DataParallel::buckets() const { return state_->buckets; }
const DataParallel::SyncTrace& DataParallel::last_sync() const { return state_->last; }
double DataParallel::total_wait_seconds() const { return state_->total_wait; }
Communicator& DataParallel::communicator() const { return *state_->comm; }

}  // namespace tg::dist
