// Batches of random windows from a token stream, built on a background thread.
//
// Each batch is B windows of block + 1 tokens at starts drawn from a seeded Generator; inputs are
// the first block tokens, targets the last block (the next token at every position). The thread
// stays up to `prefetch` batches ahead, so the training step never waits on data.
//
// The position is the generator state after the last batch handed out (not after the last one
// built ahead), so a checkpoint that saves position() and a resume that calls restore() sees
// exactly the batches an uninterrupted run would.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace tg {

struct Batch {
  Tensor inputs;   // i32 (B, T)
  Tensor targets;  // i32 (B, T)
};

struct LoaderPosition {
  Generator::State rng{};
  int64_t batches = 0;  // batches handed out so far
};

// One batch drawn synchronously from `gen` (evaluation uses this with a fixed seed). Needs
// tokens.size() >= block + 1.
Batch sample_batch(const std::vector<int32_t>& tokens, int64_t batch, int64_t block, Generator& gen);

class BatchLoader {
 public:
  BatchLoader(std::shared_ptr<const std::vector<int32_t>> tokens, int64_t batch, int64_t block, uint64_t seed,
              int prefetch = 2);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  Batch next();
  LoaderPosition position() const;
  // Drops batches built ahead and continues from `position`.
  void restore(const LoaderPosition& position);

 private:
  struct Ready {
    std::vector<int32_t> inputs, targets;
    Generator::State rng_after;
  };
  void start();
  void stop();
  void produce();

  std::shared_ptr<const std::vector<int32_t>> tokens_;
  int64_t batch_, block_;
  size_t prefetch_;
  Generator gen_;  // owned by the thread while it runs
  LoaderPosition position_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Ready> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tg
