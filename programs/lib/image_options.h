// The image task's settings: the classifier's input size, the epochs, augmentation, label
// smoothing and the printed predictions. Their flags appear under "images" in ./train --help;
// their config.json keys are the flag names, in the same flat object as the loop's.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "programs/lib/flags.h"

namespace tg {

struct ImageOptions {
  int64_t epochs = 0;        // passes over the training images; 0: the default, unless --steps is given
  int64_t image_size = 0;    // resize every image to this square; 0: they must share one size
  int64_t crop_padding = 2;  // random crop with this much zero padding on each side (0: off)
  std::string flip = "yes";  // random horizontal flip
  double erase = 0.25;       // probability of random erasing per image (+0.3 points of test accuracy on
                             // Fashion-MNIST, with lr 0.1: README, "Performance")
  double label_smoothing = 0.1;
  bool skip_bad = false;     // skip undecodable files in an image folder (and count them)
  int64_t sample_images = 8;  // validation predictions printed at each sample
};

// Every preset with its one-line description, for --help.
std::string image_model_help();

void add_image_flags(FlagSet& flags, ImageOptions& options);
// Their names, so that another task can refuse them by name.
const std::vector<std::string>& image_flag_names();

// On --resume: throws naming the flag and the checkpoint when a flag given again changes what
// defines the model or its input (the preset and the image size).
void check_image_resume(const ImageOptions& given, const std::string& given_model, const ImageOptions& saved,
                        const std::string& saved_model, const FlagSet& flags, const std::string& checkpoint_path);

void image_options_to_json(const ImageOptions& options, nlohmann::ordered_json& json);
ImageOptions image_options_from_json(const nlohmann::json& json);

}  // namespace tg
