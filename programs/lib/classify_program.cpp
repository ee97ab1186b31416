#include "programs/lib/classify_program.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "autograd/engine.h"
#include "data/idx.h"
#include "data/image_file.h"
#include "data/image_loader.h"
#include "nn/cnn.h"
#include "programs/lib/checkpoint.h"
#include "programs/lib/flags.h"
#include "programs/lib/image_task.h"
#include "programs/lib/run_config.h"
#include "programs/lib/run_setup.h"
#include "tensor/device.h"
#include "tensor/error.h"

namespace tg {

namespace {

struct ClassifyOptions {
  std::string ckpt, idx, device = "auto";
  int64_t index = -1, top = 5, threads = 0;
};

// "NAME (P%), NAME (P%), ...": the `top` most probable classes of one row of logits.
std::string top_classes(const float* logits, const std::vector<std::string>& classes, int64_t top) {
  const int64_t n = static_cast<int64_t>(classes.size());
  std::vector<double> p = class_probabilities(logits, n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)]; });
  std::string line;
  char share[32];
  for (int64_t k = 0; k < std::min(top, n); k++) {
    int64_t c = order[static_cast<size_t>(k)];
    std::snprintf(share, sizeof(share), " (%.1f%%)", 100.0 * p[static_cast<size_t>(c)]);
    line += (k ? ", " : "") + classes[static_cast<size_t>(c)] + share;
  }
  return line;
}

int classify(int argc, char** argv) {
  ClassifyOptions o;
  FlagSet flags("./classify", "--ckpt DIR|FILE IMAGE... | --ckpt DIR --idx FILE --index N",
                "Prints the most probable classes of each image under a ./train image-classifier checkpoint\n"
                "(a run folder means its best checkpoint). Images are PNG, JPEG or BMP files, resized to the\n"
                "model's input size when they differ, or image N of an IDX images file.\n"
                "\nexamples:\n"
                "  ./classify --ckpt runs/fashion-mnist shoe.png bag.jpg\n"
                "  ./classify --ckpt runs/fashion-mnist --idx data/fashion-mnist/t10k-images-idx3-ubyte.gz --index 0\n");
  flags.add_string("ckpt", &o.ckpt, "run folder or checkpoint file", {}, "required");
  flags.add_string("idx", &o.idx, "an IDX images file to take the image from (with --index)", {}, "none");
  flags.add_int("index", &o.index, "which image of --idx", 0, INT64_MAX, "none");
  flags.add_int("top", &o.top, "classes to print per image", 1, 1000);
  flags.add_string("device", &o.device, "cpu, cuda, cuda:N, or auto (cuda when a GPU is visible)");
  flags.add_int("threads", &o.threads, "OpenMP threads", 1, 4096, "all cores");
  std::vector<std::string> images = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  if (o.ckpt.empty()) throw Error("--ckpt is required (a ./train run folder such as runs/fashion-mnist, or a .safetensors file)");
  if (o.idx.empty() == flags.given("index"))
    if (!o.idx.empty() || flags.given("index")) throw Error("--idx and --index go together: --idx FILE --index N");
  if (images.empty() && o.idx.empty()) throw Error("no image given: pass IMAGE files, or --idx FILE --index N");
  if (o.device == "auto") o.device = cuda_available() ? "cuda" : "cpu";
  Device device = device_from_flag(o.device);
  set_device(device);
  if (o.threads > 0) omp_set_num_threads(static_cast<int>(o.threads));

  std::string path = checkpoint_file_for(o.ckpt);
  Checkpoint ckpt = load_checkpoint(path);
  if (ckpt.task.kind != "image")
    throw Error(path + " is " + describe_checkpoint_kind(ckpt.task.kind) + "; ./classify classifies images" +
                (ckpt.task.kind == "text" ? " — use ./generate" : ""));
  RunConfig config = config_from_json(ckpt.config_json, path);
  ImageInput spec = image_input_of(ckpt);
  Generator gen(0);  // the weights are overwritten by the checkpoint's
  std::shared_ptr<Sequential> model =
      make_cnn(config.model, spec.channels, static_cast<int64_t>(spec.classes.size()), gen);
  load_full_precision_weights(*model, ckpt, static_cast<float>(config.weight_decay));
  model->to(device);
  model->eval();
  NoGrad no_grad;

  auto print = [&](const std::string& name, const ImageSet& set, int64_t index) {
    ImageBatch batch = image_batch(set, spec.mean, spec.std, index, 1);
    Tensor logits = model->forward(batch.images.to(device)).to(Device::cpu()).contiguous();
    std::printf("%s: %s\n", name.c_str(), top_classes(logits.data<float>(), spec.classes, o.top).c_str());
    std::fflush(stdout);
  };
  for (const std::string& image : images) print(image, load_image_file(image, spec.height, spec.width, spec.channels), 0);
  if (!o.idx.empty()) {
    ImageSet set = read_idx_images(o.idx);
    if (set.height != spec.height || set.width != spec.width || set.channels != spec.channels)
      throw Error("--idx '" + o.idx + "' holds " + std::to_string(set.height) + "x" + std::to_string(set.width) +
                  " images, but the model takes " + std::to_string(spec.height) + "x" + std::to_string(spec.width) +
                  "x" + std::to_string(spec.channels));
    if (o.index >= set.size())
      throw Error("--index " + std::to_string(o.index) + " is past the last image of '" + o.idx + "' (it holds " +
                  std::to_string(set.size()) + ")");
    print(o.idx + "[" + std::to_string(o.index) + "]", set, o.index);
  }
  return 0;
}

}  // namespace

int classify_main(int argc, char** argv) {
  try {
    return classify(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "classify: %s\n", e.what());
    return 1;
  }
}

}  // namespace tg
