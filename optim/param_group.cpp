#include "optim/param_group.h"

#include <cmath>
#include <map>
#include <string>

namespace tg {

std::vector<ParamGroup> weight_decay_groups(const std::vector<Tensor>& params, float weight_decay) {
  ParamGroup decay, no_decay;
  decay.weight_decay = weight_decay;
  for (const Tensor& p : params) (p.dim() >= 2 ? decay : no_decay).params.push_back(p);
  return {decay, no_decay};
}

void check_non_negative(const char* optimizer, const char* what, float value) {
  if (!(value >= 0.0f) || !std::isfinite(value))
    throw Error(std::string(optimizer) + ": " + what + " must be finite and >= 0, got " + std::to_string(value));
}

void check_param_groups(const char* optimizer, const std::vector<ParamGroup>& groups, bool allow_half) {
  std::map<const TensorImpl*, std::string> seen;  // parameter -> "group g, index i"
  for (size_t g = 0; g < groups.size(); g++) {
    std::string group = "group " + std::to_string(g);
    check_non_negative(optimizer, (group + " weight_decay").c_str(), groups[g].weight_decay);
    for (size_t i = 0; i < groups[g].params.size(); i++) {
      const Tensor& p = groups[g].params[i];
      std::string where = group + ", parameter " + std::to_string(i);
      if (!p.defined()) throw Error(std::string(optimizer) + ": " + where + " is an undefined tensor");
      const bool half = p.dtype() == DType::BF16 || p.dtype() == DType::F16;
      if (p.dtype() != DType::F32 && !(half && allow_half))
        throw Error(std::string(optimizer) + ": " + where + (p.name().empty() ? "" : " (" + p.name() + ")") + " has dtype " +
                    dtype_name(p.dtype()) +
                    (allow_half ? ", expected f32, bf16 or f16 (a half parameter gets f32 master weights)"
                                : ", expected f32 (this optimizer keeps no f32 master weights; AdamW does)"));
      auto [it, inserted] = seen.emplace(p.impl_ptr(), where);
      if (!inserted)
        throw Error(std::string(optimizer) + ": " + where + " is the same tensor as " + it->second +
                    "; a parameter may appear only once");
    }
  }
}

}  // namespace tg
