// GPU memory for Storage: a caching allocator, per device.
//
// Why a cache: cudaMalloc and cudaFree are slow (cudaFree also synchronizes the device), and a
// training step allocates the same activation and gradient sizes every step. Freed blocks go back
// to a free list and are handed out again without a runtime call. Reusing a freed block at once is
// safe because every kernel and copy of tilegrad runs on one in-order stream (cuda::stream()): any
// kernel still reading the old tensor is queued before any kernel that writes the new one.
//
// A block also used on another stream (the NCCL engine's communication stream) is marked with
// cuda_record_stream; when it is freed, it waits (tensor/pending_frees.h) until the work queued on
// those streams before the free has finished, and only then is handed out again.
//
// Sizes are rounded up (to multiples of 512 B up to 1 MiB, of 2 MiB above) and binned by powers of
// two; a request takes the smallest free block of its own bin that fits (best fit), so a block
// never serves a request of less than half its size. Blocks are never split or merged.
//
// Plain C++ (no CUDA types): programs report memory through it whether or not CUDA was built; in a
// build without CUDA every function throws the "built without CUDA" message.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/device.h"

namespace tg {

struct CudaMemoryStats {
  size_t allocated_bytes = 0;       // bytes in blocks held by live storages (block sizes, rounded)
  size_t peak_allocated_bytes = 0;  // the most ever allocated at once (since the last reset)
  size_t reserved_bytes = 0;        // bytes obtained from cudaMalloc: allocated plus cached
  size_t peak_reserved_bytes = 0;
  int64_t alloc_count = 0;          // allocations served, from the cache or not
  int64_t cudamalloc_count = 0;     // of those, the ones that called cudaMalloc
  size_t pending_bytes = 0;         // freed blocks waiting for another stream's work (cuda_record_stream)
};

// A block of at least `nbytes` on `device` (0 bytes gives a valid, distinct block). Throws
// tg::Error when the device does not exist or is out of memory (naming the size asked for, the
// device's free and total memory and what tilegrad holds).
void* cuda_allocate(size_t nbytes, Device device);
// Returns a block to its device's cache. Never throws, so storages may be freed from any thread
// and during static teardown. Makes no CUDA call unless the block was marked by
// cuda_record_stream; then it records an event on each marked stream (one that cannot be recorded,
// as at teardown, keeps the block out of use until cuda_empty_cache).
void cuda_deallocate(void* ptr, Device device) noexcept;
// Marks the block `ptr` (as cuda_allocate returned it, a Storage's data()) as used by work queued
// on `stream` (a cudaStream_t other than cuda::stream()), as PyTorch's Tensor.record_stream: once
// freed, the block is not handed out again until that work is done. Throws naming the pointer
// when it is not a live block of `device`.
void cuda_record_stream(void* ptr, Device device, void* stream);

CudaMemoryStats cuda_memory_stats(Device device);
// Sets the peaks to the current values, to measure one phase (say, one training step).
void cuda_reset_peak_stats(Device device);
// Waits for the device, then frees every cached and pending block with cudaFree (blocks held by
// tensors stay).
void cuda_empty_cache(Device device);
// One line for ./train --mem-stats:
// "cuda:0 peak 1.23 GiB allocated, 1.50 GiB reserved, 412 cudaMalloc calls".
std::string cuda_memory_summary(Device device);
// "512 B", "1.50 KiB", "2.00 GiB", "1.00 PiB": the unit the error messages and summaries use.
std::string format_bytes(size_t bytes);

// Makes `device` current for this thread for the scope and restores the previous device after,
// so that touching another device's memory does not move later launches onto it. A no-op for the
// CPU. Throws like set_device() when the device does not exist.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(Device device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

}  // namespace tg
