#include "dist/sync_batchnorm.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/engine.h"
#include "nn/batchnorm.h"
#include "ops/batchnorm.h"
#include "ops/check.h"
#include "ops/f32_staging.h"

namespace tg::dist {

// Every rank's `values` (the same count on each), in rank order: doubles travel as pairs of i32,
// so that they arrive bit for bit and every rank merges the same numbers.
static std::vector<std::vector<double>> all_gather_doubles(Communicator& comm, const std::vector<double>& values,
                                                           const std::string& label) {
  const int64_t n = static_cast<int64_t>(values.size()), world = comm.world_size();
  Tensor local = Tensor::empty({2 * n}, DType::I32, Device::cpu());
  std::memcpy(local.data_raw(), values.data(), values.size() * sizeof(double));
  Tensor all = Tensor::empty({2 * n * world}, DType::I32, Device::cpu());
  comm.all_gather(local, all, label);
  std::vector<std::vector<double>> out(static_cast<size_t>(world), std::vector<double>(values.size()));
  for (int64_t r = 0; r < world; r++)
    std::memcpy(out[r].data(), static_cast<const char*>(all.data_raw()) + r * n * sizeof(double), n * sizeof(double));
  return out;
}

Tensor sync_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor running_mean,
                       Tensor running_var, float momentum, float eps, bool relu, Communicator& comm) {
  ops::check_defined("sync_batch_norm", x, "x");
  Tensor xc = x.contiguous();
  Tensor wc = weight.defined() ? weight.contiguous() : weight, bc = bias.defined() ? bias.contiguous() : bias;
  std::vector<double> local_mean, local_m2;
  ops::batchnorm_moments(xc, local_mean, local_m2);
  const size_t C = local_mean.size();

  // [rows, mean (C), m2 (C)] of every rank, merged in rank order.
  std::vector<double> mine = {static_cast<double>(xc.numel() / static_cast<int64_t>(C))};
  mine.insert(mine.end(), local_mean.begin(), local_mean.end());
  mine.insert(mine.end(), local_m2.begin(), local_m2.end());
  std::vector<double> mean(C, 0.0), m2(C, 0.0);
  double rows = 0;
  for (const std::vector<double>& rank : all_gather_doubles(comm, mine, "sync_batch_norm statistics")) {
    const double n = rank[0], total = rows + n;
    for (size_t c = 0; c < C; c++) {
      const double delta = rank[1 + c] - mean[c];
      mean[c] += delta * n / total;
      m2[c] += rank[1 + C + c] + delta * delta * rows * n / total;
    }
    rows = total;
  }
  if (rows < 2)
    throw Error("sync_batch_norm: x has shape " + shape_str(x.shape()) + " on this rank, " + std::to_string(static_cast<int64_t>(rows)) +
                " value(s) per channel over all ranks; training needs more than 1 to compute a batch variance");

  // What batchnorm_forward_train does with its own statistics (ops/cpu/batchnorm.cpp).
  Tensor mean_f = Tensor::empty({static_cast<int64_t>(C)}), rstd_f = Tensor::empty({static_cast<int64_t>(C)});
  for (size_t c = 0; c < C; c++) {
    const double variance = m2[c] / rows;  // biased
    mean_f.data<float>()[c] = static_cast<float>(mean[c]);
    rstd_f.data<float>()[c] = static_cast<float>(1.0 / std::sqrt(variance + static_cast<double>(eps)));
    if (running_mean.defined()) {
      float& rm = running_mean.data<float>()[c];
      float& rv = running_var.data<float>()[c];
      rm = static_cast<float>((1.0 - momentum) * rm + momentum * mean[c]);
      rv = static_cast<float>((1.0 - momentum) * rv + momentum * variance * rows / (rows - 1.0));
    }
  }
  Tensor y = Tensor::empty_like(xc);
  ops::batchnorm_normalise(y, xc, wc, bc, mean_f, rstd_f, relu);

  Communicator* world = &comm;
  return record(relu ? "sync_batch_norm_relu" : "sync_batch_norm", {x, weight, bias}, y,
                [xc, wc, bc, mean_f, rstd_f, rows, relu, world](const Tensor& dy, std::vector<Tensor>& g) {
                  Tensor dyc = dy.contiguous();
                  std::vector<double> sum_g, sum_gx;
                  ops::batchnorm_gradient_sums(dyc, xc, wc, bc, mean_f, rstd_f, relu, sum_g, sum_gx);
                  const size_t C = sum_g.size();
                  // This rank's parameter gradients, as batchnorm_backward computes them (a bf16/f16
                  // gradient: the f32 sum rounded once, through the staging the CPU fronts use).
                  ops::F32Staging staged;
                  float* dweight = staged.inout(g[1]);
                  float* dbias = staged.inout(g[2]);
                  for (size_t c = 0; c < C; c++) {
                    if (dweight) dweight[c] += static_cast<float>(sum_gx[c] * rstd_f.data<float>()[c]);
                    if (dbias) dbias[c] += static_cast<float>(sum_g[c]);
                  }
                  staged.finish();
                  if (!g[0].defined()) return;
                  std::vector<double> mine = sum_g;
                  mine.insert(mine.end(), sum_gx.begin(), sum_gx.end());
                  std::vector<double> total_g(C, 0.0), total_gx(C, 0.0);
                  for (const std::vector<double>& rank : all_gather_doubles(*world, mine, "sync_batch_norm gradient sums"))
                    for (size_t c = 0; c < C; c++) {
                      total_g[c] += rank[c];
                      total_gx[c] += rank[C + c];
                    }
                  ops::batchnorm_input_gradient(g[0], dyc, xc, wc, bc, mean_f, rstd_f, total_g, total_gx, rows, relu);
                });
}

int convert_sync_batchnorm(Module& model, Communicator& comm) {
  int converted = 0;
  for (auto& [name, module] : model.named_modules()) {
    auto* bn = dynamic_cast<BatchNorm2d*>(module);
    if (!bn) continue;
    Communicator* world = &comm;
    bn->synced_norm = [world](BatchNorm2d& self, const Tensor& x, bool relu) {
      return sync_batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var, self.momentum, self.eps, relu,
                             *world);
    };
    converted++;
  }
  return converted;
}

}  // namespace tg::dist
