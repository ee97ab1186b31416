// Training-time augmentation of one uint8 image (H, W, C), drawn from a Generator so that a
// seeded loader augments the same way on every run.
//
// In torchvision's order and with its parameters: RandomCrop(padding) (zero padding), then
// RandomHorizontalFlip(0.5), then RandomErasing(p, scale (0.02, 0.33), ratio (0.3, 3.3), value 0).
// Erasing here zeroes uint8 pixels (black) rather than normalised values (the channel mean);
// the difference is a constant per channel in the erased patch, which is the point: hide it.
#pragma once
#include <cstdint>

#include "tensor/random.h"

namespace tg {

struct AugmentOptions {
  int64_t crop_padding = 0;        // pad every side by this many zero pixels, crop H x W at random
  bool flip = false;               // mirror left-right with probability 1/2
  double erase_probability = 0.0;  // zero one random rectangle with this probability
  bool any() const { return crop_padding > 0 || flip || erase_probability > 0.0; }
};

// What augment_image drew for one image (tests check the result against it).
struct AugmentDraw {
  int64_t shift_y = 0, shift_x = 0;  // crop offset minus padding: out(y, x) = in(y + shift_y, x + shift_x)
  bool flipped = false;
  int64_t erase_y = 0, erase_x = 0, erase_height = 0, erase_width = 0;  // erase_height 0: none
};

// in (H, W, C) -> out (H, W, C); in and out must not overlap. Draws from `gen` in a fixed order:
// the crop offsets (two draws) when crop_padding > 0, the flip when flip, and the erasing
// decision and up to ten rectangle attempts when erase_probability > 0.
AugmentDraw augment_image(const uint8_t* in, uint8_t* out, int64_t H, int64_t W, int64_t C,
                          const AugmentOptions& options, Generator& gen);

}  // namespace tg
