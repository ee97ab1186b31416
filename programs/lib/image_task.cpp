#include "programs/lib/image_task.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "autograd/functions/crossentropy.h"
#include "nn/cnn.h"
#include "ops/flops.h"
#include "programs/lib/batch_copy.h"
#include "programs/lib/json_fields.h"
#include "programs/lib/progress.h"
#include "tensor/error.h"

namespace tg {

namespace {

constexpr int64_t kDefaultEpochs = 15;

// Accuracy is a percentage in metrics.csv and on screen.
double percent(int64_t part, int64_t whole) { return whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0; }

int64_t argmax_row(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

}  // namespace

std::vector<double> class_probabilities(const float* logits, int64_t n) {
  double top = *std::max_element(logits, logits + n), sum = 0;
  std::vector<double> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) sum += p[static_cast<size_t>(i)] = std::exp(static_cast<double>(logits[i]) - top);
  for (double& v : p) v /= sum;
  return p;
}

ImageInput image_input_of(const Checkpoint& ckpt) {
  ImageInput input;
  try {
    input.classes = nlohmann::json::parse(ckpt.task.metadata.at("classes")).get<std::vector<std::string>>();
    nlohmann::json image = nlohmann::json::parse(ckpt.task.metadata.at("image"));
    input.height = image.at("height").get<int64_t>();
    input.width = image.at("width").get<int64_t>();
    input.channels = image.at("channels").get<int64_t>();
    input.mean = image.at("mean").get<std::vector<float>>();
    input.std = image.at("std").get<std::vector<float>>();
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + ckpt.path + "' lacks a readable class list or image shape: " + e.what());
  }
  return input;
}

void resolve_image_defaults(RunConfig& c, const FlagSet& flags, bool /*gpu: the same defaults on either device*/) {
  if (c.model.empty()) c.model = "cnn";
  const std::vector<std::string>& presets = cnn_presets();
  if (std::find(presets.begin(), presets.end(), c.model) == presets.end())
    throw Error("--model '" + c.model + "' is not an image model (expected one of: " + image_model_help() + ")");
  if (c.optimizer.empty()) c.optimizer = "sgd";
  if (c.batch == 0) c.batch = 128;
  // SGD at 0.1 with --erase 0.25: 93.28% mean test accuracy on Fashion-MNIST over 3 seeds, against
  // 92.96% at 0.05 without erasing (README, "Performance").
  if (c.lr == 0.0) c.lr = c.optimizer == "sgd" ? 0.1 : 2e-3;
  // The cosine decays to zero, as CNN recipes do (torchvision's): the last epochs at a tiny
  // learning rate settle the weights and the BatchNorm statistics.
  if (c.min_lr < 0.0) c.min_lr = 0.0;
  if (flags.given("epochs") && flags.given("steps"))
    throw Error("--epochs and --steps both set the length of the run; give one of them");
  if (!flags.given("steps") && c.image.epochs == 0) c.image.epochs = kDefaultEpochs;
  if (flags.given("steps")) c.image.epochs = 0;
}

ImageTask::ImageTask(const RunConfig& config, const Checkpoint* resume_from)
    : config_(config), device_(parse_device(config.device)) {
  ImageDataOptions options;
  options.val_fraction = config_.val_fraction;
  options.image_size = config_.image.image_size;
  options.seed = static_cast<uint64_t>(config_.seed);
  options.skip_bad = config_.image.skip_bad;
  ImageInput saved;
  if (resume_from) {
    saved = image_input_of(*resume_from);
    options.channels = saved.channels;
  }
  data_ = load_image_data(config_.data, options);
  if (data_.skipped_files > 0)
    std::fprintf(stderr, "train: skipped %lld files in '%s' that do not decode as images (--skip-bad)\n",
                 static_cast<long long>(data_.skipped_files), config_.data.c_str());
  if (resume_from) {
    const std::vector<std::string>& classes = saved.classes;
    data_.mean = saved.mean;
    data_.std = saved.std;
    if (classes != data_.class_names)
      throw Error("the classes of '" + config_.data + "' differ from those of checkpoint '" + resume_from->path +
                  "' (" + std::to_string(data_.class_names.size()) + " vs " + std::to_string(classes.size()) +
                  "): a resumed run keeps its data");
  }
  if (data_.train.size() < config_.global_batch())
    throw Error("--batch " + std::to_string(config_.batch) +
                (config_.world_size > 1 ? " on " + std::to_string(config_.world_size) + " ranks (a global batch of " +
                                              std::to_string(config_.global_batch()) + ")"
                                        : std::string()) +
                " is larger than the " + std::to_string(data_.train.size()) + " training images of '" + config_.data +
                "': use a smaller --batch or a smaller --val-fraction");
  if (data_.val.size() == 0)
    throw Error("'" + config_.data + "' leaves no validation images at --val-fraction " +
                format_number(config_.val_fraction) + ": add images or raise the fraction");
  data_line_ = data_.describe();
  train_ = std::make_shared<const ImageSet>(std::move(data_.train));
  data_.train = ImageSet();
  config_.data = canonical_or_same(config_.data);  // as config.json names it
}

void ImageTask::complete_config(RunConfig& c) {
  int64_t batches_per_epoch = std::max<int64_t>(1, train_->size() / c.global_batch());
  if (c.steps == 0) c.steps = c.image.epochs * batches_per_epoch;
  if (c.eval_every == 0) c.eval_every = batches_per_epoch;  // once an epoch
  config_.steps = c.steps;
  config_.eval_every = c.eval_every;
}

void ImageTask::build_model(Device device) {
  device_ = device;
  const int64_t classes = static_cast<int64_t>(data_.class_names.size());
  Generator gen(static_cast<uint64_t>(config_.seed));
  model_ = make_cnn(config_.model, train_->channels, classes, gen);
  AugmentOptions augment;
  augment.crop_padding = config_.image.crop_padding;
  augment.flip = config_.image.flip == "yes";
  augment.erase_probability = config_.image.erase;
  loader_ = std::make_unique<ImageLoader>(train_, data_.mean, data_.std, config_.global_batch(),
                                          static_cast<uint64_t>(config_.seed), augment);
  // The FLOPs of one image's forward and backward, counted at the matrix-product fronts on a copy
  // of the model (eval mode, so no running statistic moves): the exact work, first layer's missing
  // input gradient included, without a formula per architecture to keep in step with the code.
  Generator scratch_gen(0);
  std::shared_ptr<Sequential> scratch = make_cnn(config_.model, train_->channels, classes, scratch_gen);
  scratch->eval();
  ImageBatch one = image_batch(*train_, data_.mean, data_.std, 0, 1);
  ops::FlopCounter counter;
  backward(cross_entropy(scratch->forward(one.images), one.labels));
  flops_per_image_ = counter.flops();
}

std::string ImageTask::architecture() const {
  nlohmann::ordered_json j = {{"model", config_.model},
                              {"channels", train_->channels},
                              {"height", train_->height},
                              {"width", train_->width},
                              {"classes", static_cast<int64_t>(data_.class_names.size())}};
  return j.dump();
}

// A batch of f32 images on the model's device, in the dtype of its parameters (bf16 or f16 when
// ./train runs --dtype bf16 or fp16: the first convolution takes its input in its weight's dtype).
Tensor ImageTask::model_input(const Tensor& images) const {
  Tensor x = batch_to(images, device_);
  const DType dtype = model_->parameters().front().dtype();
  return x.dtype() == dtype ? x : x.to(dtype);
}

Tensor ImageTask::micro_batch_loss() {
  ImageBatch batch = next_batch(*loader_);
  Tensor images = rank_rows(batch.images, config_), labels = rank_rows(batch.labels, config_);
  return cross_entropy(model_->forward(model_input(images)), batch_to(labels, device_), -1,
                       static_cast<float>(config_.image.label_smoothing));
}

// Every image of `set`, in order, in eval mode (running statistics), with the plain cross
// entropy: the smoothed one is a training device, not a measurement.
ImageTask::Evaluation ImageTask::evaluate_set(const ImageSet& set) {
  const int64_t classes = static_cast<int64_t>(data_.class_names.size());
  Evaluation result;
  result.confusion.assign(static_cast<size_t>(classes * classes), 0);
  NoGrad no_grad;
  model_->eval();
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < set.size(); start += config_.batch) {
    int64_t count = std::min(config_.batch, set.size() - start);
    ImageBatch batch = image_batch(set, data_.mean, data_.std, start, count);
    Tensor logits = model_->forward(model_input(batch.images)).to(Device::cpu()).to(DType::F32).contiguous();
    loss_sum += static_cast<double>(cross_entropy(logits, batch.labels).item()) * static_cast<double>(count);
    const float* rows = logits.data<float>();
    const int32_t* labels = batch.labels.data<int32_t>();
    for (int64_t i = 0; i < count; i++) {
      int64_t predicted = argmax_row(rows + i * classes, classes);
      correct += predicted == labels[i];
      result.confusion[static_cast<size_t>(labels[i] * classes + predicted)]++;
    }
  }
  model_->train();
  result.loss = loss_sum / static_cast<double>(std::max<int64_t>(1, set.size()));
  result.accuracy = percent(correct, set.size());
  return result;
}

Metrics ImageTask::evaluate() {
  Evaluation e = evaluate_set(data_.val);
  return {{"val_loss", e.loss}, {"val_accuracy", e.accuracy}};
}

Metrics ImageTask::final_evaluation() {
  if (data_.test.size() == 0) {
    std::printf("no test set in '%s' (a test/ folder, or t10k-* IDX files): test accuracy not measured\n",
                config_.data.c_str());
    return {};
  }
  Evaluation e = evaluate_set(data_.test);
  const int64_t classes = static_cast<int64_t>(data_.class_names.size());
  std::printf("test set: %lld images, the final model (the test set played no part in training or model "
              "selection)\n", static_cast<long long>(data_.test.size()));
  size_t width = 5;
  for (const std::string& name : data_.class_names) width = std::max(width, name.size());
  std::printf("  %-*s  accuracy  images\n", static_cast<int>(width), "class");
  for (int64_t c = 0; c < classes; c++) {
    int64_t total = 0;
    for (int64_t p = 0; p < classes; p++) total += e.confusion[static_cast<size_t>(c * classes + p)];
    std::printf("  %-*s  %7.2f%%  %6lld\n", static_cast<int>(width), data_.class_names[static_cast<size_t>(c)].c_str(),
                percent(e.confusion[static_cast<size_t>(c * classes + c)], total), static_cast<long long>(total));
  }
  // The confusion matrix: on screen when it fits, always as confusion.csv (row = true class).
  std::string path = config_.out + "/confusion.csv";
  {
    std::ofstream csv(path, std::ios::trunc);
    csv << "true\\predicted";
    for (const std::string& name : data_.class_names) csv << "," << name;
    csv << "\n";
    for (int64_t c = 0; c < classes; c++) {
      csv << data_.class_names[static_cast<size_t>(c)];
      for (int64_t p = 0; p < classes; p++) csv << "," << e.confusion[static_cast<size_t>(c * classes + p)];
      csv << "\n";
    }
  }
  if (classes <= 20) {
    std::printf("confusion matrix (rows: true class, columns: predicted, in class order; also %s):\n", path.c_str());
    for (int64_t c = 0; c < classes; c++) {
      std::printf("  %-*s", static_cast<int>(width), data_.class_names[static_cast<size_t>(c)].c_str());
      for (int64_t p = 0; p < classes; p++)
        std::printf(" %5lld", static_cast<long long>(e.confusion[static_cast<size_t>(c * classes + p)]));
      std::printf("\n");
    }
  } else {
    std::printf("confusion matrix: %s\n", path.c_str());
  }
  return {{"test_loss", e.loss}, {"test_accuracy", e.accuracy}};
}

void ImageTask::print_sample(int64_t step) {
  const int64_t classes = static_cast<int64_t>(data_.class_names.size());
  int64_t count = std::min(config_.image.sample_images, data_.val.size());
  // The same validation images every time, spread over the split, so samples show progress.
  std::vector<int64_t> picks;
  for (int64_t i = 0; i < count; i++) picks.push_back(i * data_.val.size() / count);
  NoGrad no_grad;
  model_->eval();
  std::printf("---- validation predictions at step %lld ----\n", static_cast<long long>(step));
  for (int64_t index : picks) {
    ImageBatch one = image_batch(data_.val, data_.mean, data_.std, index, 1);
    Tensor logits = model_->forward(model_input(one.images)).to(Device::cpu()).to(DType::F32).contiguous();
    std::vector<double> p = class_probabilities(logits.data<float>(), classes);
    int64_t predicted = std::max_element(p.begin(), p.end()) - p.begin();
    int32_t truth = one.labels.data<int32_t>()[0];
    std::printf("  #%-6lld %s (%.0f%%)%s\n", static_cast<long long>(index),
                data_.class_names[static_cast<size_t>(predicted)].c_str(), 100.0 * p[static_cast<size_t>(predicted)],
                predicted == truth ? "" : ("   wrong: it is " + data_.class_names[static_cast<size_t>(truth)]).c_str());
  }
  std::printf("----\n");
  std::fflush(stdout);
  model_->train();
}

std::string ImageTask::describe_data() const { return data_line_; }

std::string ImageTask::describe_model() const {
  return config_.model + " on " + std::to_string(train_->height) + "x" + std::to_string(train_->width) + "x" +
         std::to_string(train_->channels) + " images, " + std::to_string(data_.class_names.size()) + " classes, " +
         format_count(flops_per_image_ / 1e6) + " MFLOP per image (forward + backward)";
}

std::string ImageTask::describe_batch() const { return std::to_string(config_.batch) + " images"; }

std::string ImageTask::next_step_hint(const std::string& out_dir) const {
  return "classify with: ./classify --ckpt " + out_dir + " IMAGE...";
}

TaskCheckpoint ImageTask::checkpoint_extras() const {
  TaskCheckpoint extras;
  extras.kind = kind();
  extras.architecture = architecture();
  extras.metadata["classes"] = nlohmann::json(data_.class_names).dump();
  extras.metadata["image"] = nlohmann::json{{"height", train_->height}, {"width", train_->width},
                                            {"channels", train_->channels}, {"mean", data_.mean}, {"std", data_.std}}
                                 .dump();
  ImageLoaderPosition position = loader_->position();
  extras.metadata["loader"] =
      nlohmann::json{{"epoch", position.epoch}, {"index", position.index}, {"rng", position.rng}}.dump();
  return extras;
}

void ImageTask::restore(const Checkpoint& ckpt) {
  ImageLoaderPosition position;
  try {
    nlohmann::json j = nlohmann::json::parse(ckpt.task.metadata.at("loader"));
    position.epoch = json_integer(j, "epoch");
    position.index = json_integer(j, "index");
    position.rng = json_generator_state(j, "rng");
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + ckpt.path + "' has a malformed image loader position: " + e.what());
  }
  loader_->restore(position);
}

}  // namespace tg
