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

std::string gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                      const GradcheckOptions& options) {
  // Work on private copies so the caller's tensors are untouched and are leaves.
  std::vector<Tensor> xs;
  for (const Tensor& t : inputs) {
    Tensor copy = t.clone();
    if (t.requires_grad()) copy.requires_grad_(true);
    xs.push_back(copy);
  }

  Tensor y = fn(xs);
  Generator gen(options.seed);
  Tensor w = Tensor::randn(y.shape(), &gen);
  std::vector<float> w_values = w.to_vector();
  if (!y.grad_fn()) return "gradcheck: the output has no gradient history; no input reached it through recorded ops";
  backward(y, w);

  std::ostringstream report;
  int failures = 0;
  for (size_t k = 0; k < xs.size(); k++) {
    Tensor& x = xs[k];
    if (!x.requires_grad()) continue;
    std::vector<float> analytic = x.grad().defined() ? x.grad().to_vector() : std::vector<float>(x.numel(), 0.0f);
    float* p = x.data<float>();
    for (int64_t i = 0; i < x.numel(); i++) {
      float original = p[i];
      double numeric;
      {
        NoGrad no_grad;
        p[i] = static_cast<float>(original + options.eps);
        double plus = weighted_sum(fn(xs), w_values);
        p[i] = static_cast<float>(original - options.eps);
        double minus = weighted_sum(fn(xs), w_values);
        p[i] = original;
        // Divide by the step actually taken after rounding to float.
        double step = static_cast<double>(static_cast<float>(original + options.eps)) -
                      static_cast<double>(static_cast<float>(original - options.eps));
        numeric = (plus - minus) / step;
      }
      double error = std::fabs(numeric - analytic[i]);
      if (!(error <= options.atol + options.rtol * std::fabs(numeric))) {
        if (failures < 5)
          report << "input " << k << " " << shape_str(x.shape()) << " element " << i << ": analytic " << analytic[i]
                 << ", numeric " << numeric << ", |diff| " << error << "\n";
        failures++;
      }
    }
  }
  if (failures) report << failures << " element(s) out of tolerance (atol " << options.atol << ", rtol " << options.rtol << ")";
  return report.str();
}

}  // namespace tg
