#include "tensor/storage.h"

#include <atomic>
#include <cstdlib>

#include "tensor/error.h"

namespace tg {

static std::atomic<size_t> g_cpu_in_use{0};
static std::atomic<size_t> g_cpu_peak{0};

static constexpr size_t kCpuAlignment = 64;

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (!device.is_cpu()) throw Error("cannot allocate " + std::to_string(nbytes) + " bytes on " + device.str() + ": " + no_cuda_message());
  // aligned_alloc wants a size that is a multiple of the alignment; a zero-size tensor still gets
  // a valid pointer so that data() is never null.
  size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  if (rounded == 0) rounded = kCpuAlignment;
  data_ = std::aligned_alloc(kCpuAlignment, rounded);
  if (!data_) throw Error("out of CPU memory: could not allocate " + std::to_string(nbytes) + " bytes");
  size_t now = g_cpu_in_use += nbytes;
  size_t peak = g_cpu_peak.load();
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {}
}

Storage::~Storage() {
  std::free(data_);
  g_cpu_in_use -= nbytes_;
}

size_t cpu_bytes_in_use() { return g_cpu_in_use.load(); }
size_t cpu_peak_bytes() { return g_cpu_peak.load(); }

}  // namespace tg
