// DataParallel: one model trained by several ranks, each on its slice of the global batch, with
// the gradients averaged while the backward pass is still running (PyTorch's DDP, on the CPU
// through MPI's communication thread).
//
//   DataParallel ddp(model, comm);          // rank 0's parameters and buffers, broadcast
//   for (micro-batch m of the step) {
//     auto scope = m + 1 < accum ? ddp.no_sync() : DataParallel::NoSync();  // sync the last only
//     backward(loss_m);                      // buckets all-reduce as their gradients complete
//   }
//   ddp.finish_gradient_sync();              // waits: every rank now holds the averaged gradients
//   clip, optimizer.step()
//
// Buckets. The parameters are grouped, in reverse registration order (about the order in which
// backward finishes them), into buckets of up to `bucket_mb` (25 MB; the first only
// `first_bucket_mb`, 1 MB, so that communication starts early), one dtype per bucket. Each
// parameter's .grad is made a view into its bucket's flat buffer, so backward accumulates straight
// into what is sent and nothing is copied. When a bucket's last gradient is final for the pass
// (the engine's grad-ready hook, autograd/engine.h: add_grad_hook), its average is issued
// asynchronously; buckets are issued strictly in index order, so every rank issues the same
// collectives in the same order even when its gradients complete in another order. A bucket whose
// gradients did not all arrive (a parameter unused this pass) is issued by finish_gradient_sync.
//
// Every synced backward must be followed by finish_gradient_sync() before the next backward, since
// that backward would add into buffers still being sent; a hook that finds its bucket already
// issued in the same unfinished pass throws saying so.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "nn/module.h"

namespace tg::dist {

struct DataParallelOptions {
  double bucket_mb = 25.0;
  double first_bucket_mb = 1.0;
  // ZeRO (dist/zero_adamw.h): reduce-scatter each bucket instead of all-reducing it. Rank r then
  // holds the average of the r-th of world-size equal chunks of every bucket (Bucket::shard; the
  // buffers are padded with zeros to a multiple of the world size) and the parameters' .grad keep
  // this rank's own gradients: the optimizer must read the shards.
  bool shard_gradients = false;
};

class DataParallel {
 public:
  // Broadcasts rank 0's parameters and buffers (a collective: every rank constructs it), builds the
  // buckets and registers the hooks. Construct it after the model has its final device and dtype
  // (Module::to drops gradients) and after the optimizer, or before: the parameters keep their handles.
  DataParallel(Module& model, Communicator& comm, DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Issues the buckets not yet issued this pass, waits for all of them and returns once every
  // rank's gradients are the average over the ranks (with shard_gradients: once every rank's
  // shards are its chunks of that average).
  void finish_gradient_sync();

  // While a NoSync is alive, backward passes accumulate gradients locally and issue nothing (the
  // micro-batches of gradient accumulation before the last). A default-constructed NoSync does
  // nothing, so one variable can hold either.
  class NoSync {
   public:
    NoSync() = default;
    NoSync(NoSync&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
    NoSync& operator=(NoSync&& other) noexcept;
    ~NoSync();

   private:
    friend class DataParallel;
    explicit NoSync(DataParallel* owner);
    DataParallel* owner_ = nullptr;
  };
  NoSync no_sync();

  struct Bucket {
    std::vector<std::string> names;  // its parameters, in the order they sit in the buffer
    std::vector<Tensor> params;      // the same parameters
    std::vector<int64_t> offsets;    // where each starts in the buffer
    Tensor buffer;                   // flat; the parameters' .grad are views into it
    // With shard_gradients: this rank's chunk of the averaged buffer, elements
    // [rank * n, (rank + 1) * n) of it for n = shard.numel(); undefined otherwise.
    Tensor shard;
    size_t bytes() const { return buffer.nbytes(); }
  };
  const std::vector<Bucket>& buckets() const;

  // The last synced pass, for the overlap trace: when each bucket was issued and when
  // finish_gradient_sync was called (the end of backward), in seconds since the pass's first
  // grad-ready hook, and how long finish_gradient_sync waited.
  struct SyncTrace {
    std::vector<double> issue_seconds;  // per bucket, by index; issued from a hook or from finish
    std::vector<bool> issued_by_hook;
    double finish_called_seconds = 0;
    double wait_seconds = 0;
  };
  const SyncTrace& last_sync() const;
  // Seconds spent waiting in finish_gradient_sync since construction (the status line's comm wait).
  double total_wait_seconds() const;

  Communicator& communicator() const;

  struct State;

 private:
  std::shared_ptr<State> state_;  // shared with the hooks, which outlive nothing when it is gone
};

}  // namespace tg::dist
