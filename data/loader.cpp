#include "data/loader.h"

#include <cstring>

namespace tg {

// Windows into raw int vectors: the background thread never touches Tensors, whose allocator
// (a caching one on CUDA) belongs to the training thread.
static void fill_windows(const std::vector<int32_t>& tokens, int64_t batch, int64_t block, Generator& gen,
                         std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  TG_CHECK(static_cast<int64_t>(tokens.size()) >= block + 1,
           "loader: " + std::to_string(tokens.size()) + " tokens cannot fill one window of " +
               std::to_string(block + 1));
  uint64_t starts = static_cast<uint64_t>(tokens.size()) - static_cast<uint64_t>(block);
  inputs.resize(static_cast<size_t>(batch * block));
  targets.resize(static_cast<size_t>(batch * block));
  for (int64_t b = 0; b < batch; b++) {
    const int32_t* window = tokens.data() + gen.below(starts);
    std::memcpy(&inputs[b * block], window, block * sizeof(int32_t));
    std::memcpy(&targets[b * block], window + 1, block * sizeof(int32_t));
  }
}

Batch sample_batch(const std::vector<int32_t>& tokens, int64_t batch, int64_t block, Generator& gen) {
  std::vector<int32_t> inputs, targets;
  fill_windows(tokens, batch, block, gen, inputs, targets);
  return {Tensor::from_ints(inputs, {batch, block}), Tensor::from_ints(targets, {batch, block})};
}

BatchLoader::BatchLoader(std::shared_ptr<const std::vector<int32_t>> tokens, int64_t batch, int64_t block,
                         uint64_t seed, int prefetch)
    : tokens_(std::move(tokens)), batch_(batch), block_(block), prefetch_(prefetch < 1 ? 1 : prefetch), gen_(seed) {
  TG_CHECK(batch_ > 0 && block_ > 0, "BatchLoader: batch and block must be positive");
  TG_CHECK(static_cast<int64_t>(tokens_->size()) >= block_ + 1,
           "BatchLoader: " + std::to_string(tokens_->size()) + " tokens cannot fill one window of " +
               std::to_string(block_ + 1));
  position_.rng = gen_.state();
  start();
}

BatchLoader::~BatchLoader() { stop(); }

void BatchLoader::start() {
  stopping_ = false;
  thread_ = std::thread([this] { produce(); });
}

void BatchLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  queue_.clear();
}

void BatchLoader::produce() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] { return stopping_ || queue_.size() < prefetch_; });
      if (stopping_) return;
    }
    Ready ready;
    fill_windows(*tokens_, batch_, block_, gen_, ready.inputs, ready.targets);
    ready.rng_after = gen_.state();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(ready));
    }
    changed_.notify_all();
  }
}

Batch BatchLoader::next() {
  Ready ready;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !queue_.empty(); });
    ready = std::move(queue_.front());
    queue_.pop_front();
    position_.rng = ready.rng_after;
    position_.batches++;
  }
  changed_.notify_all();
  return {Tensor::from_ints(ready.inputs, {batch_, block_}), Tensor::from_ints(ready.targets, {batch_, block_})};
}

LoaderPosition BatchLoader::position() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return position_;
}

void BatchLoader::restore(const LoaderPosition& position) {
  stop();
  position_ = position;
  gen_.set_state(position.rng);
  start();
}

}  // namespace tg
