#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/engine.h"

namespace tg {

// L = sum(y * w) accumulated in double so that the reduction adds no error of its own.
static double weighted_sum(const Tensor& y, const std::vector<float>& w) {
  std::vector<float> v = y.to_vector();
  double total = 0;
  for (size_t i = 0; i < v.size(); i++) total += static_cast<double>(v[i]) * w[i];
  return total;
}

std::string gradcheck_leaves(const std::function<Tensor()>& fn, const std::vector<GradcheckLeaf>& leaves,
                             const GradcheckOptions& options) {
  for (const GradcheckLeaf& leaf : leaves)
    TG_CHECK(leaf.tensor.is_leaf() && leaf.tensor.requires_grad() && leaf.tensor.dtype() == DType::F32 &&
                 leaf.tensor.device().is_cpu() && leaf.tensor.is_contiguous(),
             "gradcheck: '" + leaf.name + "' must be a contiguous CPU f32 leaf that requires grad");
  // Start every leaf's gradient from nothing, and put the caller's back at the end.
  std::vector<Tensor> saved_grads;
  for (GradcheckLeaf leaf : leaves) {
    saved_grads.push_back(leaf.tensor.grad());
    leaf.tensor.set_grad(Tensor());
  }
  std::vector<std::vector<float>> analytic;
  Tensor y = fn();
  if (!y.grad_fn()) {
    for (size_t k = 0; k < leaves.size(); k++) Tensor(leaves[k].tensor).set_grad(saved_grads[k]);
    return "gradcheck: the output has no gradient history; no checked tensor reached it through recorded ops";
  }
  Generator gen(options.seed);
  std::vector<float> w_values = Tensor::randn(y.shape(), &gen).to_vector();
  backward(y, Tensor::from_vector(w_values, y.shape()));
  for (size_t k = 0; k < leaves.size(); k++) {
    Tensor x = leaves[k].tensor;
    analytic.push_back(x.grad().defined() ? x.grad().to_vector() : std::vector<float>(x.numel(), 0.0f));
    x.set_grad(saved_grads[k]);
  }

  std::ostringstream report;
  int failures = 0;
  for (size_t k = 0; k < leaves.size(); k++) {
    const Tensor& x = leaves[k].tensor;
    float* p = static_cast<float*>(x.data_raw());
    for (int64_t i = 0; i < x.numel(); i++) {
      float original = p[i];
      double numeric;
      {
        NoGrad no_grad;
        p[i] = static_cast<float>(original + options.eps);
        double plus = weighted_sum(fn(), w_values);
        p[i] = static_cast<float>(original - options.eps);
        double minus = weighted_sum(fn(), w_values);
        p[i] = original;
        // Divide by the step actually taken after rounding to float.
        double step = static_cast<double>(static_cast<float>(original + options.eps)) -
                      static_cast<double>(static_cast<float>(original - options.eps));
        numeric = (plus - minus) / step;
      }
      double error = std::fabs(numeric - analytic[k][i]);
      if (!(error <= options.atol + options.rtol * std::fabs(numeric))) {
        if (failures < 5)
          report << leaves[k].name << " " << shape_str(x.shape()) << " element " << i << ": analytic " << analytic[k][i]
                 << ", numeric " << numeric << ", |diff| " << error << "\n";
        failures++;
      }
    }
  }
  if (failures) report << failures << " element(s) out of tolerance (atol " << options.atol << ", rtol " << options.rtol << ")";
  return report.str();
}

std::string gradcheck_with_leaves(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                  const std::vector<Tensor>& inputs, std::vector<GradcheckLeaf> leaves,
                                  const GradcheckOptions& options) {
  // Work on private copies so the caller's tensors are untouched and are leaves.
  std::vector<Tensor> xs;
  for (size_t k = 0; k < inputs.size(); k++) {
    Tensor copy = inputs[k].clone();
    if (inputs[k].requires_grad()) {
      copy.requires_grad_(true);
      leaves.push_back({"input " + std::to_string(k), copy});
    }
    xs.push_back(copy);
  }
  return gradcheck_leaves([&] { return fn(xs); }, leaves, options);
}

std::string gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                      const GradcheckOptions& options) {
  return gradcheck_with_leaves(fn, inputs, {}, options);
}

}  // namespace tg
