#include "dist/nccl_communicator.h"

#if defined(TG_CUDA) && defined(TG_NCCL)

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "dist/mpi_communicator.h"
#include "dist/peer_report.h"
#include "dist/rendezvous_store.h"
#include "tensor/cuda_allocator.h"
#include "tensor/cuda_check.h"

namespace tg::dist {

bool built_with_nccl() { return true; }
std::string no_nccl_reason() { return ""; }

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::U8: return ncclUint8;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::Average ? ncclAvg : ncclSum; }

// NCCL's name for the result, and its last error message when it has one.
std::string nccl_text(ncclResult_t result, ncclComm_t comm) {
  std::string text = ncclGetErrorString(result);
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  if (last && *last) text += std::string(" (") + last + ")";
  return text;
}

// Polling back-off: a yield for the first polls, so that a short collective returns at once, then
// 100 us sleeps, so that a long wait does not take a core from the ranks' compute.
void back_off(int& polls) {
  if (polls++ < 1000) std::this_thread::yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(100));
}

std::string seconds_text(std::chrono::seconds t) { return std::to_string(t.count()) + " s"; }

// A CUDA event without timing, destroyed with its owner.
struct Event {
  cudaEvent_t event = nullptr;
  Event() { TG_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming)); }
  ~Event() {
    if (event) cudaEventDestroy(event);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

}  // namespace

struct NcclCommunicator::Impl {
  Device device;
  int rank = 0;
  int world_size = 1;
  std::string launcher;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // the communication stream
  Tensor barrier_word;            // one i32 that barrier() all-reduces
  std::unique_ptr<RendezvousStore> store;  // torchrun-style launches: the bootstrap, then the watchdog's reports
  std::chrono::seconds timeout{300};

  // One thread at a time in NCCL's calls on `comm` (the issuing thread and a waiting one may differ).
  std::mutex mutex;
  bool aborted = false;
  std::string abort_reason;
  int64_t issued = 0;  // collectives issued so far: the watchdog names the one that hung by its number

  ~Impl() {
    if (comm && !aborted) {
      // Finalize flushes what was issued; polled under the timeout so that a dead peer cannot
      // hang the exit, and aborted when it does not finish.
      ncclResult_t state = ncclCommFinalize(comm);
      const Clock::time_point deadline = Clock::now() + timeout;
      int polls = 0;
      while (state == ncclInProgress && Clock::now() < deadline) {
        back_off(polls);
        if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) break;
      }
      if (state == ncclSuccess) ncclCommDestroy(comm);
      else ncclCommAbort(comm);
    }
    // The word's block was used on the communication stream: free it while the stream exists, so
    // that the allocator's event is recorded there.
    barrier_word = Tensor();
    if (stream) cudaStreamDestroy(stream);
  }

  // What the peers were doing (dist/peer_report.h), when the launch has a store to ask.
  std::string peer_report(const std::string& what, int64_t sequence) {
    if (!store)
      return launcher == "mpirun" ? " Every rank whose watchdog fires prints its own line; mpirun gathers them." : "";
    if (world_size == 1) return "";
    try {
      store->set_timeout(std::chrono::seconds(5));  // the store's own waits, not the grace below
      std::string doing = what.substr(what.find(": ") + 2) + ", collective #" + std::to_string(sequence);
      auto grace = std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(5));
      return " What the peers were doing: " + exchange_peer_reports(*store, doing, grace) + ".";
    } catch (const Error& e) {
      return " What the peers were doing is unknown: " + std::string(e.what());
    }
  }

  // Aborts the communicator (ending every kernel waiting on it) and throws naming `what`, the
  // `sequence`-th collective this rank issued (0: none, creating the communicator). Called with
  // the mutex held.
  [[noreturn]] void fail(const std::string& what, int64_t sequence, const std::string& why) {
    std::string message = what + (sequence > 0 ? ", this rank's collective #" + std::to_string(sequence) : "") + ", " +
                          why + "." + (aborted ? "" : peer_report(what, sequence));
    if (!aborted) {
      ncclCommAbort(comm);
      comm = nullptr;
      aborted = true;
      abort_reason = what + " " + why;
    }
    throw Error(message);
  }

  void check_usable(const std::string& what) const {
    if (aborted) throw Error(what + ": the NCCL communicator was aborted after " + abort_reason);
  }

  // A non-blocking communicator answers ncclInProgress while a call is still being issued; the next
  // call may come only once its state is ncclSuccess. Called with the mutex held.
  void settle(const std::string& what, int64_t sequence, std::chrono::seconds limit) {
    const Clock::time_point deadline = Clock::now() + limit;
    int polls = 0;
    for (;;) {
      ncclResult_t state = ncclInProgress;
      ncclResult_t call = ncclCommGetAsyncError(comm, &state);
      if (call != ncclSuccess) fail(what, sequence, "failed: ncclCommGetAsyncError: " + nccl_text(call, comm));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, sequence, "failed: NCCL reported " + nccl_text(state, comm));
      if (Clock::now() >= deadline)
        fail(what, sequence, "did not finish within " + seconds_text(limit) +
                       " (--dist-timeout): a rank has died, hangs, or issued different collectives");
      back_off(polls);
    }
  }

  // Blocks until `done` has completed on the communication stream, watching NCCL's errors and the
  // clock.
  void wait_for(cudaEvent_t done, const std::string& what, int64_t sequence, std::chrono::seconds limit) {
    const Clock::time_point deadline = Clock::now() + limit;
    int polls = 0;
    for (;;) {
      cudaError_t status = cudaEventQuery(done);
      if (status == cudaSuccess) return;
      if (status != cudaErrorNotReady) {
        cudaGetLastError();
        throw Error(what + ": cudaEventQuery failed: " + cudaGetErrorString(status));
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        check_usable(what);
        ncclResult_t state = ncclSuccess;
        if (ncclCommGetAsyncError(comm, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress)
          fail(what, sequence, "failed: NCCL reported " + nccl_text(state, comm));
        if (Clock::now() >= deadline)
          fail(what, sequence, "did not complete within " + seconds_text(limit) +
                         " (--dist-timeout): a rank has died, hangs, or issued different collectives");
      }
      back_off(polls);
    }
  }
};

namespace {

// One issued collective: done when the event recorded after it on the communication stream has
// completed. Holds its tensors so that their storages outlive the collective even if the caller
// drops them (their blocks are also marked for the allocator).
struct NcclWork : Work::State {
  std::shared_ptr<NcclCommunicator::Impl> impl;
  std::string what;
  int64_t sequence = 0;  // the how-manieth collective of this rank
  std::chrono::seconds timeout;
  std::vector<Tensor> tensors;
  std::unique_ptr<Event> done;
  bool finished = false;

  void wait() override {
    if (finished) return;
    CudaDeviceGuard guard(impl->device);
    impl->wait_for(done->event, what, sequence, timeout);
    // Kernels issued after wait() on the compute stream come after the collective.
    TG_CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), done->event, 0));
    finished = true;
    tensors.clear();
  }
  bool completed() override {
    if (finished) return true;
    cudaError_t status = cudaEventQuery(done->event);
    if (status != cudaSuccess && status != cudaErrorNotReady) cudaGetLastError();  // wait() reports it
    return status == cudaSuccess;
  }
};

// Issues `call` (NCCL function `name`) on the communication stream after the compute stream's
// work so far, and returns its handle.
Work issue(const std::shared_ptr<NcclCommunicator::Impl>& impl, const char* name, const std::string& what,
           std::vector<Tensor> tensors, std::chrono::seconds timeout,
           const std::function<ncclResult_t(ncclComm_t, cudaStream_t)>& call) {
  NcclCommunicator::Impl& m = *impl;
  std::lock_guard<std::mutex> lock(m.mutex);
  m.check_usable(what);
  m.timeout = timeout;
  CudaDeviceGuard guard(m.device);
  {
    Event ready;  // destroying it once the wait is queued is allowed: the wait still happens
    TG_CUDA_CHECK(cudaEventRecord(ready.event, cuda::stream()));
    TG_CUDA_CHECK(cudaStreamWaitEvent(m.stream, ready.event, 0));
  }
  const int64_t sequence = m.issued + 1;
  ncclResult_t result = call(m.comm, m.stream);
  if (result == ncclInProgress) m.settle(what, sequence, timeout);
  else if (result != ncclSuccess) throw Error(what + ": " + name + " failed: " + nccl_text(result, m.comm));
  m.issued = sequence;
  for (const Tensor& t : tensors) cuda_record_stream(t.storage()->data(), m.device, m.stream);
  auto work = std::make_shared<NcclWork>();
  work->impl = impl;
  work->what = what;
  work->sequence = sequence;
  work->timeout = timeout;
  work->tensors = std::move(tensors);
  work->done = std::make_unique<Event>();
  TG_CUDA_CHECK(cudaEventRecord(work->done->event, m.stream));
  return Work(work);
}

}  // namespace

NcclCommunicator::NcclCommunicator(Device device, const LaunchInfo& launch, std::chrono::seconds timeout)
    : impl_(std::make_shared<Impl>()) {
  set_timeout(timeout);
  Impl& m = *impl_;
  m.device = device;
  m.rank = launch.rank;
  m.world_size = launch.world_size;
  m.launcher = launch.launcher;
  m.timeout = timeout;
  const std::string what = "rank " + std::to_string(m.rank) + " of " + std::to_string(m.world_size) +
                           ": creating the NCCL communicator on " + device.str();
  if (!device.is_cuda()) throw Error(what + ": the NCCL engine needs a CUDA device");
  CudaDeviceGuard guard(device);  // throws naming the device when it does not exist

  // The unique id: made by rank 0, sent to every rank.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (m.rank == 0) {
    ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) throw Error(what + ": ncclGetUniqueId failed: " + nccl_text(result, nullptr));
  }
  if (launch.launcher == "mpirun") {
    MpiCommunicator mpi;  // throws when this build has no MPI
    mpi.set_timeout(timeout);
    if (mpi.world_size() != m.world_size || mpi.rank() != m.rank)
      throw Error(what + ": MPI says rank " + std::to_string(mpi.rank()) + " of " + std::to_string(mpi.world_size()) +
                  ", the launch rank " + std::to_string(m.rank) + " of " + std::to_string(m.world_size));
    Tensor bytes = Tensor::zeros({static_cast<int64_t>(sizeof id)}, DType::U8);
    std::memcpy(bytes.data_raw(), &id, sizeof id);
    mpi.broadcast(bytes, 0, "the NCCL unique id");
    std::memcpy(&id, bytes.data_raw(), sizeof id);
  } else {
    m.store = std::make_unique<RendezvousStore>(launch.master_addr, launch.master_port, m.rank, m.world_size,
                                                std::chrono::milliseconds(timeout));
    const std::string key = "nccl unique id";
    if (m.rank == 0) {
      m.store->set(key, std::string(reinterpret_cast<const char*>(&id), sizeof id));
    } else {
      std::string bytes = m.store->get(key);
      if (bytes.size() != sizeof id)
        throw Error(what + ": the rendezvous store holds a " + std::to_string(bytes.size()) + "-byte '" + key +
                    "', expected " + std::to_string(sizeof id) + " bytes (another program on MASTER_PORT?)");
      std::memcpy(&id, bytes.data(), sizeof id);
    }
  }

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; settle() and wait_for() poll under the timeout
  ncclResult_t result = ncclCommInitRankConfig(&m.comm, m.world_size, id, m.rank, &config);
  if (result != ncclSuccess && result != ncclInProgress)
    throw Error(what + ": ncclCommInitRankConfig failed: " + nccl_text(result, m.comm));
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    m.settle(what, 0, timeout);
  }
  TG_CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  m.barrier_word = Tensor::zeros({1}, DType::I32, device);
}

NcclCommunicator::~NcclCommunicator() = default;  // Impl's destructor finalizes once the last Work is gone

int NcclCommunicator::rank() const { return impl_->rank; }
int NcclCommunicator::world_size() const { return impl_->world_size; }

namespace {

// The engine's checks beyond Communicator's: the tensor is on this communicator's GPU.
void check_device_index(const Tensor& tensor, Device device, const std::string& what) {
  if (tensor.device() != device)
    throw Error(what + ": the tensor is on " + tensor.device().str() + ", the communicator on " + device.str());
}

}  // namespace

Work NcclCommunicator::all_reduce_async(Tensor& tensor, ReduceOp op, const std::string& label) {
  check_tensor("all_reduce", tensor, label);
  check_reduce_op("all_reduce", tensor, op, label);
  std::string what = describe("all_reduce", tensor, label, reduce_op_name(op));
  check_device_index(tensor, impl_->device, what);
  return issue(impl_, "ncclAllReduce", what, {tensor}, timeout(), [&](ncclComm_t comm, cudaStream_t stream) {
    void* data = tensor.data_raw();
    return ncclAllReduce(data, data, static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()), nccl_op(op), comm,
                         stream);
  });
}

Work NcclCommunicator::broadcast_async(Tensor& tensor, int root, const std::string& label) {
  check_tensor("broadcast", tensor, label);
  std::string what = describe("broadcast", tensor, label, ("from rank " + std::to_string(root)).c_str());
  if (root < 0 || root >= impl_->world_size)
    throw Error(what + ": root " + std::to_string(root) + " is not a rank (world size " +
                std::to_string(impl_->world_size) + ")");
  check_device_index(tensor, impl_->device, what);
  return issue(impl_, "ncclBroadcast", what, {tensor}, timeout(), [&](ncclComm_t comm, cudaStream_t stream) {
    void* data = tensor.data_raw();
    return ncclBroadcast(data, data, static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()), root, comm,
                         stream);
  });
}

Work NcclCommunicator::reduce_scatter_async(const Tensor& input, Tensor& output, ReduceOp op,
                                            const std::string& label) {
  check_scatter_gather("reduce_scatter", output, "output", input, "input", label);
  check_reduce_op("reduce_scatter", input, op, label);
  std::string what = describe("reduce_scatter", input, label, reduce_op_name(op));
  check_device_index(input, impl_->device, what);
  check_device_index(output, impl_->device, what);
  return issue(impl_, "ncclReduceScatter", what, {input, output}, timeout(), [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclReduceScatter(input.data_raw(), output.data_raw(), static_cast<size_t>(output.numel()),
                             nccl_type(input.dtype()), nccl_op(op), comm, stream);
  });
}

Work NcclCommunicator::all_gather_async(const Tensor& input, Tensor& output, const std::string& label) {
  check_scatter_gather("all_gather", input, "input", output, "output", label);
  std::string what = describe("all_gather", input, label);
  check_device_index(input, impl_->device, what);
  check_device_index(output, impl_->device, what);
  return issue(impl_, "ncclAllGather", what, {input, output}, timeout(), [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(input.data_raw(), output.data_raw(), static_cast<size_t>(input.numel()),
                         nccl_type(input.dtype()), comm, stream);
  });
}

// NCCL has no barrier: an all-reduce of one word completes only once every rank has issued it.
Work NcclCommunicator::barrier_async() {
  std::string what = describe("barrier", Tensor(), "");
  Tensor& word = impl_->barrier_word;
  return issue(impl_, "ncclAllReduce", what, {word}, timeout(), [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(word.data_raw(), word.data_raw(), 1, ncclInt32, ncclSum, comm, stream);
  });
}

}  // namespace tg::dist

#else  // no NCCL engine in this build

namespace tg::dist {

bool built_with_nccl() { return false; }

std::string no_nccl_reason() {
#ifdef TG_CUDA
  return "this build has no NCCL (nccl.h was not found in the CUDA include folder or /usr/include when it was built)";
#else
  return "this build has no NCCL (it was built without CUDA)";
#endif
}

struct NcclCommunicator::Impl {};

NcclCommunicator::NcclCommunicator(Device, const LaunchInfo&, std::chrono::seconds) {
  throw Error(no_nccl_reason() + ": install NCCL with CUDA and rebuild to run several CUDA ranks");
}
NcclCommunicator::~NcclCommunicator() = default;
int NcclCommunicator::rank() const { return 0; }
int NcclCommunicator::world_size() const { return 1; }
Work NcclCommunicator::all_reduce_async(Tensor&, ReduceOp, const std::string&) { return Work(); }
Work NcclCommunicator::broadcast_async(Tensor&, int, const std::string&) { return Work(); }
Work NcclCommunicator::reduce_scatter_async(const Tensor&, Tensor&, ReduceOp, const std::string&) { return Work(); }
Work NcclCommunicator::all_gather_async(const Tensor&, Tensor&, const std::string&) { return Work(); }
Work NcclCommunicator::barrier_async() { return Work(); }

}  // namespace tg::dist

#endif
