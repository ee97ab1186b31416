#include "programs/lib/text_task.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "data/bpe_tokenizer.h"
#include "data/char_tokenizer.h"
#include "data/text_file.h"
#include "programs/lib/batch_copy.h"
#include "programs/lib/json_fields.h"
#include "programs/lib/progress.h"
#include "programs/lib/run_plan.h"
#include "programs/lib/sampling.h"
#include "tensor/error.h"

namespace tg {

GPTConfig gpt_config(const TextOptions& o, int64_t vocab_size) {
  GPTConfig g;
  g.vocab_size = vocab_size;
  g.block_size = o.block;
  g.n_layer = o.layers;
  g.n_head = o.heads;
  g.n_embd = o.embd;
  g.dropout = static_cast<float>(o.dropout);
  g.bias = true;
  g.mlp = o.mlp;
  return g;
}

LSTMLanguageModelConfig lstm_config(const TextOptions& o, int64_t vocab_size) {
  LSTMLanguageModelConfig l;
  l.vocab_size = vocab_size;
  l.n_layer = o.layers;
  l.n_embd = o.embd;
  l.dropout = static_cast<float>(o.dropout);
  return l;
}

std::unique_ptr<LanguageModel> make_language_model(const TextOptions& o, int64_t vocab_size, uint64_t seed) {
  if (o.arch == "lstm") return std::make_unique<LSTMLanguageModel>(lstm_config(o, vocab_size), seed);
  if (o.arch == "gpt") return std::make_unique<GPT>(gpt_config(o, vocab_size), seed);
  throw Error("unknown text model architecture '" + o.arch + "' (a checkpoint of a newer tilegrad?)");
}

void resolve_text_defaults(RunConfig& c, const FlagSet& flags, bool gpu) {
  resolve_text_options(c.text, c.model, flags, gpu);
  if (c.optimizer.empty()) c.optimizer = "adamw";
  if (c.batch == 0) c.batch = gpu ? 64 : 12;
  if (c.steps == 0) c.steps = 5000;
  if (c.lr == 0.0) c.lr = c.optimizer == "sgd" ? 0.1 : c.model == "gpt2" ? 6e-4 : 1e-3;
}

TextTask::TextTask(const RunConfig& config, const Checkpoint* resume_from)
    : config_(config), device_(parse_device(config.device)) {
  const TextOptions& o = config_.text;
  std::string text = read_text_file(config_.data, "corpus");
  int64_t invalid = first_invalid_utf8(text);
  if (resume_from) {
    auto saved = resume_from->task.metadata.find("tokenizer");
    if (saved == resume_from->task.metadata.end())
      throw Error("checkpoint '" + resume_from->path + "' holds no tokenizer (its metadata has no 'tokenizer')");
    tokenizer_ = load_tokenizer(saved->second, resume_from->path);
  } else if (o.tokenizer == "bpe") {
    tokenizer_ = std::make_unique<BpeTokenizer>(BpeTokenizer::train(text, o.vocab_size));
  } else {
    if (invalid >= 0)
      std::fprintf(stderr,
                   "train: warning: corpus '%s' is not UTF-8 text (first invalid byte at offset %lld); the char "
                   "tokenizer treats each such byte as a character of its own; --tokenizer bpe is byte-level\n",
                   config_.data.c_str(), static_cast<long long>(invalid));
    tokenizer_ = std::make_unique<CharTokenizer>(CharTokenizer::train(text));
  }
  std::vector<int32_t> tokens = tokenizer_->encode(text);
  data_ = split_tokens(std::move(tokens), config_.val_fraction, o.block, config_.data);
  config_.data = canonical_or_same(config_.data);  // as config.json names it
}

void TextTask::build_model(Device device) {
  device_ = device;
  model_ = make_language_model(config_.text, tokenizer_->vocab_size(), static_cast<uint64_t>(config_.seed));
  if (auto* gpt = dynamic_cast<GPT*>(model_.get()))
    gpt->set_loss_chunk(run_loss_chunk(config_, tokenizer_->vocab_size(), device, &loss_plan_));
  loader_ = std::make_unique<BatchLoader>(data_.train, config_.global_batch(), config_.text.block,
                                          static_cast<uint64_t>(config_.seed));
}

void TextTask::use_blockwise_mlp(int64_t chunk_tokens) {
  if (auto* gpt = dynamic_cast<GPT*>(model_.get())) gpt->set_mlp_chunk_rows(chunk_tokens);
}

std::string TextTask::architecture() const {
  if (config_.text.arch == "lstm") {
    LSTMLanguageModelConfig l = lstm_config(config_.text, tokenizer_->vocab_size());
    nlohmann::ordered_json j = {{"model", "lstm"}, {"vocab_size", l.vocab_size}, {"n_layer", l.n_layer},
                                {"n_embd", l.n_embd}};
    return j.dump();
  }
  GPTConfig g = gpt_config(config_.text, tokenizer_->vocab_size());
  nlohmann::ordered_json j = {{"model", "gpt"},         {"vocab_size", g.vocab_size}, {"block_size", g.block_size},
                              {"n_layer", g.n_layer},   {"n_head", g.n_head},         {"n_embd", g.n_embd},
                              {"bias", g.bias}};
  // GPT-2's MLP is what the key's absence means, so checkpoints from before --mlp still resume.
  if (g.mlp != "gelu") j["mlp"] = g.mlp;
  return j.dump();
}

Tensor TextTask::micro_batch_loss() {
  Batch batch = next_batch(*loader_);
  Tensor inputs = rank_rows(batch.inputs, config_), targets = rank_rows(batch.targets, config_);
  return model_->forward_loss(batch_to(inputs, device_), batch_to(targets, device_));
}

// Mean loss over eval_batches batches of the validation split. The batches come from a generator
// seeded the same way at every evaluation, so successive validation losses measure the model,
// not the draw, and the training stream's randomness is untouched.
Metrics TextTask::evaluate() {
  Generator gen(static_cast<uint64_t>(config_.seed) ^ 0x76616c6964ull);
  NoGrad no_grad;
  model_->eval();
  double total = 0;
  for (int64_t i = 0; i < config_.eval_batches; i++) {
    // The global batch's worth (rank 0 evaluates alone), so the figure does not depend on the ranks.
    Batch batch = sample_batch(*data_.val, config_.global_batch(), config_.text.block, gen);
    total += model_->forward_loss(batch.inputs.to(device_), batch.targets.to(device_)).item();
  }
  model_->train();
  return {{"val_loss", total / static_cast<double>(config_.eval_batches)}};
}

double TextTask::examples_per_micro_batch() const { return static_cast<double>(config_.batch * config_.text.block); }

void TextTask::print_sample(int64_t step) {
  // Start from a newline when the vocabulary has one: text after a line break is typical text.
  std::vector<int32_t> ids;
  try { ids = tokenizer_->encode("\n"); } catch (const Error&) { ids = {0}; }
  Generator gen(static_cast<uint64_t>(config_.seed) + static_cast<uint64_t>(step));
  SamplingOptions options;
  options.tokens = config_.text.sample_tokens;
  std::printf("---- sample at step %lld ----\n", static_cast<long long>(step));
  generate(*model_, ids, options, gen, [&](int32_t id) { std::fputs(tokenizer_->token_bytes(id).c_str(), stdout); std::fflush(stdout); });
  std::printf("\n----\n");
  std::fflush(stdout);
}

std::string TextTask::describe_data() const {
  return "corpus " + config_.data + ": " + format_count(static_cast<double>(data_.train->size())) + " train + " +
         format_count(static_cast<double>(data_.val->size())) + " validation tokens, " + tokenizer_->type() +
         " tokenizer with " + std::to_string(tokenizer_->vocab_size()) + " ids";
}

std::string TextTask::describe_model() const {
  const TextOptions& o = config_.text;
  if (o.arch == "lstm")
    return "LSTM, " + std::to_string(o.layers) + " layers, " + std::to_string(o.embd) + " wide, block " +
           std::to_string(o.block);
  return std::to_string(o.layers) + " layers, " + std::to_string(o.heads) + " heads, " + std::to_string(o.embd) +
         " wide, block " + std::to_string(o.block) + (o.mlp == "gelu" ? "" : ", " + o.mlp + " MLP");
}

std::string TextTask::describe_batch() const {
  return std::to_string(config_.batch) + " x " + std::to_string(config_.text.block);
}

std::string TextTask::next_step_hint(const std::string& out_dir) const { return "sample with: ./generate --ckpt " + out_dir; }

void TextTask::write_run_files(const std::string& out_dir) const {
  std::string path = out_dir + "/tokenizer.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << tokenizer_->to_json() << "\n";
    if (!out) throw Error("cannot write '" + path + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error("cannot write '" + path + "'");
}

TaskCheckpoint TextTask::checkpoint_extras() const {
  TaskCheckpoint extras;
  extras.kind = kind();
  extras.architecture = architecture();
  LoaderPosition position = loader_->position();
  extras.metadata["tokenizer"] = tokenizer_->to_json();
  extras.metadata["loader"] = nlohmann::json{{"rng", position.rng}, {"batches", position.batches}}.dump();
  return extras;
}

void TextTask::restore(const Checkpoint& ckpt) {
  // Checkpoints from before tasks existed keep the loader's position in the loop's state.
  const auto& metadata = ckpt.task.metadata;
  auto entry = metadata.find("loader");
  bool legacy = entry == metadata.end();
  if (legacy) entry = metadata.find("state");
  LoaderPosition position;
  try {
    if (entry == metadata.end()) throw Error("no 'loader' entry");
    nlohmann::json j = nlohmann::json::parse(entry->second);
    position.rng = json_generator_state(j, legacy ? "loader_rng" : "rng");
    position.batches = json_integer(j, legacy ? "loader_batches" : "batches");
  } catch (const std::exception& e) {
    throw Error("checkpoint '" + ckpt.path + "' has a malformed loader position: " + e.what());
  }
  loader_->restore(position);
}

}  // namespace tg
