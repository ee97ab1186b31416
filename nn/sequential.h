// Sequential: modules applied one after another, as torch.nn.Sequential.
//
// Children are named "0", "1", ... by default (PyTorch's Sequential names) or by the name given
// (torchvision's "conv1", "layer1", "fc"), so a model built here and the same model built in
// PyTorch have identical state-dict names. Module has no virtual forward (nn/module.h), so each
// step keeps a small closure that calls its module's own `forward`.
//
// One fusion happens here: a BatchNorm2d immediately followed by a ReLU runs as one fused
// BatchNorm+ReLU pass (forward and backward), which saves a full read and write of the feature
// map. The ReLU stays registered, so the names and indices still match PyTorch's.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/batchnorm.h"
#include "nn/module.h"
#include "nn/relu.h"

namespace tg {

class Sequential : public Module {
 public:
  // Appends `module` under `name` ("" means its index) and returns it.
  template <class M>
  std::shared_ptr<M> add(std::shared_ptr<M> module, std::string name = "") {
    if (name.empty()) name = std::to_string(steps_.size());
    register_module(name, module);
    if constexpr (std::is_same_v<M, ReLU>) {
      if (!steps_.empty() && steps_.back().batchnorm) {
        std::shared_ptr<BatchNorm2d> bn = steps_.back().batchnorm;
        steps_.back().run = [bn](const Tensor& x) { return bn->forward_relu(x); };
        steps_.back().batchnorm = nullptr;
        steps_.push_back({[](const Tensor& x) { return x; }, nullptr});  // fused into the step before
        return module;
      }
    }
    Step step{[module](const Tensor& x) { return module->forward(x); }, nullptr};
    if constexpr (std::is_same_v<M, BatchNorm2d>) step.batchnorm = module;
    steps_.push_back(std::move(step));
    return module;
  }

  Tensor forward(const Tensor& x) const {
    Tensor h = x;
    for (const Step& step : steps_) h = step.run(h);
    return h;
  }

  size_t size() const { return steps_.size(); }

 private:
  struct Step {
    std::function<Tensor(const Tensor&)> run;
    std::shared_ptr<BatchNorm2d> batchnorm;  // set while a following ReLU could still fuse into it
  };
  std::vector<Step> steps_;
};

}  // namespace tg
