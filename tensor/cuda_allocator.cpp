#include "tensor/cuda_allocator.h"

#include <cstdio>

#include "tensor/error.h"

namespace tg {

std::string format_bytes(size_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  int unit = 0;
  while (value >= 1024.0 && unit < 5) {
    value /= 1024.0;
    unit++;
  }
  // Three significant digits: "2.00 GiB", "79.1 GiB", "412 MiB".
  char text[32];
  std::snprintf(text, sizeof text, value < 10 ? "%.2f %s" : value < 100 ? "%.1f %s" : "%.0f %s", value, units[unit]);
  return text;
}

}  // namespace tg

#ifdef TG_CUDA
#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "tensor/cuda_check.h"
#include "tensor/pending_frees.h"

namespace tg {

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;  // requests up to 1 MiB round to 512 B...
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;  // ...larger ones to 2 MiB
constexpr int kBins = 64;                        // bin b holds blocks of [2^b, 2^(b+1)) bytes

// Rounding keeps the number of distinct block sizes small, so a size freed in one step is found
// again in the next even when shapes vary a little (the last batch of an epoch, say). A zero-byte
// request gets a 512-byte block, so that every storage has a valid, distinct pointer.
size_t round_size(size_t nbytes) {
  if (nbytes <= kSmallLimit) return nbytes == 0 ? kSmallRound : (nbytes + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (nbytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

int bin_of(size_t size) { return 63 - __builtin_clzll(static_cast<unsigned long long>(size)); }

// CUDA events for PendingFrees, recycled: creating one is a driver call. An event belongs to the
// device that was current when it was created, so each device has its own source. Errors are
// cleared and reported as "not recorded" / "not completed": the allocator never throws from a free.
class CudaEvents : public EventSource {
 public:
  void* record(void* stream) override {
    cudaEvent_t event = nullptr;
    if (!pool_.empty()) {
      event = pool_.back();
      pool_.pop_back();
    } else if (cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    if (cudaEventRecord(event, static_cast<cudaStream_t>(stream)) != cudaSuccess) {
      cudaGetLastError();
      cudaEventDestroy(event);
      return nullptr;
    }
    return event;
  }
  bool completed(void* event) override {
    cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (status == cudaSuccess) return true;
    cudaGetLastError();  // cudaErrorNotReady, or a fault that a later checked call reports
    return false;
  }
  void release(void* event) override { pool_.push_back(static_cast<cudaEvent_t>(event)); }

 private:
  std::vector<cudaEvent_t> pool_;
};

struct Block {
  size_t size = 0;
  std::vector<void*> streams;  // other streams that used it (cuda_record_stream)
};

struct DeviceCache {
  std::array<std::multimap<size_t, void*>, kBins> free_bins;  // block size -> block, per bin
  std::unordered_map<void*, Block> live;                      // blocks held by storages
  PendingFrees pending;                                       // freed, waiting for other streams
  CudaEvents events;
  CudaMemoryStats stats;
};

struct Allocator {
  std::mutex mutex;  // guards everything below, and is held across cudaMalloc/cudaFree
  std::vector<DeviceCache> devices;
};

Allocator& allocator() {
  static Allocator* a = new Allocator();  // never destroyed: storages may be freed during static teardown
  return *a;
}

// Throws unless `device` is a CUDA device that exists. set_device() holds the standard messages
// ("no CUDA device (...)", "this machine has 1 CUDA device (cuda:0)"), so invalid devices go to it
// and it throws.
void check_device(Device device, const std::string& what) {
  if (!device.is_cuda()) throw Error(what + ": " + device.str() + " is not a CUDA device");
  if (!cuda_available()) throw Error(what + " on " + device.str() + ": " + cuda_status());
  if (device.index < 0 || device.index >= cuda_device_count()) set_device(device);
}

// The cache of a checked device. Call with the mutex held.
DeviceCache& cache_of(Allocator& a, Device device) {
  if (a.devices.empty()) a.devices.resize(static_cast<size_t>(cuda_device_count()));  // once: the count is fixed
  return a.devices[static_cast<size_t>(device.index)];
}

void count_allocated(CudaMemoryStats& s, size_t size) {
  s.allocated_bytes += size;
  if (s.allocated_bytes > s.peak_allocated_bytes) s.peak_allocated_bytes = s.allocated_bytes;
  s.alloc_count++;
}

void put_free(DeviceCache& c, void* block, size_t size) {
  c.free_bins[static_cast<size_t>(bin_of(size))].emplace(size, block);
}

// Moves the pending blocks whose streams have finished with them to the free lists (querying an
// event needs no current device). drain: all of them, for a caller that has synchronized the device.
void settle_pending(DeviceCache& c, bool drain) {
  if (c.pending.count() == 0) return;
  auto ready = [&c](void* block, size_t size) { put_free(c, block, size); };
  if (drain) c.pending.drain(c.events, ready);
  else c.pending.collect(c.events, ready);
  c.stats.pending_bytes = c.pending.bytes();
}

// The smallest free block of `size`'s bin that holds `size`, or null.
void* take_cached(DeviceCache& c, size_t size) {
  auto& bin = c.free_bins[static_cast<size_t>(bin_of(size))];
  auto it = bin.lower_bound(size);
  if (it == bin.end()) return nullptr;
  void* ptr = it->second;
  size_t block = it->first;
  bin.erase(it);
  c.live.emplace(ptr, Block{block, {}});
  count_allocated(c.stats, block);
  return ptr;
}

// cudaFree on every cached and pending block of the device (the caller has made it current).
// The synchronization first lets every stream finish with the pending blocks.
void release_cached(DeviceCache& c) {
  if (c.pending.count() > 0) {
    TG_CUDA_CHECK(cudaDeviceSynchronize());
    settle_pending(c, /*drain=*/true);
  }
  for (auto& bin : c.free_bins) {
    while (!bin.empty()) {
      auto it = bin.begin();
      TG_CUDA_CHECK(cudaFree(it->second));
      c.stats.reserved_bytes -= it->first;
      bin.erase(it);  // only once freed: if cudaFree throws, the books still match the device
    }
  }
}

[[noreturn]] void throw_out_of_memory(Device device, size_t nbytes, const CudaMemoryStats& stats) {
  size_t free_bytes = 0, total_bytes = 0;
  std::string device_memory;
  cudaError_t error = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (error == cudaSuccess) {
    device_memory = format_bytes(free_bytes) + " free of " + format_bytes(total_bytes);
  } else {
    cudaGetLastError();
    device_memory = std::string("free memory unknown (cudaMemGetInfo: ") + cudaGetErrorName(error) + ")";
  }
  throw Error("CUDA out of memory on " + device.str() + ": tried to allocate " + format_bytes(nbytes) + "; " +
              device_memory + ", tilegrad holds " + format_bytes(stats.allocated_bytes) + " allocated (" +
              format_bytes(stats.reserved_bytes) + " reserved)");
}

}  // namespace

void* cuda_allocate(size_t nbytes, Device device) {
  check_device(device, "cannot allocate " + std::to_string(nbytes) + " bytes");
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  DeviceCache& c = cache_of(a, device);
  if (nbytes > SIZE_MAX - kLargeRound) throw_out_of_memory(device, nbytes, c.stats);  // rounding would overflow
  size_t size = round_size(nbytes);
  settle_pending(c, /*drain=*/false);
  if (void* ptr = take_cached(c, size)) return ptr;

  CudaDeviceGuard guard(device);
  void* ptr = nullptr;
  cudaError_t error = cudaMalloc(&ptr, size);
  if (error == cudaErrorMemoryAllocation) {
    // The cache may hold enough in blocks of other sizes: give them back and try once more.
    cudaGetLastError();  // not sticky, but clear it so that the next launch check does not report it
    release_cached(c);
    error = cudaMalloc(&ptr, size);
    if (error == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw_out_of_memory(device, nbytes, c.stats);
    }
  }
  if (error != cudaSuccess) cuda::throw_cuda_error(error, "cudaMalloc", __FILE__, __LINE__);
  c.stats.reserved_bytes += size;
  if (c.stats.reserved_bytes > c.stats.peak_reserved_bytes) c.stats.peak_reserved_bytes = c.stats.reserved_bytes;
  c.stats.cudamalloc_count++;
  c.live.emplace(ptr, Block{size, {}});
  count_allocated(c.stats, size);
  return ptr;
}

void cuda_deallocate(void* ptr, Device device) noexcept {
  if (!ptr) return;
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  if (device.index < 0 || static_cast<size_t>(device.index) >= a.devices.size()) return;  // never allocated here
  DeviceCache& c = a.devices[static_cast<size_t>(device.index)];
  auto it = c.live.find(ptr);
  if (it == c.live.end()) return;
  Block block = std::move(it->second);
  c.live.erase(it);
  c.stats.allocated_bytes -= block.size;
  if (block.streams.empty()) {
    put_free(c, ptr, block.size);
    return;
  }
  // Events belong to the device current at their creation: make this one current, without the
  // throwing guard.
  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) cudaGetLastError();
  if (previous != device.index && cudaSetDevice(device.index) != cudaSuccess) cudaGetLastError();
  c.pending.add(ptr, block.size, block.streams, c.events);
  c.stats.pending_bytes = c.pending.bytes();
  if (previous >= 0 && previous != device.index) cudaSetDevice(previous);
}

void cuda_record_stream(void* ptr, Device device, void* stream) {
  check_device(device, "cuda_record_stream");
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  DeviceCache& c = cache_of(a, device);
  auto it = c.live.find(ptr);
  if (it == c.live.end()) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", ptr);
    throw Error(std::string("cuda_record_stream: ") + text + " is not a live block of " + device.str() +
                " (pass the storage's data(), not a view's pointer)");
  }
  std::vector<void*>& streams = it->second.streams;
  if (stream != static_cast<void*>(cuda::stream()) &&
      std::find(streams.begin(), streams.end(), stream) == streams.end())
    streams.push_back(stream);
}

CudaMemoryStats cuda_memory_stats(Device device) {
  check_device(device, "cuda_memory_stats");
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  return cache_of(a, device).stats;
}

void cuda_reset_peak_stats(Device device) {
  check_device(device, "cuda_reset_peak_stats");
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  CudaMemoryStats& s = cache_of(a, device).stats;
  s.peak_allocated_bytes = s.allocated_bytes;
  s.peak_reserved_bytes = s.reserved_bytes;
}

void cuda_empty_cache(Device device) {
  check_device(device, "cuda_empty_cache");
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  CudaDeviceGuard guard(device);
  release_cached(cache_of(a, device));
}

std::string cuda_memory_summary(Device device) {
  CudaMemoryStats s = cuda_memory_stats(device);
  return device.str() + " peak " + format_bytes(s.peak_allocated_bytes) + " allocated, " +
         format_bytes(s.peak_reserved_bytes) + " reserved, " + std::to_string(s.cudamalloc_count) + " cudaMalloc call" +
         (s.cudamalloc_count == 1 ? "" : "s");
}

CudaDeviceGuard::CudaDeviceGuard(Device device) {
  if (!device.is_cuda()) return;
  // set_device() throws the standard message for a device that does not exist.
  if (!cuda_available() || device.index < 0 || device.index >= cuda_device_count()) set_device(device);
  int current = 0;
  TG_CUDA_CHECK(cudaGetDevice(&current));
  if (current == device.index) return;
  set_device(device);
  previous_ = current;
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor must not throw; this cannot fail for a device we left
}

}  // namespace tg

#else  // built without CUDA: every entry point names the reason

namespace tg {

void* cuda_allocate(size_t nbytes, Device device) {
  throw Error("cannot allocate " + std::to_string(nbytes) + " bytes on " + device.str() + ": " + no_cuda_message());
}
void cuda_deallocate(void*, Device) noexcept {}
void cuda_record_stream(void*, Device device, void*) {
  throw Error("cuda_record_stream on " + device.str() + ": " + no_cuda_message());
}
CudaMemoryStats cuda_memory_stats(Device device) {
  throw Error("cuda_memory_stats on " + device.str() + ": " + no_cuda_message());
}
void cuda_reset_peak_stats(Device device) {
  throw Error("cuda_reset_peak_stats on " + device.str() + ": " + no_cuda_message());
}
void cuda_empty_cache(Device device) { throw Error("cuda_empty_cache on " + device.str() + ": " + no_cuda_message()); }
std::string cuda_memory_summary(Device device) { return device.str() + ": " + no_cuda_message(); }

CudaDeviceGuard::CudaDeviceGuard(Device device) { set_device(device); }  // throws for a CUDA device
CudaDeviceGuard::~CudaDeviceGuard() = default;

}  // namespace tg

#endif  // TG_CUDA
