#include "nn/feedforward.h"

#include <functional>

#include "nn/mlp.h"
#include "nn/swiglu.h"
#include "tensor/error.h"

namespace tg {

namespace {

using MakeFeedForward = std::function<std::shared_ptr<FeedForward>(int64_t, float, bool, Generator*)>;

// The one table of variants: a name and how to build it.
const std::vector<std::pair<std::string, MakeFeedForward>>& variants() {
  static const std::vector<std::pair<std::string, MakeFeedForward>> table = {
      {"gelu", [](int64_t C, float p, bool bias, Generator* gen) { return std::make_shared<MLP>(C, p, bias, gen); }},
      {"swiglu", [](int64_t C, float p, bool bias, Generator* gen) { return std::make_shared<SwiGLU>(C, p, bias, gen); }},
  };
  return table;
}

}  // namespace

const std::vector<std::string>& mlp_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& entry : variants()) out.push_back(entry.first);
    return out;
  }();
  return names;
}

std::shared_ptr<FeedForward> make_mlp(const std::string& name, int64_t n_embd, float dropout_p, bool bias,
                                      Generator* gen) {
  for (const auto& [known, make] : variants())
    if (known == name) return make(n_embd, dropout_p, bias, gen);
  std::string list;
  for (const std::string& known : mlp_names()) list += (list.empty() ? "" : "|") + known;
  throw Error("mlp '" + name + "' is not one of " + list);
}

}  // namespace tg
