#include "data/image_loader.h"

#include <cstring>
#include <string>

namespace tg {

namespace {

std::string numbers(const std::vector<float>& values) {
  std::string text;
  for (float v : values) text += (text.empty() ? "" : ", ") + std::to_string(v);
  return "(" + text + ")";
}

// (C, 256) table: entry [c][v] = (v / 255 - mean[c]) / std[c], computed in double and rounded
// once, so a batch equals the double formula to within half an ulp of f32.
std::vector<float> normalisation_table(const char* op, int64_t channels, const std::vector<float>& mean,
                                       const std::vector<float>& std) {
  TG_CHECK(static_cast<int64_t>(mean.size()) == channels && static_cast<int64_t>(std.size()) == channels,
           std::string(op) + ": mean and std need one value per channel (" + std::to_string(channels) +
               "), found " + std::to_string(mean.size()) + " and " + std::to_string(std.size()));
  std::vector<float> table(static_cast<size_t>(channels) * 256);
  for (int64_t c = 0; c < channels; c++) {
    TG_CHECK(std[c] > 0.0f, std::string(op) + ": std must be positive in every channel, found " + numbers(std) +
                                " (a constant channel cannot be normalised)");
    for (int v = 0; v < 256; v++)
      table[c * 256 + v] = static_cast<float>((v / 255.0 - static_cast<double>(mean[c])) / static_cast<double>(std[c]));
  }
  return table;
}

// in (H*W, C) bytes -> out (H*W, C) floats
void normalise_image(const uint8_t* in, int64_t pixels, int64_t channels, const float* table, float* out) {
  if (channels == 1) {
    for (int64_t i = 0; i < pixels; i++) out[i] = table[in[i]];
    return;
  }
  for (int64_t i = 0; i < pixels; i++, in += channels, out += channels)
    for (int64_t c = 0; c < channels; c++) out[c] = table[c * 256 + in[c]];
}

}  // namespace

ImageBatch image_batch(const ImageSet& set, const std::vector<float>& mean, const std::vector<float>& std,
                       int64_t start, int64_t count) {
  TG_CHECK(count > 0 && start >= 0 && start + count <= set.size(),
           "image_batch: images [" + std::to_string(start) + ", " + std::to_string(start + count) +
               ") do not fit a set of " + std::to_string(set.size()));
  std::vector<float> table = normalisation_table("image_batch", set.channels, mean, std);
  ImageBatch batch;
  batch.images = Tensor::empty({count, set.height, set.width, set.channels});
  normalise_image(set.image(start), count * set.height * set.width, set.channels, table.data(),
                  batch.images.data<float>());
  batch.labels = Tensor::from_ints(std::vector<int32_t>(set.labels.begin() + start, set.labels.begin() + start + count),
                                   {count});
  return batch;
}

std::vector<int64_t> epoch_order(int64_t count, uint64_t seed, int64_t epoch) {
  // manual_seed passes the seed through splitmix64, so neighbouring (seed, epoch) pairs still give
  // unrelated streams.
  Generator gen(seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(epoch + 1)));
  std::vector<int64_t> order(count);
  for (int64_t i = 0; i < count; i++) order[i] = i;
  for (int64_t i = count - 1; i > 0; i--) std::swap(order[i], order[gen.below(static_cast<uint64_t>(i + 1))]);
  return order;
}

ImageLoader::ImageLoader(std::shared_ptr<const ImageSet> set, std::vector<float> mean, std::vector<float> std,
                         int64_t batch, uint64_t seed, AugmentOptions augment, int prefetch)
    : set_(std::move(set)), batch_(batch), seed_(seed), augment_(augment), prefetch_(prefetch < 1 ? 1 : prefetch) {
  TG_CHECK(set_ != nullptr, "ImageLoader: no image set");
  TG_CHECK(batch_ > 0, "ImageLoader: batch must be positive, found " + std::to_string(batch_));
  TG_CHECK(set_->size() >= batch_, "ImageLoader: " + std::to_string(set_->size()) +
                                       " images cannot fill one batch of " + std::to_string(batch_));
  TG_CHECK(augment_.crop_padding >= 0,
           "ImageLoader: crop_padding must be 0 or positive, found " + std::to_string(augment_.crop_padding));
  TG_CHECK(augment_.erase_probability >= 0.0 && augment_.erase_probability <= 1.0,
           "ImageLoader: erase_probability must be in [0, 1], found " + std::to_string(augment_.erase_probability));
  table_ = normalisation_table("ImageLoader", set_->channels, mean, std);
  ImageLoaderPosition first;
  first.rng = Generator(seed_).state();
  position_ = first;
  start(first);
}

ImageLoader::~ImageLoader() { stop(); }

void ImageLoader::start(const ImageLoaderPosition& from) {
  cursor_ = from;
  gen_.set_state(from.rng);
  stopping_ = false;
  thread_ = std::thread([this] { produce(); });
}

void ImageLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  queue_.clear();
}

// Floats, not Tensors: the thread never touches the tensor allocator, which belongs to the
// training thread.
void ImageLoader::produce() {
  const ImageSet& set = *set_;
  const int64_t pixels = set.height * set.width, bytes = set.image_bytes();
  std::vector<uint8_t> scratch(static_cast<size_t>(bytes));
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] { return stopping_ || queue_.size() < prefetch_; });
      if (stopping_) return;
    }
    if (cursor_.index + batch_ > set.size()) cursor_.epoch++, cursor_.index = 0;  // drop the partial batch
    if (order_epoch_ != cursor_.epoch) order_ = epoch_order(set.size(), seed_, cursor_.epoch), order_epoch_ = cursor_.epoch;
    Ready ready;
    ready.images.resize(static_cast<size_t>(batch_ * bytes));
    ready.labels.resize(static_cast<size_t>(batch_));
    for (int64_t b = 0; b < batch_; b++) {
      const int64_t image = order_[cursor_.index + b];
      const uint8_t* source = set.image(image);
      if (augment_.any()) {
        augment_image(source, scratch.data(), set.height, set.width, set.channels, augment_, gen_);
        source = scratch.data();
      }
      normalise_image(source, pixels, set.channels, table_.data(), ready.images.data() + b * bytes);
      ready.labels[b] = set.labels[image];
    }
    cursor_.index += batch_;
    cursor_.rng = gen_.state();
    ready.after = cursor_;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(ready));
    }
    changed_.notify_all();
  }
}

ImageBatch ImageLoader::next() {
  Ready ready;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return !queue_.empty(); });
    ready = std::move(queue_.front());
    queue_.pop_front();
    position_ = ready.after;
  }
  changed_.notify_all();
  const ImageSet& set = *set_;
  ImageBatch batch;
  batch.images = Tensor::empty({batch_, set.height, set.width, set.channels});
  std::memcpy(batch.images.data<float>(), ready.images.data(), ready.images.size() * sizeof(float));
  batch.labels = Tensor::from_ints(ready.labels, {batch_});
  return batch;
}

ImageLoaderPosition ImageLoader::position() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return position_;
}

void ImageLoader::restore(const ImageLoaderPosition& position) {
  TG_CHECK(position.epoch >= 0 && position.index >= 0 && position.index <= set_->size(),
           "ImageLoader::restore: position (epoch " + std::to_string(position.epoch) + ", index " +
               std::to_string(position.index) + ") does not fit a set of " + std::to_string(set_->size()) + " images");
  stop();
  position_ = position;
  start(position);
}

}  // namespace tg
