#include "dist/mpi_communicator.h"

#ifdef TG_MPI

#include <mpi.h>

#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace tg::dist {

bool built_with_mpi() { return true; }

namespace {

// Sums of bf16 and f16 buffers (MPI has no 16-bit float types): each addition in f32, rounded
// once, as NCCL does. They travel as MPI_UINT16_T.
void bf16_sum(void* in, void* inout, int* count, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *count; i++) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}
void f16_sum(void* in, void* inout, int* count, MPI_Datatype*) {
  const uint16_t* a = static_cast<const uint16_t*>(in);
  uint16_t* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *count; i++) b[i] = f32_to_f16(f16_to_f32(a[i]) + f16_to_f32(b[i]));
}

MPI_Op g_bf16_sum = MPI_OP_NULL;
MPI_Op g_f16_sum = MPI_OP_NULL;

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (g_bf16_sum != MPI_OP_NULL) MPI_Op_free(&g_bf16_sum);
  if (g_f16_sum != MPI_OP_NULL) MPI_Op_free(&g_f16_sum);
  MPI_Finalize();
}

std::string mpi_message(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(text, length);
}

// Throws naming `what` (rank, op, tensor) and the MPI call when `code` is not MPI_SUCCESS.
void check_mpi(int code, const char* call, const std::string& what) {
  if (code != MPI_SUCCESS) throw Error(what + ": " + call + " failed: " + mpi_message(code));
}

// MPI_Init_thread once per process, asking for MPI_THREAD_MULTIPLE.
void ensure_mpi_initialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread", "starting MPI");
      if (provided < MPI_THREAD_MULTIPLE)
        throw Error("starting MPI: this MPI library provides thread level " + std::to_string(provided) +
                    ", the communication thread needs MPI_THREAD_MULTIPLE (" + std::to_string(MPI_THREAD_MULTIPLE) + ")");
      std::atexit(finalize_mpi);
    }
    MPI_Op_create(bf16_sum, /*commute=*/1, &g_bf16_sum);
    MPI_Op_create(f16_sum, /*commute=*/1, &g_f16_sum);
  });
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::BF16:
    case DType::F16: return MPI_UINT16_T;
    case DType::I32: return MPI_INT32_T;
    case DType::U8: return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_sum(DType dtype) {
  if (dtype == DType::BF16) return g_bf16_sum;
  if (dtype == DType::F16) return g_f16_sum;
  return MPI_SUM;
}

// MPI counts are ints.
int mpi_count(const Tensor& tensor, const std::string& what) {
  if (tensor.numel() > INT_MAX)
    throw Error(what + ": " + std::to_string(tensor.numel()) + " elements is more than one MPI call moves (" +
                std::to_string(INT_MAX) + "); split the tensor");
  return static_cast<int>(tensor.numel());
}

// One issued collective: done once the communication thread has run it.
struct MpiWork : Work::State {
  std::string what;  // describe(...) of the collective, for the timeout message
  std::chrono::seconds timeout;
  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  std::exception_ptr error;

  void finish(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mutex);
    error = e;
    done = true;
    finished.notify_all();
  }
  void wait() override {
    std::unique_lock<std::mutex> lock(mutex);
    if (!finished.wait_for(lock, timeout, [this] { return done; })) {
      // MPI cannot cancel a collective: the only way out of a stuck one is to end the job.
      std::fprintf(stderr,
                   "tilegrad: %s did not complete within %lld s (--dist-timeout): a rank has died, hangs, or issued "
                   "different collectives; ending the job\n",
                   what.c_str(), static_cast<long long>(timeout.count()));
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (error) std::rethrow_exception(error);
  }
  bool completed() override {
    std::lock_guard<std::mutex> lock(mutex);
    return done;
  }
};

}  // namespace

struct MpiCommunicator::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int world_size = 1;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<MpiWork>>> queue;
  bool stopping = false;
  std::thread thread;

  // The communication thread: runs the issued collectives one by one, in issue order.
  void loop() {
    for (;;) {
      std::pair<std::function<void()>, std::shared_ptr<MpiWork>> task;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [this] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        task = std::move(queue.front());
        queue.pop_front();
      }
      try {
        task.first();
        task.second->finish(nullptr);
      } catch (...) {
        task.second->finish(std::current_exception());
      }
    }
  }

  Work submit(std::string what, std::chrono::seconds timeout, std::function<void()> run) {
    auto work = std::make_shared<MpiWork>();
    work->what = std::move(what);
    work->timeout = timeout;
    {
      std::lock_guard<std::mutex> lock(mutex);
      queue.emplace_back(std::move(run), work);
    }
    wake.notify_one();
    return Work(work);
  }
};

MpiCommunicator::MpiCommunicator() : impl_(std::make_unique<Impl>()) {
  ensure_mpi_initialized();
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm), "MPI_Comm_dup", "creating the MPI communicator");
  check_mpi(MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler",
            "creating the MPI communicator");
  MPI_Comm_rank(impl_->comm, &impl_->rank);
  MPI_Comm_size(impl_->comm, &impl_->world_size);
  impl_->thread = std::thread([this] { impl_->loop(); });
}

MpiCommunicator::~MpiCommunicator() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  impl_->thread.join();  // runs what is still queued first: every rank frees the communicator after the same collectives
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&impl_->comm);
}

int MpiCommunicator::rank() const { return impl_->rank; }
int MpiCommunicator::world_size() const { return impl_->world_size; }

Work MpiCommunicator::all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label) {
  check_tensor("all_reduce", tensor, label);
  check_reduce_op("all_reduce", tensor, op, label);
  std::string what = describe("all_reduce", tensor, label, reduce_op_name(op));
  int count = mpi_count(tensor, what);
  MPI_Comm comm = impl_->comm;
  int world = impl_->world_size;
  return impl_->submit(what, timeout(), [tensor, op, what, count, comm, world]() mutable {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, tensor.data_raw(), count, mpi_type(tensor.dtype()), mpi_sum(tensor.dtype()), comm),
              "MPI_Allreduce", what);
    if (op == ReduceOp::Average) divide_cpu_in_place(tensor, world);
  });
}

Work MpiCommunicator::broadcast_async(Tensor& tensor, int root, const std::string& label) {
  check_tensor("broadcast", tensor, label);
  std::string what = describe("broadcast", tensor, label, ("from rank " + std::to_string(root)).c_str());
  if (root < 0 || root >= impl_->world_size)
    throw Error(what + ": root " + std::to_string(root) + " is not a rank (world size " + std::to_string(impl_->world_size) + ")");
  int count = mpi_count(tensor, what);
  MPI_Comm comm = impl_->comm;
  return impl_->submit(what, timeout(), [tensor, root, what, count, comm] {
    check_mpi(MPI_Bcast(tensor.data_raw(), count, mpi_type(tensor.dtype()), root, comm), "MPI_Bcast", what);
  });
}

Work MpiCommunicator::reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op, const std::string& label) {
  check_scatter_gather("reduce_scatter", output, "output", input, "input", label);
  check_reduce_op("reduce_scatter", input, op, label);
  std::string what = describe("reduce_scatter", input, label, reduce_op_name(op));
  mpi_count(input, what);
  int count = mpi_count(output, what);
  MPI_Comm comm = impl_->comm;
  int world = impl_->world_size;
  return impl_->submit(what, timeout(), [input, output, op, what, count, comm, world]() mutable {
    MPI_Datatype type = mpi_type(input.dtype());
    check_mpi(MPI_Reduce_scatter_block(input.data_raw(), output.data_raw(), count, type, mpi_sum(input.dtype()), comm),
              "MPI_Reduce_scatter_block", what);
    if (op == ReduceOp::Average) divide_cpu_in_place(output, world);
  });
}

Work MpiCommunicator::all_gather_async(const Tensor& input, Tensor& output, const std::string& label) {
  check_scatter_gather("all_gather", input, "input", output, "output", label);
  std::string what = describe("all_gather", input, label);
  mpi_count(output, what);
  int count = mpi_count(input, what);
  MPI_Comm comm = impl_->comm;
  return impl_->submit(what, timeout(), [input, output, what, count, comm] {
    MPI_Datatype type = mpi_type(input.dtype());
    check_mpi(MPI_Allgather(input.data_raw(), count, type, output.data_raw(), count, type, comm), "MPI_Allgather", what);
  });
}

Work MpiCommunicator::barrier_async() {
  std::string what = describe("barrier", Tensor(), "");
  MPI_Comm comm = impl_->comm;
  return impl_->submit(what, timeout(), [what, comm] { check_mpi(MPI_Barrier(comm), "MPI_Barrier", what); });
}

}  // namespace tg::dist

#else  // built without MPI

namespace tg::dist {

bool built_with_mpi() { return false; }

struct MpiCommunicator::Impl {};

MpiCommunicator::MpiCommunicator() {
  throw Error("this build has no MPI (mpicxx was not found when it was built): install Open MPI (make deps) and rebuild "
              "to run several CPU ranks");
}
MpiCommunicator::~MpiCommunicator() = default;
int MpiCommunicator::rank() const { return 0; }
int MpiCommunicator::world_size() const { return 1; }
Work MpiCommunicator::all_reduce_async(Tensor&, ReduceOp, const std::string&) { return Work(); }
Work MpiCommunicator::broadcast_async(Tensor&, int, const std::string&) { return Work(); }
Work MpiCommunicator::reduce_scatter_async(const Tensor&, Tensor&, ReduceOp, const std::string&) { return Work(); }
Work MpiCommunicator::all_gather_async(const Tensor&, Tensor&, const std::string&) { return Work(); }
Work MpiCommunicator::barrier_async() { return Work(); }

}  // namespace tg::dist

#endif
