#include "autograd/engine.h"

#include <atomic>
#include <queue>
#include <unordered_map>

#include "ops/profiler.h"

namespace tg {

static thread_local bool t_grad_enabled = true;
static std::atomic<uint64_t> g_next_sequence{0};

bool grad_enabled() { return t_grad_enabled; }
NoGrad::NoGrad() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGrad::~NoGrad() { t_grad_enabled = previous_; }

static bool needs_grad(const Tensor& t) { return t.defined() && (t.requires_grad() || t.grad_fn()); }

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (needs_grad(t)) return true;
  return false;
}

std::vector<Tensor> record(const std::string& name, const std::vector<Tensor>& inputs, std::vector<Tensor> outputs,
                           MultiBackwardFn backward) {
  if (!any_requires_grad(inputs)) return outputs;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->sequence = g_next_sequence++;
  node->backward = std::move(backward);
  for (const Tensor& t : outputs) {
    TG_CHECK(t.defined(), "record('" + name + "'): an output is an undefined tensor");
    node->outputs.push_back({t.shape(), t.dtype(), t.device()});
  }
  for (const Tensor& t : inputs) {
    Node::Edge edge;
    if (t.defined()) {
      edge.shape = t.shape();
      edge.dtype = t.dtype();
      edge.device = t.device();
      if (t.grad_fn()) {
        edge.node = t.grad_fn();
        edge.output = t.grad_fn_output();
      } else if (t.requires_grad()) {
        edge.leaf = t.impl_shared();
      }
    }
    node->inputs.push_back(std::move(edge));
  }
  // Each output is a fresh handle so that recording never changes a tensor the caller also holds.
  std::vector<Tensor> results;
  for (size_t j = 0; j < outputs.size(); j++) {
    results.push_back(outputs[j].detach());
    results.back().set_grad_fn(node, static_cast<int>(j));
  }
  return results;
}

Tensor record(const std::string& name, const std::vector<Tensor>& inputs, Tensor output, BackwardFn backward) {
  MultiBackwardFn one = [backward = std::move(backward)](const std::vector<Tensor>& grad_outputs,
                                                         std::vector<Tensor>& grad_inputs) {
    backward(grad_outputs[0], grad_inputs);
  };
  return record(name, inputs, std::vector<Tensor>{std::move(output)}, std::move(one))[0];
}

void add_grad_hook(const Tensor& leaf, GradHook hook) {
  TG_CHECK(leaf.is_leaf() && leaf.requires_grad(), "add_grad_hook: hooks attach to leaf tensors that require grad");
  leaf.impl_ptr()->grad_hooks.push_back(std::move(hook));
}

// Adds `grad` into the leaf's .grad, creating it on first use.
static Tensor leaf_grad_buffer(const std::shared_ptr<TensorImpl>& leaf, const Node::Edge& edge) {
  if (!leaf->grad) leaf->grad = Tensor::zeros(edge.shape, edge.dtype, edge.device).impl_shared();
  return Tensor(leaf->grad);
}

void backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  TG_CHECK(root.defined(), "backward: called on an undefined tensor");
  if (!root.grad_fn() && !root.requires_grad())
    throw Error("backward: the tensor has no gradient history (it was computed under NoGrad, or from tensors that "
                "do not require grad)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    TG_CHECK(root.numel() == 1, "backward: a root of shape " + shape_str(root.shape()) +
                                    " needs an explicit grad_output (only one-element roots get an implicit 1)");
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  TG_CHECK(seed.shape() == root.shape(), "backward: grad_output shape " + shape_str(seed.shape()) +
                                             " does not match the root's " + shape_str(root.shape()));

  if (!root.grad_fn()) {  // the root is itself a leaf
    Node::Edge edge{nullptr, 0, root.impl_shared(), root.shape(), root.dtype(), root.device()};
    Tensor g = leaf_grad_buffer(root.impl_shared(), edge);
    Tensor add = seed.to(g.dtype());
    std::vector<float> a = g.to_vector(), b = add.to_vector();
    for (size_t i = 0; i < a.size(); i++) a[i] += b[i];
    g.copy_(Tensor::from_vector(a, g.shape(), g.dtype()));
    for (auto& hook : root.impl_ptr()->grad_hooks) hook(g);
    return;
  }

  // Count, for every node and every leaf reachable from the root, how many edges point at it, so
  // that a node runs only once all its consumers have added their contributions, and a leaf's
  // hooks fire only once its gradient is complete for this pass.
  std::unordered_map<Node*, int> pending;
  std::unordered_map<TensorImpl*, int> leaf_pending;
  std::vector<Node*> stack{root.grad_fn().get()};
  pending[root.grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Node::Edge& edge : node->inputs) {
      if (edge.leaf) leaf_pending[edge.leaf.get()]++;
      if (!edge.node) continue;
      if (pending.find(edge.node.get()) == pending.end()) {
        pending[edge.node.get()] = 0;
        stack.push_back(edge.node.get());
      }
      pending[edge.node.get()]++;
    }
  }

  // The gradient of every output of every node still to run, allocated when first added into.
  std::unordered_map<Node*, std::vector<Tensor>> node_grads;
  auto grads_of = [&node_grads](Node* node) -> std::vector<Tensor>& {
    std::vector<Tensor>& grads = node_grads[node];
    grads.resize(node->outputs.size());
    return grads;
  };
  grads_of(root.grad_fn().get())[root.grad_fn_output()] = seed.contiguous();
  auto later_first = [](const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) { return a->sequence < b->sequence; };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, decltype(later_first)> ready(later_first);
  ready.push(root.grad_fn());

  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    if (!node->backward)
      throw Error("backward: trying to backward through the graph a second time (through '" + node->name +
                  "'); its saved tensors were freed after the first backward. Pass retain_graph=true to the first "
                  "call if you need to backward twice");
    std::vector<Tensor> grad_inputs(node->inputs.size());
    for (size_t i = 0; i < node->inputs.size(); i++) {
      const Node::Edge& edge = node->inputs[i];
      if (edge.node) {
        Tensor& g = grads_of(edge.node.get())[edge.output];
        if (!g.defined()) g = Tensor::zeros(edge.shape, edge.dtype, edge.device);
        grad_inputs[i] = g;
      } else if (edge.leaf) {
        grad_inputs[i] = leaf_grad_buffer(edge.leaf, edge);
      }
    }
    std::vector<Tensor> grad_outputs = std::move(grads_of(node.get()));
    node_grads.erase(node.get());
    for (size_t j = 0; j < grad_outputs.size(); j++)  // outputs no gradient reached contribute zeros
      if (!grad_outputs[j].defined())
        grad_outputs[j] = Tensor::zeros(node->outputs[j].shape, node->outputs[j].dtype, node->outputs[j].device);
    {
      ops::NodeScope profiled(node->name);  // the profiler files this node's kernels under its name
      node->backward(grad_outputs, grad_inputs);
    }
    if (!retain_graph) node->backward = nullptr;  // frees the saved tensors now, not at graph death

    for (const Node::Edge& edge : node->inputs) {
      if (edge.node && --pending[edge.node.get()] == 0) ready.push(edge.node);
      if (edge.leaf && --leaf_pending[edge.leaf.get()] == 0)
        for (auto& hook : edge.leaf->grad_hooks) hook(Tensor(edge.leaf->grad));
    }
  }
}

}  // namespace tg
