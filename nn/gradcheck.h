// Finite-difference gradient check of a module: its parameters and its inputs in one call.
//
//   Linear layer(5, 3, true, &gen);
//   std::string failures = gradcheck_module(layer, [&](const std::vector<Tensor>& in) {
//     return layer.forward(in[0]);
//   }, {x.requires_grad_(true)});
//   EXPECT_EQ(failures, "");
//
// The parameters are perturbed in place (they are what the module reads) and restored, and their
// .grad is left as it was; the inputs are copied as autograd/gradcheck.h does. The parameters must
// be f32 on the CPU: check a bf16 module by casting it to f32 first.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "nn/module.h"

namespace tg {

// Checks every parameter of `module` (or only those whose names are in `names`, which must exist)
// and every input that requires grad. Returns "" when all match, otherwise a report naming the
// parameter or input and the elements out of tolerance.
inline std::string gradcheck_module(const Module& module, const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                    const std::vector<Tensor>& inputs, const std::vector<std::string>& names = {},
                                    const GradcheckOptions& options = {}) {
  std::vector<GradcheckLeaf> leaves;
  NamedTensors parameters = module.named_parameters();
  for (const std::string& name : names) {
    bool found = false;
    for (const auto& [parameter_name, tensor] : parameters) found = found || parameter_name == name;
    TG_CHECK(found, "gradcheck_module: the module has no parameter named '" + name + "'");
  }
  for (const auto& [name, tensor] : parameters) {
    bool wanted = names.empty();
    for (const std::string& n : names) wanted = wanted || n == name;
    if (wanted) leaves.push_back({name, tensor});
  }
  // Parameters left out of `names` still receive gradients in the backward: put theirs back too.
  std::vector<Tensor> saved_grads;
  for (const auto& [name, tensor] : parameters) saved_grads.push_back(tensor.grad());
  std::string report = gradcheck_with_leaves(fn, inputs, leaves, options);
  for (size_t k = 0; k < parameters.size(); k++) Tensor(parameters[k].second).set_grad(saved_grads[k]);
  return report;
}

}  // namespace tg
