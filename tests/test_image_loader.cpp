// data/image_loader.h and data/augment.h: every image once per epoch in a seeded order, exact
// resume, augmentation that does what it says, and normalisation against a double computation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "data/augment.h"
#include "data/image_loader.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

// `count` random images of (H, W, C) with bytes in [1, 255] (0 marks padding and erasing) and
// label i for image i, so a batch's labels say which images it holds.
std::shared_ptr<ImageSet> labelled_set(Generator& gen, int64_t count, int64_t H, int64_t W, int64_t C) {
  auto set = std::make_shared<ImageSet>();
  set->height = H, set->width = W, set->channels = C;
  set->pixels.resize(count * H * W * C);
  for (uint8_t& p : set->pixels) p = static_cast<uint8_t>(1 + gen.below(255));
  for (int64_t i = 0; i < count; i++) set->labels.push_back(static_cast<int32_t>(i));
  return set;
}

const std::vector<float> kMean = {0.25f, 0.5f, 0.75f}, kStd = {0.2f, 0.3f, 0.4f};

struct Recorded {
  std::vector<float> images;
  std::vector<int32_t> labels;
  bool operator==(const Recorded& other) const {
    // Bit for bit, not within a tolerance: a resumed run must see the very same batches.
    return labels == other.labels && images.size() == other.images.size() &&
           std::memcmp(images.data(), other.images.data(), images.size() * sizeof(float)) == 0;
  }
};

std::vector<Recorded> take(ImageLoader& loader, int batches) {
  std::vector<Recorded> out;
  for (int b = 0; b < batches; b++) {
    ImageBatch batch = loader.next();
    out.push_back({batch.images.to_vector(), batch.labels.to_int_vector()});
  }
  return out;
}

AugmentOptions all_augmentations() {
  AugmentOptions augment;
  augment.crop_padding = 2;
  augment.flip = true;
  augment.erase_probability = 0.5;
  return augment;
}

}  // namespace

TEST(ImageLoader, EveryImageOncePerEpochInADifferentOrder) {
  Generator gen(31);
  auto set = labelled_set(gen, 23, 4, 5, 3);
  ImageLoader loader(set, kMean, kStd, 4, 7, AugmentOptions());
  ASSERT_EQ(loader.batches_per_epoch(), 5);  // 23 / 4: the last 3 images of each order are dropped
  std::vector<std::vector<int32_t>> epochs;
  for (int epoch = 0; epoch < 3; epoch++) {
    std::vector<int32_t> seen;
    for (const Recorded& batch : take(loader, 5)) seen.insert(seen.end(), batch.labels.begin(), batch.labels.end());
    EXPECT_EQ(std::set<int32_t>(seen.begin(), seen.end()).size(), 20u) << "epoch " << epoch;
    std::vector<int64_t> order = epoch_order(23, 7, epoch);
    EXPECT_EQ(seen, std::vector<int32_t>(order.begin(), order.begin() + 20));
    epochs.push_back(seen);
    EXPECT_EQ(loader.position().epoch, epoch);
    EXPECT_EQ(loader.position().index, 20);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  std::vector<int64_t> order = epoch_order(23, 7, 0);
  EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 23u);  // a permutation
}

TEST(ImageLoader, SameSeedSameBatchesOtherSeedOthers) {
  Generator gen(32);
  auto set = labelled_set(gen, 17, 6, 6, 3);
  ImageLoader a(set, kMean, kStd, 5, 99, all_augmentations()), b(set, kMean, kStd, 5, 99, all_augmentations(), 1);
  ImageLoader c(set, kMean, kStd, 5, 100, all_augmentations());
  std::vector<Recorded> from_a = take(a, 7), from_b = take(b, 7), from_c = take(c, 7);
  EXPECT_TRUE(from_a == from_b);  // the prefetch depth changes nothing
  EXPECT_FALSE(from_a == from_c);
}

TEST(ImageLoader, RestoreReproducesTheBatchesBitForBit) {
  Generator gen(33);
  auto set = labelled_set(gen, 13, 5, 4, 3);
  // 13 / 3 = 4 batches per epoch; 11 batches cross two epoch boundaries.
  ImageLoader uninterrupted(set, kMean, kStd, 3, 5, all_augmentations());
  std::vector<Recorded> reference = take(uninterrupted, 11);
  for (int stop_after : {1, 3, 4, 6}) {  // mid-epoch, the last batch of an epoch, past a boundary
    SCOPED_TRACE("stopped after " + std::to_string(stop_after) + " batches");
    ImageLoaderPosition saved;
    {
      ImageLoader first(set, kMean, kStd, 3, 5, all_augmentations());
      take(first, stop_after);
      saved = first.position();  // prefetched batches beyond this one are not part of it
    }
    ImageLoader resumed(set, kMean, kStd, 3, 5, all_augmentations());
    resumed.restore(saved);
    std::vector<Recorded> rest = take(resumed, 11 - stop_after);
    for (int b = 0; b < 11 - stop_after; b++) EXPECT_TRUE(rest[b] == reference[stop_after + b]) << "batch " << b;
  }
  ImageLoaderPosition bad;
  bad.index = 14;
  EXPECT_ERROR_MENTIONS(uninterrupted.restore(bad), "ImageLoader::restore", "index 14", "13 images");
}

// The prefetch thread stopped and restarted hundreds of times at random points (restores while it
// builds a batch, loaders replaced or destroyed right after they start), across epoch boundaries
// and with augmentation drawing from the generator: every batch handed out is still the
// uninterrupted run's, bit for bit. The start/stop stress that `make TSAN=1 test` runs (README).
TEST(ImageLoader, StoppingAndRestartingAtRandomPointsKeepsTheBatches) {
  Generator gen(35);
  auto set = labelled_set(gen, 13, 5, 4, 3);
  const int kBatches = 12;  // three epochs of 4
  std::vector<Recorded> reference;
  std::vector<ImageLoaderPosition> positions;  // positions[k]: after k batches
  {
    ImageLoader uninterrupted(set, kMean, kStd, 3, 5, all_augmentations());
    positions.push_back(uninterrupted.position());
    for (int k = 0; k < kBatches; k++) {
      reference.push_back(take(uninterrupted, 1)[0]);
      positions.push_back(uninterrupted.position());
    }
  }
  Generator chaos(6);
  auto depth = [&] { return 1 + static_cast<int>(chaos.below(4)); };
  auto loader = std::make_unique<ImageLoader>(set, kMean, kStd, 3, 5, all_augmentations(), depth());
  int at = 0;
  for (int step = 0; step < 300; step++) {
    switch (chaos.below(4)) {
      case 0:
      case 1:
        if (at < kBatches) {
          ASSERT_TRUE(take(*loader, 1)[0] == reference[at]) << "step " << step;
          at++;
        }
        break;
      case 2:
        at = static_cast<int>(chaos.below(kBatches + 1));
        loader->restore(positions[at]);
        break;
      default:
        { ImageLoader doomed(set, kMean, kStd, 3, 5 + step, all_augmentations(), depth()); }
        loader = std::make_unique<ImageLoader>(set, kMean, kStd, 3, 5, all_augmentations(), depth());
        at = static_cast<int>(chaos.below(kBatches + 1));
        loader->restore(positions[at]);
    }
    ImageLoaderPosition now = loader->position();
    ASSERT_EQ(now.epoch, positions[at].epoch) << "step " << step;
    ASSERT_EQ(now.index, positions[at].index) << "step " << step;
    ASSERT_EQ(now.rng, positions[at].rng) << "step " << step;
  }
}

TEST(ImageLoader, NormalisationMatchesADoubleComputation) {
  Generator gen(34);
  auto set = labelled_set(gen, 6, 3, 5, 3);
  set->pixels[0] = 0, set->pixels[1] = 255;  // both ends of the table
  ImageBatch batch = image_batch(*set, kMean, kStd, 2, 3);
  EXPECT_EQ(batch.images.shape(), (Shape{3, 3, 5, 3}));
  EXPECT_EQ(batch.labels.to_int_vector(), (std::vector<int32_t>{2, 3, 4}));
  std::vector<double> want;
  for (int64_t i = 2 * 45; i < 5 * 45; i++)
    want.push_back((set->pixels[i] / 255.0 - static_cast<double>(kMean[i % 3])) / static_cast<double>(kStd[i % 3]));
  // Each entry is the double value rounded once to f32: within half an ulp, 2^-24 relative.
  expect_close(batch.images.to_vector(), want, 0, 0x1p-24, "image_batch");
  std::vector<float> ends = image_batch(*set, kMean, kStd, 0, 1).images.to_vector();
  EXPECT_EQ(ends[0], static_cast<float>((0.0 - static_cast<double>(kMean[0])) / static_cast<double>(kStd[0])));
  EXPECT_EQ(ends[1], static_cast<float>((1.0 - static_cast<double>(kMean[1])) / static_cast<double>(kStd[1])));
  // Without augmentation the loader's batch is image_batch of the images it names.
  ImageLoader loader(set, kMean, kStd, 2, 3, AugmentOptions());
  ImageBatch first = loader.next();
  std::vector<int32_t> labels = first.labels.to_int_vector();
  std::vector<float> got = first.images.to_vector(), expected;
  for (int32_t label : labels) {
    std::vector<float> one = image_batch(*set, kMean, kStd, label, 1).images.to_vector();
    expected.insert(expected.end(), one.begin(), one.end());
  }
  EXPECT_EQ(got, expected);
}

TEST(ImageLoader, BadArgumentsAreNamed) {
  Generator gen(35);
  auto set = labelled_set(gen, 5, 2, 2, 3);
  EXPECT_ERROR_MENTIONS(ImageLoader(set, kMean, kStd, 6, 1, AugmentOptions()), "5 images cannot fill one batch of 6");
  EXPECT_ERROR_MENTIONS(ImageLoader(set, {0.5f}, {0.5f}, 2, 1, AugmentOptions()), "one value per channel (3)", "found 1 and 1");
  EXPECT_ERROR_MENTIONS(ImageLoader(set, kMean, {0.2f, 0.0f, 0.4f}, 2, 1, AugmentOptions()), "std must be positive");
  AugmentOptions bad;
  bad.erase_probability = 1.5;
  EXPECT_ERROR_MENTIONS(ImageLoader(set, kMean, kStd, 2, 1, bad), "erase_probability", "found 1.5");
  EXPECT_ERROR_MENTIONS(image_batch(*set, kMean, kStd, 3, 3), "images [3, 6)", "set of 5");
}

// ---- augmentation ----------------------------------------------------------------------------

TEST(ImageLoaderAugment, FlipMirrorsAndCropShiftsWithinThePadding) {
  Generator data_gen(36);
  auto set = labelled_set(data_gen, 1, 5, 7, 3);
  const int64_t H = 5, W = 7, C = 3, pad = 2;
  const uint8_t* in = set->image(0);
  std::vector<uint8_t> out(H * W * C);
  AugmentOptions options;
  options.crop_padding = pad;
  options.flip = true;
  Generator gen(37);
  std::set<std::pair<int64_t, int64_t>> shifts;
  int flips = 0;
  for (int trial = 0; trial < 300; trial++) {
    AugmentDraw draw = augment_image(in, out.data(), H, W, C, options, gen);
    ASSERT_LE(std::abs(draw.shift_y), pad);
    ASSERT_LE(std::abs(draw.shift_x), pad);
    shifts.insert({draw.shift_y, draw.shift_x});
    flips += draw.flipped;
    // Crop then flip, written out: out(y, x) = in(y + sy, x' + sx) with x' = W-1-x when
    // flipped, and 0 where that lies in the padding.
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++)
        for (int64_t c = 0; c < C; c++) {
          int64_t sy = y + draw.shift_y, sx = (draw.flipped ? W - 1 - x : x) + draw.shift_x;
          uint8_t want = (sy < 0 || sy >= H || sx < 0 || sx >= W) ? 0 : in[(sy * W + sx) * C + c];
          ASSERT_EQ(out[(y * W + x) * C + c], want) << "trial " << trial << " at " << y << "," << x << "," << c;
        }
  }
  EXPECT_EQ(shifts.size(), 25u);  // every offset in [-2, 2]^2 occurs
  EXPECT_GT(flips, 100);
  EXPECT_LT(flips, 200);
  // Padding wider than the image leaves a black image, not a crash.
  options.crop_padding = 20;
  for (int trial = 0; trial < 20; trial++) augment_image(in, out.data(), H, W, C, options, gen);
}

TEST(ImageLoaderAugment, EraseZeroesOneRectangleAndNothingElse) {
  Generator data_gen(38);
  auto set = labelled_set(data_gen, 1, 16, 12, 3);
  const int64_t H = 16, W = 12, C = 3;
  const uint8_t* in = set->image(0);
  std::vector<uint8_t> out(H * W * C);
  AugmentOptions options;
  options.erase_probability = 1.0;
  Generator gen(39);
  int erased = 0;
  for (int trial = 0; trial < 100; trial++) {
    AugmentDraw draw = augment_image(in, out.data(), H, W, C, options, gen);
    if (draw.erase_height == 0) continue;  // ten attempts can all miss; then the image is unchanged
    erased++;
    ASSERT_GE(draw.erase_y, 0);
    ASSERT_LE(draw.erase_y + draw.erase_height, H);
    ASSERT_LE(draw.erase_x + draw.erase_width, W);
    // The area is drawn in [0.02, 0.33] of the image before rounding each side.
    double area = static_cast<double>(draw.erase_height * draw.erase_width) / (H * W);
    EXPECT_GT(area, 0.0);
    EXPECT_LT(area, 0.5);
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++) {
        bool inside = y >= draw.erase_y && y < draw.erase_y + draw.erase_height && x >= draw.erase_x &&
                      x < draw.erase_x + draw.erase_width;
        for (int64_t c = 0; c < C; c++)
          ASSERT_EQ(out[(y * W + x) * C + c], inside ? 0 : in[(y * W + x) * C + c]);
      }
  }
  EXPECT_GT(erased, 90);
  options.erase_probability = 0.0;
  augment_image(in, out.data(), H, W, C, options, gen);
  EXPECT_TRUE(std::equal(out.begin(), out.end(), in));
}

TEST(ImageLoaderAugment, LoaderAugmentsAndStillVisitsEveryImage) {
  Generator gen(40);
  auto set = labelled_set(gen, 12, 6, 6, 3);
  ImageLoader plain(set, kMean, kStd, 4, 8, AugmentOptions()), augmented(set, kMean, kStd, 4, 8, all_augmentations());
  std::vector<Recorded> a = take(plain, 3), b = take(augmented, 3);
  std::set<int32_t> labels;
  bool differs = false;
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(a[i].labels, b[i].labels);  // augmentation draws from its own generator, not the order's
    labels.insert(b[i].labels.begin(), b[i].labels.end());
    differs |= a[i].images != b[i].images;
  }
  EXPECT_EQ(labels.size(), 12u);
  EXPECT_TRUE(differs);
}
