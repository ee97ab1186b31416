#include "dist/single_process_communicator.h"

namespace tg::dist {

// With one rank the sum and the average of one tensor are the tensor itself.
Work SingleProcessCommunicator::all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label) {
  check_tensor("all_reduce", tensor, label);
  check_reduce_op("all_reduce", tensor, op, label);
  return Work();
}

Work SingleProcessCommunicator::broadcast_async(Tensor& tensor, int root, const std::string& label) {
  check_tensor("broadcast", tensor, label);
  if (root != 0) throw Error(describe("broadcast", tensor, label) + ": root " + std::to_string(root) + " is not a rank (world size 1)");
  return Work();
}

Work SingleProcessCommunicator::reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op,
                                                     const std::string& label) {
  check_scatter_gather("reduce_scatter", output, "output", input, "input", label);
  check_reduce_op("reduce_scatter", input, op, label);
  output.copy_(input.view(output.shape()));
  return Work();
}

Work SingleProcessCommunicator::all_gather_async(const Tensor& input, Tensor& output, const std::string& label) {
  check_scatter_gather("all_gather", input, "input", output, "output", label);
  output.copy_(input.view(output.shape()));
  return Work();
}

}  // namespace tg::dist
