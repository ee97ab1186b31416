#include "tensor/cpu_allocator.h"

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <map>
#include <unordered_map>
#include <vector>

#include "tensor/cuda_allocator.h"
#include "tensor/error.h"

namespace tg {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kCacheMinBytes = size_t(1) << 16;  // smaller blocks go straight to malloc
// A miss may take a cached block up to this fraction larger than asked (the smallest such): a step's
// transients of nearby sizes (a band of rows here, a staged copy there) then share blocks instead of
// each keeping its own, so the memory taken from the system tracks the peak in use more closely.
constexpr size_t kFitSlackDivisor = 4;  // up to 25% larger
// A cap on cached bytes, so a run whose shapes keep changing cannot grow without bound. A
// training step of the largest CPU configurations holds well under this in activations.
constexpr size_t kCacheMaxBytes = size_t(4) << 30;

struct Cache {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free_blocks;  // rounded block size -> blocks
  std::unordered_map<void*, size_t> larger;          // blocks handed out larger than asked -> their size
  CpuMemoryStats stats;
  int borrow_scopes = 0;  // live CpuCacheBorrowScopes
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: storages may be freed during static teardown
  return *c;
}

// Off under AddressSanitizer, whose use-after-free checks need every free to reach it, and when
// TG_CPU_CACHE=0 (to measure what the cache buys).
bool cache_enabled() {
#if defined(__SANITIZE_ADDRESS__)
  return false;
#else
  static const bool enabled = [] {
    const char* env = std::getenv("TG_CPU_CACHE");
    return !(env && std::string(env) == "0");
  }();
  return enabled;
#endif
}

size_t round_up(size_t nbytes) {
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  return rounded == 0 ? kAlignment : rounded;  // a zero-size tensor still gets a valid pointer
}

}  // namespace

void* cpu_allocate(size_t nbytes) {
  size_t size = round_up(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    // The smallest cached block of at least `size` within the slack, or of any size in a borrow
    // scope (blocks under kCacheMinBytes are never cached).
    const size_t largest = c.borrow_scopes > 0 && size >= kCacheMinBytes ? SIZE_MAX : size + size / kFitSlackDivisor;
    for (auto it = c.free_blocks.lower_bound(size); it != c.free_blocks.end() && it->first <= largest; ++it) {
      if (it->second.empty()) continue;
      void* ptr = it->second.back();
      it->second.pop_back();
      c.stats.cached -= it->first;
      c.stats.in_use += it->first;  // the whole block: a larger one is in use to its end
      if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
      if (it->first != size) c.larger[ptr] = it->first;
      return ptr;
    }
    c.stats.in_use += size;
    if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
    c.stats.system_allocations++;
    const size_t reserved = c.stats.in_use + c.stats.cached;
    if (reserved > c.stats.peak_reserved) c.stats.peak_reserved = reserved;
  }
  void* ptr = std::aligned_alloc(kAlignment, size);
  if (!ptr) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.in_use -= size;
    throw Error("out of CPU memory: could not allocate " + std::to_string(nbytes) + " bytes (" +
                std::to_string(c.stats.in_use) + " bytes already in use by tensors)");
  }
  return ptr;
}

void cpu_deallocate(void* ptr, size_t nbytes) {
  if (!ptr) return;
  size_t size = round_up(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (!c.larger.empty()) {
      auto it = c.larger.find(ptr);
      if (it != c.larger.end()) {
        size = it->second;
        c.larger.erase(it);
      }
    }
    c.stats.in_use -= size;
    if (cache_enabled() && size >= kCacheMinBytes && c.stats.cached + size <= kCacheMaxBytes) {
      c.free_blocks[size].push_back(ptr);
      c.stats.cached += size;
      return;
    }
  }
  std::free(ptr);
}

CpuMemoryStats cpu_memory_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

std::string cpu_memory_summary() {
  const CpuMemoryStats s = cpu_memory_stats();
  return "cpu peak " + format_bytes(s.peak_in_use) + " in use, " + format_bytes(s.peak_reserved) + " reserved, " +
         std::to_string(s.system_allocations) + " allocation" + (s.system_allocations == 1 ? "" : "s");
}

CpuCacheBorrowScope::CpuCacheBorrowScope() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.borrow_scopes++;
}

CpuCacheBorrowScope::~CpuCacheBorrowScope() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.borrow_scopes--;
}

void cpu_release_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& [size, blocks] : c.free_blocks)
    for (void* ptr : blocks) std::free(ptr);
  c.free_blocks.clear();
  c.stats.cached = 0;
}

}  // namespace tg
