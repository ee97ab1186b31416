// The text task's settings: the GPT's shape and its presets, the tokenizer, the validation split
// and the printed samples. Their flags appear under "text" in ./train --help; their config.json
// keys are the flag names, in the same flat object as the loop's.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "programs/lib/flags.h"

namespace tg {

struct TextOptions {
  // The architecture: "gpt" (nn/gpt.h) or "lstm" (nn/lstm_lm.h: --layers LSTM layers of --embd
  // hidden units; no presets or heads).
  std::string arch = "gpt";
  // Model, on top of the preset that --model (RunConfig::model) names. 0 means "from the preset".
  int64_t layers = 0, heads = 0, embd = 0, block = 0;
  double dropout = 0.0;
  std::string mlp = "gelu";  // the blocks' feed-forward part, one of mlp_names() (nn/feedforward.h)
  // The blocks' MLP run blockwise (programs/lib/run_plan.h): "auto" follows the planner's verdict,
  // "on" takes the planner's chunk whatever its verdict, "off" is the unfused path, and a number is
  // a chunk of that many tokens. An execution choice: it does not change the model.
  std::string blockwise = "auto";

  // Data.
  std::string tokenizer = "char";
  int64_t vocab_size = 0;  // bpe only; 0 means 512

  int64_t sample_tokens = 200;  // tokens per printed sample

  // The GPT's output layer and loss chunk by chunk over the tokens (nn/planner.h:
  // plan_output_layer): "on", "off", or "auto", on when the planner chunks them.
  std::string chunked_loss = "auto";
};

// The preset's (layers, heads, embd, block); throws for an unknown name.
struct ModelShape { int64_t layers, heads, embd, block; };
ModelShape model_preset(const std::string& name);

// Registers the text flags, bound to `options`, each under a section of its own.
void add_text_flags(FlagSet& flags, TextOptions& options);
// Their names, so that another task can refuse them by name.
const std::vector<std::string>& text_flag_names();

// Fills what the flags left open (the preset `model`, itself tiny on a CPU and small on a GPU when
// empty; with --arch lstm, 2 layers of 256 and block 128) and checks what depends on several flags
// (--embd divisible by --heads, --vocab-size only with bpe, no GPT-only flag with --arch lstm).
void resolve_text_options(TextOptions& options, std::string& model, const FlagSet& flags, bool gpu);

// On --resume: throws naming the flag and the checkpoint when a flag given again changes what
// defines the model or its tokens (a resumed run keeps both). `given` holds the flags as parsed
// (a --model `given_model` given again sets the shape flags it implies), `saved` the checkpoint's.
void check_text_resume(TextOptions given, const std::string& given_model, const TextOptions& saved,
                       const FlagSet& flags, const std::string& checkpoint_path);

// The chunk that --blockwise names in tokens: 0 for auto, on and off, the number otherwise.
int64_t blockwise_chunk_flag(const std::string& value);

// The config.json keys (the flag names) into, and out of, the run's flat JSON object. Reading
// throws nlohmann's exception for a missing or mistyped key (the caller names the file).
void text_options_to_json(const TextOptions& options, nlohmann::ordered_json& json);
TextOptions text_options_from_json(const nlohmann::json& json);

}  // namespace tg
