// The define-by-run autograd engine.
//
// Every differentiable call runs its forward kernel and then `record`s a Node holding what its
// backward needs. `backward(loss)` walks the nodes in reverse order of creation (a valid reverse
// topological order, deterministic, and the order data parallel wants for its buckets) and calls
// each node's backward function.
//
// Gradient convention: the engine hands every backward function one zero-initialised,
// contiguous gradient buffer per input, and backward kernels ADD into it (`+=`). A tensor used by
// two ops therefore gets the sum of both contributions without an extra pass, and a leaf's .grad
// accumulates across backward calls (gradient accumulation) until the optimizer zeroes it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace tg {

// grad_inputs[i] is the gradient buffer of inputs[i] (contiguous, same shape and dtype), or an
// undefined Tensor when that input needs no gradient. Add into the defined ones.
using BackwardFn = std::function<void(const Tensor& grad_output, std::vector<Tensor>& grad_inputs)>;
// The same for a function of several outputs: grad_outputs[j] is the gradient of outputs[j]
// (contiguous, same shape and dtype), zero-filled when no gradient reached that output, so that a
// backward never has to test for it (an LSTM cell whose c is used and whose h is not still runs).
using MultiBackwardFn = std::function<void(const std::vector<Tensor>& grad_outputs, std::vector<Tensor>& grad_inputs)>;

struct Node {
  // Where one input's gradient goes: output `output` of the node that produced it, or the leaf
  // tensor itself.
  struct Edge {
    std::shared_ptr<Node> node;
    int output = 0;
    std::shared_ptr<TensorImpl> leaf;
    Shape shape;
    DType dtype = DType::F32;
    Device device;
    bool needs_grad() const { return node || leaf; }
  };
  // An output's metadata, so the engine can allocate its gradient buffer.
  struct Output {
    Shape shape;
    DType dtype = DType::F32;
    Device device;
  };

  std::string name;
  uint64_t sequence = 0;  // creation order; backward runs from the highest down
  std::vector<Edge> inputs;
  std::vector<Output> outputs;
  MultiBackwardFn backward;  // cleared after it runs unless the graph is retained
};

// Records `output = name(inputs...)` with its backward. Returns `output`, now carrying the node,
// or unchanged when recording is off (NoGrad) or no input needs a gradient. This is the whole
// interface for a new differentiable function: run your forward kernel, then record a lambda
// that captures what the backward needs (see autograd/functions/*.cpp and README.md).
// Pass the ORIGINAL input tensors here, not copies: a raw `x.contiguous()` of a view is a new
// tensor without history, so recording it would cut the graph. Let kernels read the copy and
// capture it for the backward, but record `x`.
Tensor record(const std::string& name, const std::vector<Tensor>& inputs, Tensor output, BackwardFn backward);

// Records `outputs = name(inputs...)`: one node whose backward receives one gradient per output
// (an LSTM cell's (h, c), a fused residual add + LayerNorm's (sum, normalized)). Returns the
// outputs, each carrying the node and its own output index; unchanged when recording is off or no
// input needs a gradient.
std::vector<Tensor> record(const std::string& name, const std::vector<Tensor>& inputs, std::vector<Tensor> outputs,
                           MultiBackwardFn backward);

// True when some input is a leaf that requires grad or carries a grad_fn (and recording is on).
bool any_requires_grad(const std::vector<Tensor>& inputs);

bool grad_enabled();

// Disables recording for its lifetime (optimizer steps, evaluation, sampling).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// Back-propagates from `root`. Without `grad_output` the root must have one element and its
// gradient is 1. With retain_graph=false the saved tensors are freed as each node runs, and a
// second backward through the same graph throws.
void backward(const Tensor& root, const Tensor& grad_output = Tensor(), bool retain_graph = false);

// Calls `hook(grad)` once per backward pass, when the leaf's gradient for that pass is final.
void add_grad_hook(const Tensor& leaf, GradHook hook);

}  // namespace tg
