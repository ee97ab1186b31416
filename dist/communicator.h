// Communicator: the collectives that data-parallel training needs, behind one small interface
// with an engine per device. MPI moves CPU tensors (dist/mpi_communicator.h), NCCL moves CUDA
// tensors (dist/nccl_communicator.h), and a process that was not launched with several ranks gets
// the world-of-one engine (dist/single_process_communicator.h), so the same training code runs
// alone and under mpirun. make_communicator (dist/launch.h) picks the engine.
//
// Every collective has an asynchronous form that returns a Work handle at once; the blocking form
// is the asynchronous one followed by wait(). Collectives are matched across ranks by the order in
// which they are issued, so every rank must issue the same collectives in the same order (data
// parallel guarantees it by launching buckets in a fixed order). A tensor handed to an
// asynchronous collective belongs to it until wait() returns: do not read or write it before.
//
// Tensors are contiguous and of one dtype; sums run in the tensor's dtype (bf16 and f16 add in
// f32 and round once per addition, as NCCL does); average is the sum divided by the world size,
// for floating-point dtypes only.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "tensor/tensor.h"

namespace tg::dist {

enum class ReduceOp { Sum, Average };
const char* reduce_op_name(ReduceOp op);  // "sum", "average"

// A handle on an issued collective. wait() blocks until it has finished and rethrows its error (a
// tg::Error naming the rank, the op and the tensor); a default-constructed Work is already done.
class Work {
 public:
  struct State {
    virtual ~State() = default;
    virtual void wait() = 0;
    virtual bool completed() = 0;
  };
  Work() = default;
  explicit Work(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void wait() const {
    if (state_) state_->wait();
  }
  bool completed() const { return !state_ || state_->completed(); }

 private:
  std::shared_ptr<State> state_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "MPI", "NCCL", "single process": the engine, for status lines and messages.
  virtual std::string engine() const = 0;
  // The device kind whose tensors this engine moves.
  virtual DeviceType device_type() const = 0;

  // Each collective's `label` names the tensor in error messages ("bucket 2", "wte.weight"); the
  // messages add its shape and dtype.

  // tensor = op over the ranks of their `tensor`, in place.
  virtual Work all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label = "") = 0;
  // tensor = root's tensor, on every rank.
  virtual Work broadcast_async(Tensor& tensor, int root, const std::string& label = "") = 0;
  // input (world_size * n elements) -> output (n elements): rank r gets the r-th n-element chunk
  // of op over the ranks' inputs.
  virtual Work reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op, const std::string& label = "") = 0;
  // input (n elements) -> output (world_size * n elements): the ranks' inputs, in rank order.
  virtual Work all_gather_async(const Tensor& input, Tensor& output, const std::string& label = "") = 0;
  // Completes once every rank has issued it.
  virtual Work barrier_async() = 0;

  void all_reduce(Tensor& tensor, ReduceOp op = ReduceOp::Sum, const std::string& label = "") {
    all_reduce_async(tensor, op, label).wait();
  }
  void broadcast(Tensor& tensor, int root, const std::string& label = "") { broadcast_async(tensor, root, label).wait(); }
  void reduce_scatter(const Tensor& input, Tensor& output, ReduceOp op = ReduceOp::Sum, const std::string& label = "") {
    reduce_scatter_async(input, output, op, label).wait();
  }
  void all_gather(const Tensor& input, Tensor& output, const std::string& label = "") {
    all_gather_async(input, output, label).wait();
  }
  void barrier() { barrier_async().wait(); }

  // How long wait() lets a collective run before it declares the job stuck (a rank died or stopped
  // issuing collectives), prints what it was waiting for and ends every rank with a non-zero exit
  // status. ./train's --dist-timeout; 300 s by default.
  void set_timeout(std::chrono::seconds timeout) { timeout_ = timeout; }
  std::chrono::seconds timeout() const { return timeout_; }

 protected:
  // "rank 1 of 2: all_reduce (sum) of bucket 0 (f32, shape (1000))": the start of every message.
  std::string describe(const char* op, const Tensor& tensor, const std::string& label, const char* detail = nullptr) const;
  // The checks every engine makes before issuing: defined, contiguous, on this engine's device
  // kind, and for average a floating-point dtype. Throws naming the rank, the op and the tensor.
  void check_tensor(const char* op, const Tensor& tensor, const std::string& label) const;
  void check_reduce_op(const char* op, const Tensor& tensor, ReduceOp reduce, const std::string& label) const;
  // input and output of reduce_scatter / all_gather: one dtype, and numel(big) = world * numel(small).
  void check_scatter_gather(const char* op, const Tensor& small, const char* small_name, const Tensor& big,
                            const char* big_name, const std::string& label) const;

 private:
  std::chrono::seconds timeout_{300};
};

// tensor /= divisor in place, for a contiguous CPU tensor of a floating-point dtype (the second
// half of an average: f32 divides, bf16 and f16 divide in f32 and round once).
void divide_cpu_in_place(Tensor& tensor, int divisor);

}  // namespace tg::dist
