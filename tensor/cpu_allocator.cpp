#include "tensor/cpu_allocator.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
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

struct CachedBlock {
  void* ptr;
  uint64_t freed_at;  // the cache's clock when it was freed: the oldest is released first
};

struct Cache {
  std::mutex mutex;
  // rounded block size -> blocks, oldest first (a hit takes the newest, whose pages are warmest)
  std::map<size_t, std::vector<CachedBlock>> free_blocks;
  std::unordered_map<void*, size_t> larger;  // blocks handed out larger than asked -> their size
  uint64_t clock = 0;
  CpuMemoryStats stats;
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

// A block the cache may hold is mapped pages of its own, so that releasing it returns its memory to
// the system at once. Through malloc it would not: glibc raises its mmap threshold to the size of
// each mapped block freed, serves later blocks of that size from its heap, and keeps freed heap
// memory resident. Smaller blocks, and every block when the cache is off, are malloc's.
bool mapped(size_t size) { return cache_enabled() && size >= kCacheMinBytes; }

void* system_allocate(size_t size) {
  if (!mapped(size)) return std::aligned_alloc(kAlignment, size);
  void* ptr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return ptr == MAP_FAILED ? nullptr : ptr;  // page-aligned, so 64-byte aligned
}

void system_free(void* ptr, size_t size) {
  if (mapped(size))
    munmap(ptr, size);
  else
    std::free(ptr);
}

// The cache may hold this fraction of the peak in use beyond it (below).
constexpr size_t kCacheSlackDivisor = 8;

// Called on a miss (the cache lock held, the new block counted in use): returns cached blocks to the
// system, the longest unused first, while the blocks in use and cached together exceed the most
// ever in use at once by more than an eighth. Without a bound, every size ever freed stays cached
// beside the new block: sampling from a GPT allocates blocks of one size per context length, and
// unbounded, they added 97 MB to the 694 MB peak of an 8-step `small` run in fp32 (71 MB in bf16);
// bounded, 61 MB (29 MB). The slack is what a training step's own mix of sizes needs (its cache
// holds 3-6% beyond the peak in use, fp32 or bf16) so that a repeating step keeps every block it
// reuses and never misses: with no slack (bounded by the peak itself) the step traded blocks with
// the system at every step and ran 30% slower.
std::vector<std::pair<void*, size_t>> release_beyond_bound(Cache& c) {
  std::vector<std::pair<void*, size_t>> released;
  while (c.stats.cached > 0 &&
         c.stats.in_use + c.stats.cached > c.stats.peak_in_use + c.stats.peak_in_use / kCacheSlackDivisor) {
    auto oldest = c.free_blocks.end();
    for (auto it = c.free_blocks.begin(); it != c.free_blocks.end(); ++it)
      if (!it->second.empty() && (oldest == c.free_blocks.end() || it->second.front().freed_at <
                                                                      oldest->second.front().freed_at))
        oldest = it;
    released.emplace_back(oldest->second.front().ptr, oldest->first);
    oldest->second.erase(oldest->second.begin());
    c.stats.cached -= oldest->first;
    if (oldest->second.empty()) c.free_blocks.erase(oldest);
  }
  return released;
}

}  // namespace

void* cpu_allocate(size_t nbytes) {
  size_t size = round_up(nbytes);
  Cache& c = cache();
  std::vector<std::pair<void*, size_t>> released;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.in_use += size;
    if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
    // The smallest cached block of at least `size` within the slack (blocks under kCacheMinBytes are
    // never cached).
    for (auto it = c.free_blocks.lower_bound(size);
         it != c.free_blocks.end() && it->first <= size + size / kFitSlackDivisor; ++it) {
      if (it->second.empty()) continue;
      void* ptr = it->second.back().ptr;
      it->second.pop_back();
      c.stats.cached -= it->first;
      c.stats.in_use += it->first - size;
      if (c.stats.in_use > c.stats.peak_in_use) c.stats.peak_in_use = c.stats.in_use;
      if (it->first != size) c.larger[ptr] = it->first;
      return ptr;
    }
    c.stats.system_allocations++;
    released = release_beyond_bound(c);
    const size_t reserved = c.stats.in_use + c.stats.cached;
    if (reserved > c.stats.peak_reserved) c.stats.peak_reserved = reserved;
  }
  for (auto [block, bytes] : released) system_free(block, bytes);
  void* ptr = system_allocate(size);
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
      c.free_blocks[size].push_back({ptr, ++c.clock});
      c.stats.cached += size;
      return;
    }
  }
  system_free(ptr, size);
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

void cpu_reset_peak_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.peak_in_use = c.stats.in_use;
  c.stats.peak_reserved = c.stats.in_use + c.stats.cached;
}

void cpu_release_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& [size, blocks] : c.free_blocks)
    for (const CachedBlock& block : blocks) system_free(block.ptr, size);
  c.free_blocks.clear();
  c.stats.cached = 0;
}

}  // namespace tg
