#include "programs/lib/text_options.h"

#include <sstream>

#include "nn/feedforward.h"
#include "tensor/error.h"

namespace tg {

ModelShape model_preset(const std::string& name) {
  // tiny learns the KJV visibly in minutes on 2 cores; small is nanoGPT's shakespeare_char model;
  // gpt2 is GPT-2 small's shape (124M parameters with GPT-2's 50257-token vocabulary).
  if (name == "tiny") return {4, 4, 128, 64};
  if (name == "small") return {6, 6, 384, 256};
  if (name == "medium") return {8, 8, 512, 512};
  if (name == "gpt2") return {12, 12, 768, 1024};
  throw Error("--model '" + name + "' is not one of tiny|small|medium|gpt2");
}

void add_text_flags(FlagSet& flags, TextOptions& o) {
  flags.add_section("text (FILE is a text file): model, on top of --model's preset");
  flags.add_string("arch", &o.arch,
                   "gpt (a transformer), or lstm (an LSTM language model: --layers layers of --embd units, "
                   "default 2 x 256, block 128; takes no --model preset or --heads)", {"gpt", "lstm"});
  flags.add_int("layers", &o.layers, "transformer blocks (LSTM layers with --arch lstm)", 1, 256, "from --model");
  flags.add_int("heads", &o.heads, "attention heads (must divide --embd)", 1, 256, "from --model");
  flags.add_int("embd", &o.embd, "embedding width (also the LSTM's hidden size)", 1, 16384, "from --model");
  flags.add_int("block", &o.block, "context length in tokens", 1, 65536, "from --model");
  flags.add_float("dropout", &o.dropout, "dropout probability", 0.0, 0.95);
  flags.add_string("mlp", &o.mlp, "the blocks' feed-forward part: gelu (GPT-2's 4C MLP) or swiglu (LLaMA's gated one)",
                   mlp_names());
  flags.add_string("chunked-loss", &o.chunked_loss,
                   "the output layer and loss chunk by chunk over the tokens, never holding all the logits: on, off, "
                   "or auto (on when the logits outweigh the weight or the L2, the planner's rule; --plan shows it)",
                   {"auto", "on", "off"});
  flags.add_string("blockwise", &o.blockwise,
                   "the MLP chunk by chunk over the tokens, its hidden recomputed in backward: auto (as --plan "
                   "decides), on (the planner's chunk), off, or a chunk of N tokens", {}, "auto");

  flags.add_section("text: data and samples");
  flags.add_string("tokenizer", &o.tokenizer, "char (one id per character) or bpe (byte-level BPE trained on the file)",
                   {"char", "bpe"});
  flags.add_int("vocab-size", &o.vocab_size, "BPE vocabulary size, 256 bytes + merges (bpe only)", 257, 65536, "512");
  flags.add_int("sample-tokens", &o.sample_tokens, "tokens per printed sample", 1, 1 << 20);
}

const std::vector<std::string>& text_flag_names() {
  static const std::vector<std::string> names = {"arch", "layers",    "heads",      "embd",         "block",
                                                 "dropout", "mlp", "blockwise", "chunked-loss", "tokenizer", "vocab-size",
                                                 "sample-tokens"};
  return names;
}

// With --arch lstm, the flags that shape a GPT are refused rather than ignored: a run that was
// asked for 8 heads should not quietly train a model without any.
static void resolve_lstm_options(TextOptions& o, const std::string& model, const FlagSet& flags) {
  for (const char* gpt_only : {"heads", "mlp", "blockwise", "chunked-loss"})  // a transformer block's parts, the GPT's lm_head
    if (flags.given(gpt_only))
      throw Error(std::string("--") + gpt_only +
                  " applies to --arch gpt only (an LSTM has no transformer blocks, and its output layer is unchunked)");
  if (flags.given("model") && !model.empty())
    throw Error("--model " + model + " is a GPT preset; with --arch lstm give --layers, --embd and --block "
                "(default 2, 256 and 128)");
  if (o.layers == 0) o.layers = 2;
  if (o.embd == 0) o.embd = 256;
  if (o.block == 0) o.block = 128;
  o.heads = 0;
}

int64_t blockwise_chunk_flag(const std::string& value) {
  if (value == "auto" || value == "on" || value == "off") return 0;
  const bool digits = !value.empty() && value.size() <= 9 && value.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoll(value) == 0)
    throw Error("--blockwise '" + value + "' is not one of auto|on|off or a chunk of 1 to 999999999 tokens");
  return std::stoll(value);
}

// --blockwise on (or a chunk) asks for what the blockwise MLP has; auto quietly runs unfused
// where it cannot apply (run_plan.cpp says so at the start of the run).
static void check_blockwise(const TextOptions& o) {
  if (blockwise_chunk_flag(o.blockwise) == 0 && o.blockwise != "on") return;
  if (o.mlp != "gelu")
    throw Error("--blockwise " + o.blockwise + " runs GPT-2's gelu MLP, and --mlp is " + o.mlp +
                " (give --blockwise off or auto)");
  if (o.dropout > 0) {
    std::ostringstream text;
    text << "--blockwise " << o.blockwise << " has no dropout, and --dropout is " << o.dropout
         << " (give --dropout 0, or --blockwise off or auto)";
    throw Error(text.str());
  }
}

void resolve_text_options(TextOptions& o, std::string& model, const FlagSet& flags, bool gpu) {
  if (o.tokenizer == "char" && flags.given("vocab-size"))
    throw Error("--vocab-size applies to --tokenizer bpe only (the char vocabulary is the file's characters)");
  if (o.tokenizer == "bpe" && o.vocab_size == 0) o.vocab_size = 512;
  if (o.arch == "lstm") return resolve_lstm_options(o, model, flags);
  if (model.empty()) model = gpu ? "small" : "tiny";
  ModelShape preset = model_preset(model);
  if (o.layers == 0) o.layers = preset.layers;
  if (o.heads == 0) o.heads = preset.heads;
  if (o.embd == 0) o.embd = preset.embd;
  if (o.block == 0) o.block = preset.block;
  if (o.embd % o.heads != 0)
    throw Error("--embd " + std::to_string(o.embd) + " is not divisible by --heads " + std::to_string(o.heads));
  check_blockwise(o);
}

void check_text_resume(TextOptions given, const std::string& given_model, const TextOptions& saved,
                       const FlagSet& flags, const std::string& checkpoint_path) {
  // An LSTM run has no preset and no heads: such flags get resolve_text_options' own message.
  const bool gpt = saved.arch != "lstm";
  bool preset_given = gpt && flags.given("model");
  if (preset_given) {
    ModelShape preset = model_preset(given_model);
    if (!flags.given("layers")) given.layers = preset.layers;
    if (!flags.given("heads")) given.heads = preset.heads;
    if (!flags.given("embd")) given.embd = preset.embd;
    if (!flags.given("block")) given.block = preset.block;
  }
  auto locked = [&](const char* name, auto given_value, auto saved_value, bool is_given) {
    if (is_given && given_value != saved_value) {
      std::ostringstream text;
      text << "--" << name << " " << given_value << " differs from the checkpoint's " << saved_value << " in "
           << checkpoint_path << ": a resumed run keeps its model and tokenizer (drop the flag, or start a new run "
           << "with another --out)";
      throw Error(text.str());
    }
  };
  locked("arch", given.arch, saved.arch, flags.given("arch"));
  locked("layers", given.layers, saved.layers, preset_given || flags.given("layers"));
  locked("heads", given.heads, saved.heads, gpt && (preset_given || flags.given("heads")));
  locked("embd", given.embd, saved.embd, preset_given || flags.given("embd"));
  locked("block", given.block, saved.block, preset_given || flags.given("block"));
  locked("mlp", given.mlp, saved.mlp, gpt && flags.given("mlp"));
  locked("tokenizer", given.tokenizer, saved.tokenizer, flags.given("tokenizer"));
  locked("vocab-size", given.vocab_size, saved.vocab_size, flags.given("vocab-size"));
}

void text_options_to_json(const TextOptions& o, nlohmann::ordered_json& j) {
  j["arch"] = o.arch;
  j["layers"] = o.layers;
  j["heads"] = o.heads;
  j["embd"] = o.embd;
  j["block"] = o.block;
  j["dropout"] = o.dropout;
  j["mlp"] = o.mlp;
  j["chunked-loss"] = o.chunked_loss;
  j["blockwise"] = o.blockwise;
  j["tokenizer"] = o.tokenizer;
  j["vocab-size"] = o.vocab_size;
  j["sample-tokens"] = o.sample_tokens;
}

TextOptions text_options_from_json(const nlohmann::json& j) {
  TextOptions o;
  o.arch = j.value("arch", std::string("gpt"));  // absent from configurations written before --arch
  o.layers = j.at("layers").get<int64_t>();
  o.heads = j.at("heads").get<int64_t>();
  o.embd = j.at("embd").get<int64_t>();
  o.block = j.at("block").get<int64_t>();
  o.dropout = j.at("dropout").get<double>();
  o.mlp = j.value("mlp", std::string("gelu"));  // runs from before --mlp existed have GPT-2's
  o.chunked_loss = j.value("chunked-loss", std::string("auto"));  // absent before --chunked-loss
  o.blockwise = j.value("blockwise", std::string("auto"));  // runs from before --blockwise: the planner's choice
  o.tokenizer = j.at("tokenizer").get<std::string>();
  o.vocab_size = j.at("vocab-size").get<int64_t>();
  o.sample_tokens = j.at("sample-tokens").get<int64_t>();
  return o;
}

}  // namespace tg
