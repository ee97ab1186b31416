// The world of one: what a process gets when it was not launched with several ranks. Every
// collective completes at once with the single-rank result (all-reduce and broadcast leave the
// tensor as it is, reduce-scatter and all-gather copy), after the same checks as the real engines,
// so code written for N ranks runs, and fails, the same way alone.
#pragma once
#include "dist/communicator.h"

namespace tg::dist {

class SingleProcessCommunicator : public Communicator {
 public:
  explicit SingleProcessCommunicator(DeviceType device_type = DeviceType::CPU) : device_type_(device_type) {}

  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string engine() const override { return "single process"; }
  DeviceType device_type() const override { return device_type_; }

  Work all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label = "") override;
  Work broadcast_async(Tensor& tensor, int root, const std::string& label = "") override;
  Work reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op, const std::string& label = "") override;
  Work all_gather_async(const Tensor& input, Tensor& output, const std::string& label = "") override;
  Work barrier_async() override { return Work(); }

 private:
  DeviceType device_type_;
};

}  // namespace tg::dist
