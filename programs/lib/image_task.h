// The image task: a CNN classifier trained on a folder of images (IDX files, or one subfolder per
// class). It decodes the data once into memory, carves a validation split from the training
// images, and draws augmented, shuffled batches; an example is an image, evaluation is the
// validation loss and accuracy, a sample is a handful of validation predictions, and the test set
// is evaluated once, at the end (accuracy, per-class accuracy, confusion matrix).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/image_dataset.h"
#include "data/image_loader.h"
#include "nn/sequential.h"
#include "programs/lib/flags.h"
#include "programs/lib/run_config.h"
#include "programs/lib/task.h"

namespace tg {

// What an image checkpoint says about its model's input: the classes, the image shape and the
// normalisation (metadata "classes" and "image"). Throws naming the checkpoint when unreadable.
struct ImageInput {
  std::vector<std::string> classes;
  int64_t height = 0, width = 0, channels = 0;
  std::vector<float> mean, std;
};
ImageInput image_input_of(const Checkpoint& checkpoint);

// Softmax probabilities of one row of n logits, in double (for printing predictions).
std::vector<double> class_probabilities(const float* logits, int64_t n);

// The image task's defaults: the cnn preset, SGD with Nesterov momentum, batch 128, lr 0.05 decaying
// to 0, and 15 epochs unless --steps is given. Throws naming --model for a preset that is not an image model.
void resolve_image_defaults(RunConfig& config, const FlagSet& flags, bool gpu);

class ImageTask : public Task {
 public:
  // Loads and checks config.data (load_image_data); throws tg::Error naming the folder or file.
  // On resume, the class names and normalisation are the checkpoint's, and must fit the data.
  ImageTask(const RunConfig& config, const Checkpoint* resume_from);

  std::string kind() const override { return "image"; }
  // --epochs become --steps (epochs x batches per epoch), and evaluation defaults to once an epoch.
  void complete_config(RunConfig& config) override;
  void build_model(Device device) override;
  Module& model() override { return *model_; }
  std::string architecture() const override;

  Tensor micro_batch_loss() override;
  Metrics evaluate() override;  // val_loss, val_accuracy (percent) over the whole validation split
  std::vector<std::string> metric_columns() const override { return {"val_accuracy", "test_loss", "test_accuracy"}; }
  Metrics final_evaluation() override;  // test_loss, test_accuracy; prints the tables, writes confusion.csv

  ExampleUnit example_unit() const override { return {"img", "images_per_s", "image"}; }
  double examples_per_micro_batch() const override { return static_cast<double>(config_.batch); }
  double flops_per_example() const override { return flops_per_image_; }

  void print_sample(int64_t step) override;

  std::string describe_data() const override;
  std::string describe_model() const override;
  std::string describe_batch() const override;
  std::string next_step_hint(const std::string& out_dir) const override;

  // The class names, the normalisation, the input shape (metadata "image") and the loader's
  // position (metadata "loader").
  TaskCheckpoint checkpoint_extras() const override;
  void restore(const Checkpoint& checkpoint) override;

 private:
  struct Evaluation {
    double loss = 0, accuracy = 0;         // mean loss; percent correct
    std::vector<int64_t> confusion;        // classes x classes, row = true class, column = predicted
  };
  Evaluation evaluate_set(const ImageSet& set);
  // images (f32, on the host) on the model's device, in its parameters' dtype.
  Tensor model_input(const Tensor& images) const;

  RunConfig config_;  // a copy: the task outlives the setup that made it
  ImageData data_;  // its training images move to train_, shared with the loader's thread
  std::string data_line_;
  std::shared_ptr<const ImageSet> train_;
  Device device_;
  std::shared_ptr<Sequential> model_;
  std::unique_ptr<ImageLoader> loader_;
  double flops_per_image_ = 0;
};

}  // namespace tg
