// Synthetic image data for the image-task program tests: 8x8 grey images of 3 classes, written
// as IDX files.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace tg::test {

inline constexpr int kSide = 8, kClasses = 3;

// An image of class `label`: noise, plus a bright band whose place is the class (0: the top rows,
// 1: the bottom rows, 2: the middle columns), which survives the default flip and crop.
inline std::vector<uint8_t> synthetic_image(int label, std::mt19937& rng) {
  std::vector<uint8_t> pixels(kSide * kSide);
  std::uniform_int_distribution<int> noise(0, 60);
  for (auto& p : pixels) p = static_cast<uint8_t>(noise(rng));
  for (int y = 0; y < kSide; y++)
    for (int x = 0; x < kSide; x++) {
      bool band = label == 0 ? y < 3 : label == 1 ? y >= kSide - 3 : (x == 3 || x == 4);
      if (band) pixels[y * kSide + x] = static_cast<uint8_t>(180 + noise(rng));
    }
  return pixels;
}

inline std::string big_endian(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// train-* and t10k-* IDX files of `train` and `test` images into `folder`.
inline void write_idx_dataset(const std::string& folder, int train, int test, uint32_t seed = 7) {
  std::filesystem::create_directories(folder);
  std::mt19937 rng(seed);
  for (auto [prefix, count] : {std::pair<std::string, int>{"train", train}, {"t10k", test}}) {
    std::string images = big_endian(2051) + big_endian(count) + big_endian(kSide) + big_endian(kSide);
    std::string labels = big_endian(2049) + big_endian(count);
    for (int i = 0; i < count; i++) {
      int label = i % kClasses;
      std::vector<uint8_t> pixels = synthetic_image(label, rng);
      images.append(pixels.begin(), pixels.end());
      labels.push_back(static_cast<char>(label));
    }
    std::ofstream(folder + "/" + prefix + "-images-idx3-ubyte", std::ios::binary) << images;
    std::ofstream(folder + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary) << labels;
  }
}

}  // namespace tg::test
