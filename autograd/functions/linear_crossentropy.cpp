#include "autograd/functions/linear_crossentropy.h"

#include <algorithm>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "ops/check.h"
#include "ops/crossentropy.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"

namespace tg {

namespace {

const char* kOp = "linear_cross_entropy";

// The shapes of the call: x (N, C) or (B, T, C), weight (V, C), bias (V), targets x's shape less C.
void check_arguments(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                     int64_t chunk_rows) {
  ops::check_defined(kOp, x, "x");
  ops::check_defined(kOp, weight, "weight");
  ops::check_defined(kOp, targets, "targets");
  if (x.dim() != 2 && x.dim() != 3)
    throw Error(std::string(kOp) + ": x has shape " + shape_str(x.shape()) + ", expected (N, C) or (B, T, C)");
  ops::check_dim(kOp, weight, "weight", 2);
  if (weight.size(1) != x.size(-1))
    throw Error(std::string(kOp) + ": weight " + shape_str(weight.shape()) + " must be (V, C) with C = " +
                std::to_string(x.size(-1)) + ", x's last dimension");
  ops::check_same_dtype(kOp, x, "x", weight, "weight");
  if (bias.defined()) {
    ops::check_shape(kOp, bias, "bias", {weight.size(0)}, "one per row of weight");
    ops::check_same_dtype(kOp, x, "x", bias, "bias");
  }
  ops::check_dtype(kOp, targets, "targets", DType::I32);
  Shape rows(x.shape().begin(), x.shape().end() - 1);
  ops::check_shape(kOp, targets, "targets", rows, "one class index per row of x");
  if (chunk_rows < 1) throw Error(std::string(kOp) + ": chunk_rows must be at least 1, found " + std::to_string(chunk_rows));
}

// The targets that count towards the mean, chunk by chunk (and checked here, where the position
// can be named in the whole batch rather than in its chunk). One host copy of N ints.
std::vector<int64_t> counted_targets(const Tensor& targets, int64_t V, int64_t chunk_rows, int32_t ignore_index) {
  Tensor host = targets.device().is_cpu() ? targets.contiguous() : targets.to(Device::cpu());
  const int32_t* t = host.data<int32_t>();
  const int64_t N = host.numel();
  std::vector<int64_t> counts;
  for (int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
    int64_t count = 0;
    for (int64_t i = r0; i < std::min(N, r0 + chunk_rows); i++) {
      if (t[i] == ignore_index) continue;
      if (t[i] < 0 || t[i] >= V)
        throw Error(std::string(kOp) + ": targets" + ops::position_str(i, targets.shape()) + " = " +
                    std::to_string(t[i]) + " is not a class index in [0, " + std::to_string(V) +
                    ") nor ignore_index (" + std::to_string(ignore_index) + ")");
      count++;
    }
    counts.push_back(count);
  }
  return counts;
}

}  // namespace

Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                            int64_t chunk_rows, int32_t ignore_index, float label_smoothing) {
  check_arguments(x, weight, bias, targets, chunk_rows);
  const int64_t C = x.size(-1), V = weight.size(0), N = targets.numel();
  const Device device = x.device();
  Tensor x2 = x.contiguous().detach().view({N, C});
  Tensor w = weight.contiguous().detach();
  Tensor b = bias.defined() ? bias.contiguous().detach() : Tensor();
  Tensor t = targets.contiguous().view({N});

  const std::vector<int64_t> counts = counted_targets(t, V, chunk_rows, ignore_index);
  int64_t total = 0;
  for (int64_t count : counts) total += count;

  // Only the gradients some input needs are formed (none under NoGrad).
  Tensor dx, dw, db;
  if (any_requires_grad({x})) dx = Tensor::empty({N, C}, x.dtype(), device);  // each chunk writes its rows
  if (any_requires_grad({weight})) dw = Tensor::empty({V, C}, weight.dtype(), device);  // first chunk =, then +=
  if (b.defined() && any_requires_grad({bias})) db = Tensor::zeros({V}, bias.dtype(), device);
  const bool gradients = dx.defined() || dw.defined() || db.defined();

  Tensor loss = Tensor::zeros({}, DType::F32, device);
  Tensor logits = Tensor::empty({std::min(chunk_rows, N), V}, x.dtype(), device);  // reused by every chunk
  for (int64_t chunk = 0, r0 = 0; r0 < N; chunk++, r0 += chunk_rows) {
    const int64_t m = std::min(chunk_rows, N - r0);
    // The chunk's share of the mean: its loss_c averages its own counts[chunk] targets.
    const float share = total > 0 ? static_cast<float>(counts[chunk]) / static_cast<float>(total) : 0.0f;
    Tensor x_c = x2.narrow(0, r0, m), t_c = t.narrow(0, r0, m);
    Tensor logits_c = logits.narrow(0, 0, m);
    ops::linear(logits_c, x_c, w, b);
    Tensor loss_c = Tensor::empty({}, DType::F32, device), lse_c = Tensor::empty({m}, DType::F32, device);
    ops::crossentropy_forward(loss_c, lse_c, logits_c, t_c, ignore_index, label_smoothing);
    ops::scale_backward(loss, loss_c, share);  // loss += share * loss_c, on the device
    if (!gradients) continue;
    // d(logits_c) = (softmax - onehot) * share / counts[chunk] = (softmax - onehot) / total.
    ops::crossentropy_backward_inplace(logits_c, Tensor::scalar(share, DType::F32, device), t_c, lse_c, ignore_index,
                                       label_smoothing);
    if (dx.defined()) {  // dx_c (m, C) = dlogits_c (m, V) @ W (V, C)
      Tensor dx_c = dx.narrow(0, r0, m);
      ops::matmul(dx_c, logits_c, w);
    }
    if (dw.defined()) ops::matmul(dw, logits_c, x_c, true, false, chunk == 0 ? 0.0f : 1.0f);  // dW += dlogits_c^T x_c
    if (db.defined()) ops::column_sums_accumulate(db, logits_c);
  }
  if (!gradients) return loss;
  // The backward scales the saved gradients by the upstream gradient of the loss (a scalar; read on
  // the host, one wait on CUDA per step) and adds them into the engine's buffers.
  return record(kOp, {x, weight, bias, targets}, loss, [dx, dw, db](const Tensor& dloss, std::vector<Tensor>& g) {
    const float s = dloss.item();
    if (g[0].defined() && dx.defined()) {
      Tensor gx = g[0].view(dx.shape());
      ops::scale_backward(gx, dx, s);
    }
    if (g[1].defined() && dw.defined()) ops::scale_backward(g[1], dw, s);
    if (g[2].defined() && db.defined()) ops::scale_backward(g[2], db, s);
  });
}

}  // namespace tg
