// The tiny-GPT PyTorch fixture (tests/reference/make_gpt_fixture.py): the model built from its
// config and loaded with its weights (the relative error the tolerances are stated in is
// test::rel_error, tests/cuda_test_util.h).
// Shared by the CPU parity test and the GPU one.
#pragma once
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nn/gpt.h"
#include "tensor/safetensors.h"
#include "tests/cuda_test_util.h"

namespace tg::test {

inline std::string fixture_path() {
  // Tests are built from the repository root, so __FILE__ is "tests/gpt_fixture.h".
  std::string here = __FILE__;
  return here.substr(0, here.find_last_of('/') + 1) + "reference/gpt_tiny.safetensors";
}

inline int64_t meta_int(const SafetensorsData& data, const std::string& key) { return std::stoll(data.metadata.at(key)); }
inline float meta_float(const SafetensorsData& data, const std::string& key) { return std::stof(data.metadata.at(key)); }

struct Fixture {
  SafetensorsData data = load_safetensors(fixture_path());
  GPTConfig config;
  std::shared_ptr<GPT> model;

  Fixture() {
    config.vocab_size = meta_int(data, "vocab_size");
    config.block_size = meta_int(data, "block_size");
    config.n_layer = meta_int(data, "n_layer");
    config.n_head = meta_int(data, "n_head");
    config.n_embd = meta_int(data, "n_embd");
    config.dropout = meta_float(data, "dropout");
    config.bias = data.metadata.at("bias") == "True";
    model = std::make_shared<GPT>(config, 0);
    // Everything that is not an input, an output or a gradient is a weight; loading them strictly
    // checks that the fixture's parameter names and shapes are exactly the model's.
    const std::set<std::string> not_weights = {"idx", "targets", "logits", "loss", "adamw_losses"};
    NamedTensors weights;
    for (const auto& [name, tensor] : data.tensors)
      if (!not_weights.count(name) && name.rfind("grad.", 0) != 0) weights.emplace_back(name, tensor);
    model->load_state_dict(weights, true);
  }
};

}  // namespace tg::test
