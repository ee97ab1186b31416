// Finite-difference gradient check.
//
// For a function f of some tensors, checks the gradient that autograd computes against central
// differences of the scalar L = sum(f(inputs) * w), where w is a fixed random tensor (so every
// output element matters, with a different weight, which a plain sum would not test).
//
// Kernels are float32, so the differences are too: with eps = 1e-2 the truncation error is
// O(eps^2) and the rounding error about 1e-7 * |L| / eps, both well under the default tolerance
// for inputs of order 1. Ops with kinks (ReLU at 0) need inputs away from the kink.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace tg {

struct GradcheckOptions {
  double eps = 1e-2;
  double atol = 1e-3;
  double rtol = 1e-2;
  uint64_t seed = 1234;  // for the output weights w
};

// Returns "" when every element of every floating-point input that requires grad matches;
// otherwise a message naming the input, the element, the analytic and numeric values.
// The inputs must be CPU f32 tensors; integer inputs (indices) are passed through unchecked, as are
// float inputs with requires_grad false.
std::string gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn, const std::vector<Tensor>& inputs,
                      const GradcheckOptions& options = {});

// One tensor whose gradient to check, named in the report.
struct GradcheckLeaf {
  std::string name;
  Tensor tensor;  // a CPU f32 leaf that requires grad
};

// The general form, for tensors that `fn` reads without taking them as arguments (a module's
// parameters: nn/gradcheck.h): each leaf is perturbed in place and restored, and its .grad is
// put back as it was, so the check leaves no trace.
std::string gradcheck_leaves(const std::function<Tensor()>& fn, const std::vector<GradcheckLeaf>& leaves,
                             const GradcheckOptions& options = {});

// Both at once: the inputs copied as gradcheck does (checked after `leaves`, named "input k"),
// and `leaves` perturbed in place.
std::string gradcheck_with_leaves(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                  const std::vector<Tensor>& inputs, std::vector<GradcheckLeaf> leaves,
                                  const GradcheckOptions& options = {});

}  // namespace tg
