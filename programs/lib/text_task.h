// The text task: a language model (a GPT, or an LSTM with --arch lstm) trained on a text file, one token at a time. It reads the corpus, trains
// (or, on resume, reloads) the tokenizer, splits the tokens into training and validation text,
// and draws windows of --block tokens; an example is a token, evaluation is the validation loss,
// and a sample is generated text.
#pragma once
#include <memory>
#include <string>

#include "data/loader.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "nn/gpt.h"
#include "nn/language_model.h"
#include "nn/lstm_lm.h"
#include "programs/lib/flags.h"
#include "programs/lib/run_config.h"
#include "programs/lib/task.h"

namespace tg {

// The GPT that `options` describe over a vocabulary of `vocab_size` ids.
GPTConfig gpt_config(const TextOptions& options, int64_t vocab_size);
// The LSTM language model that `options` (with arch "lstm") describe.
LSTMLanguageModelConfig lstm_config(const TextOptions& options, int64_t vocab_size);
// The model of options.arch, initialised from `seed`: what ./train trains and ./generate reloads.
std::unique_ptr<LanguageModel> make_language_model(const TextOptions& options, int64_t vocab_size, uint64_t seed);

// The text task's defaults: its options (the preset: tiny on a CPU, small on a GPU), then AdamW,
// batch 12 (64 on a GPU), 5000 steps, lr 1e-3 (6e-4 for gpt2; 0.1 with SGD).
void resolve_text_defaults(RunConfig& config, const FlagSet& flags, bool gpu);

class TextTask : public Task {
 public:
  // Reads and tokenizes config.data; throws tg::Error naming the file when it cannot be read, is
  // empty or too short for one window in each split. On resume the tokenizer is the checkpoint's.
  // A corpus that is not UTF-8 gets a warning on stderr with the char tokenizer.
  TextTask(const RunConfig& config, const Checkpoint* resume_from);

  std::string kind() const override { return "text"; }
  void build_model(Device device) override;
  Module& model() override { return *model_; }
  std::string architecture() const override;
  void use_blockwise_mlp(int64_t chunk_tokens) override;

  Tensor micro_batch_loss() override;
  Metrics evaluate() override;

  ExampleUnit example_unit() const override { return {"tok", "tokens_per_s", "token"}; }
  double examples_per_micro_batch() const override;
  double flops_per_example() const override { return model_->flops_per_token(); }

  void print_sample(int64_t step) override;

  std::string describe_data() const override;
  std::string describe_model() const override;
  std::string describe_batch() const override;
  std::string describe_plan() const override { return loss_plan_; }
  std::string next_step_hint(const std::string& out_dir) const override;

  void write_run_files(const std::string& out_dir) const override;  // tokenizer.json
  // The tokenizer (metadata "tokenizer") and the loader's position (metadata "loader").
  TaskCheckpoint checkpoint_extras() const override;
  void restore(const Checkpoint& checkpoint) override;

  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  RunConfig config_;  // a copy: the task outlives the setup that made it
  std::unique_ptr<Tokenizer> tokenizer_;
  TextDataset data_;
  Device device_;
  std::unique_ptr<LanguageModel> model_;
  std::unique_ptr<BatchLoader> loader_;
  std::string loss_plan_;  // the output layer's chunking (run_loss_chunk), printed at the start
};

}  // namespace tg
