// Batches of images for training and evaluation: uint8 images from an ImageSet, augmented on
// uint8, normalised to f32 (x / 255 - mean) / std through a 256-entry table per channel.
//
// ImageLoader walks the set in a fresh seeded order every epoch (each image once per epoch; the
// last partial batch is dropped) and builds batches on a background thread, up to `prefetch`
// ahead. The order of epoch e is a function of (seed, e) alone, and augmentation draws from one
// generator, so the position after the last batch handed out -- epoch, index into the epoch's
// order, augmentation generator state -- is all a resumed run needs to see exactly the batches an
// uninterrupted run would (given the same set, batch and seed).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/augment.h"
#include "data/image_set.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace tg {

struct ImageBatch {
  Tensor images;  // f32 (B, H, W, C), normalised (x/255 - mean) / std
  Tensor labels;  // i32 (B)
};

struct ImageLoaderPosition {
  int64_t epoch = 0, index = 0;  // images of epoch `epoch`'s order handed out so far
  Generator::State rng{};        // the augmentation generator after the last batch handed out
};

// Images [start, start + count) of `set` in order, normalised, no augmentation (evaluation,
// classify). Throws naming the range and the set's size when it does not fit.
ImageBatch image_batch(const ImageSet& set, const std::vector<float>& mean, const std::vector<float>& std,
                       int64_t start, int64_t count);

// The order in which ImageLoader visits a set of `count` images in `epoch`: a Fisher-Yates
// permutation from a generator seeded with (seed, epoch).
std::vector<int64_t> epoch_order(int64_t count, uint64_t seed, int64_t epoch);

class ImageLoader {
 public:
  ImageLoader(std::shared_ptr<const ImageSet> set, std::vector<float> mean, std::vector<float> std, int64_t batch,
              uint64_t seed, AugmentOptions augment, int prefetch = 2);
  ~ImageLoader();
  ImageLoader(const ImageLoader&) = delete;
  ImageLoader& operator=(const ImageLoader&) = delete;

  ImageBatch next();                     // drops the last partial batch of each epoch
  ImageLoaderPosition position() const;  // after the last batch handed out
  // Drops batches built ahead and continues from `position`.
  void restore(const ImageLoaderPosition& position);
  int64_t batches_per_epoch() const { return set_->size() / batch_; }

 private:
  struct Ready {
    std::vector<float> images;
    std::vector<int32_t> labels;
    ImageLoaderPosition after;
  };
  void start(const ImageLoaderPosition& from);
  void stop();
  void produce();

  std::shared_ptr<const ImageSet> set_;
  std::vector<float> table_;  // (C, 256): the normalised value of every byte in every channel
  int64_t batch_;
  uint64_t seed_;
  AugmentOptions augment_;
  size_t prefetch_;

  // Owned by the producer thread while it runs.
  ImageLoaderPosition cursor_;
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
  Generator gen_;

  ImageLoaderPosition position_;  // after the last batch handed out
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Ready> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tg
