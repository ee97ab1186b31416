#include "programs/lib/generate_program.h"

#include <omp.h>

#include <cstdio>

#include "data/tokenizer.h"
#include "nn/language_model.h"
#include "tensor/device.h"
#include "tensor/error.h"
#include "programs/lib/checkpoint.h"
#include "programs/lib/flags.h"
#include "programs/lib/run_config.h"
#include "programs/lib/run_setup.h"
#include "programs/lib/sampling.h"
#include "programs/lib/text_task.h"


namespace tg {

namespace {

struct GenerateOptions {
  std::string ckpt, prompt, device = "auto";
  int64_t tokens = 500, top_k = 200, seed = 1337, threads = 0;
  double temperature = 0.8;
};

int generate(int argc, char** argv) {
  GenerateOptions o;
  FlagSet flags("./generate", "--ckpt DIR|FILE [flags]",
                "Streams text from a ./train checkpoint: a run folder (its best checkpoint) or a .safetensors file.\n"
                "\nexample:\n  ./generate --ckpt runs/kjv --prompt 'And God said' --tokens 300\n");
  flags.add_string("ckpt", &o.ckpt, "run folder or checkpoint file", {}, "required");
  flags.add_string("prompt", &o.prompt, "text to continue", {}, "a newline");
  flags.add_int("tokens", &o.tokens, "tokens to generate", 1, 1 << 24);
  flags.add_float("temperature", &o.temperature, "softmax temperature (0: always the most likely token)", 0.0, 100.0);
  flags.add_int("top-k", &o.top_k, "sample among the k most likely tokens (0: all)", 0, 1 << 24);
  flags.add_int("seed", &o.seed, "sampling seed", 0, INT64_MAX);
  flags.add_string("device", &o.device, "cpu, cuda, cuda:N, or auto (cuda when a GPU is visible)");
  flags.add_int("threads", &o.threads, "OpenMP threads", 1, 4096, "all cores");
  std::vector<std::string> positional = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.help().c_str());
    return 0;
  }
  if (!positional.empty()) throw Error("unexpected argument '" + positional[0] + "'; see ./generate --help");
  if (o.ckpt.empty()) throw Error("--ckpt is required (a ./train run folder such as runs/kjv, or a .safetensors file)");
  if (o.device == "auto") o.device = cuda_available() ? "cuda" : "cpu";
  Device device = device_from_flag(o.device);
  set_device(device);
  if (o.threads > 0) omp_set_num_threads(static_cast<int>(o.threads));

  std::string path = checkpoint_file_for(o.ckpt);
  Checkpoint ckpt = load_checkpoint(path);
  if (ckpt.task.kind != "text")
    throw Error(path + " is " + describe_checkpoint_kind(ckpt.task.kind) + "; ./generate samples text models" +
                (ckpt.task.kind == "image" ? " — use ./classify" : ""));
  RunConfig config = config_from_json(ckpt.config_json, path);
  auto tokenizer_json = ckpt.task.metadata.find("tokenizer");
  if (tokenizer_json == ckpt.task.metadata.end())
    throw Error("checkpoint '" + path + "' holds no tokenizer (its metadata has no 'tokenizer')");
  std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(tokenizer_json->second, path);

  // The architecture the run trained (config.json's --arch; GPT for runs from before it existed).
  TextOptions shape = config.text;
  shape.dropout = 0.0;
  std::unique_ptr<LanguageModel> model = make_language_model(shape, tokenizer->vocab_size(), 0);
  load_full_precision_weights(*model, ckpt, static_cast<float>(config.weight_decay));
  model->to(device);  // f32 on either device: sampling is not worth a half-precision path

  std::vector<int32_t> ids;
  try {
    ids = tokenizer->encode(o.prompt.empty() ? "\n" : o.prompt);
  } catch (const Error& e) {
    if (!o.prompt.empty()) throw Error(std::string("--prompt: ") + e.what());
    ids = {0};  // a vocabulary without a newline: start from its first symbol
  }
  std::fputs(o.prompt.c_str(), stdout);
  std::fflush(stdout);
  Generator gen(static_cast<uint64_t>(o.seed));
  SamplingOptions options;
  options.tokens = o.tokens;
  options.temperature = o.temperature;
  options.top_k = o.top_k;
  tg::generate(*model, ids, options, gen, [&](int32_t id) {
    std::fputs(tokenizer->token_bytes(id).c_str(), stdout);
    std::fflush(stdout);
  });
  std::printf("\n");
  return 0;
}

}  // namespace

int generate_main(int argc, char** argv) {
  try {
    return generate(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "generate: %s\n", e.what());
    return 1;
  }
}

}  // namespace tg
