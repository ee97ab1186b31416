#include "programs/lib/image_options.h"

#include "tensor/error.h"

namespace tg {

std::string image_model_help() {
  return "cnn (the default: 5 conv-BN-ReLU layers, 32-64-128 channels), cnn-ref (the reference CNN of the "
         "PyTorch comparison), resnet (ResNet-18-style, 3 stages of 2 residual blocks, 32-64-128 channels)";
}

void add_image_flags(FlagSet& flags, ImageOptions& o) {
  flags.add_section("images (DATA is a folder of IDX files or of class subfolders of images)");
  flags.add_int("epochs", &o.epochs, "passes over the training images (sets --steps)", 1, 1 << 20,
                "15, unless --steps is given");
  flags.add_int("image-size", &o.image_size,
                "resize every image to this square (otherwise all images must share one size)", 1, 4096, "off");
  flags.add_switch("skip-bad", &o.skip_bad, "skip (and count) image files that do not decode, instead of stopping");
  flags.add_int("crop-padding", &o.crop_padding, "augmentation: random crop after zero-padding each side (0: off)", 0,
                64);
  flags.add_string("flip", &o.flip, "augmentation: random horizontal flip (no for digits, text, anything whose "
                   "mirror image is another class)", {"yes", "no"});
  flags.add_float("erase", &o.erase, "augmentation: probability of erasing a random rectangle", 0.0, 1.0);
  flags.add_float("label-smoothing", &o.label_smoothing, "cross-entropy label smoothing", 0.0, 1.0, false);
  flags.add_int("sample-images", &o.sample_images, "validation images whose predictions each sample prints", 1, 1000);
}

const std::vector<std::string>& image_flag_names() {
  static const std::vector<std::string> names = {"epochs", "image-size", "skip-bad",        "crop-padding",
                                                 "flip",   "erase",      "label-smoothing", "sample-images"};
  return names;
}

void check_image_resume(const ImageOptions& given, const std::string& given_model, const ImageOptions& saved,
                        const std::string& saved_model, const FlagSet& flags, const std::string& checkpoint_path) {
  auto refuse = [&](const std::string& flag, const std::string& value, const std::string& saved_value) {
    throw Error("--" + flag + " " + value + " differs from the checkpoint's " + saved_value + " in " + checkpoint_path +
                ": a resumed run keeps its model and input size (drop the flag, or start a new run with another --out)");
  };
  if (flags.given("model") && given_model != saved_model) refuse("model", given_model, saved_model);
  if (flags.given("image-size") && given.image_size != saved.image_size)
    refuse("image-size", std::to_string(given.image_size), std::to_string(saved.image_size));
}

void image_options_to_json(const ImageOptions& o, nlohmann::ordered_json& j) {
  j["epochs"] = o.epochs;
  j["image-size"] = o.image_size;
  j["skip-bad"] = o.skip_bad;
  j["crop-padding"] = o.crop_padding;
  j["flip"] = o.flip;
  j["erase"] = o.erase;
  j["label-smoothing"] = o.label_smoothing;
  j["sample-images"] = o.sample_images;
}

ImageOptions image_options_from_json(const nlohmann::json& j) {
  ImageOptions o;
  o.epochs = j.at("epochs").get<int64_t>();
  o.image_size = j.at("image-size").get<int64_t>();
  o.skip_bad = j.at("skip-bad").get<bool>();
  o.crop_padding = j.at("crop-padding").get<int64_t>();
  o.flip = j.at("flip").get<std::string>();
  o.erase = j.at("erase").get<double>();
  o.label_smoothing = j.at("label-smoothing").get<double>();
  o.sample_images = j.at("sample-images").get<int64_t>();
  return o;
}

}  // namespace tg
