// CPU memory for Storage: 64-byte aligned (one cache line, one AVX-512 vector), with a cache of
// freed large blocks.
//
// Why a cache: a training step allocates the same activation and gradient sizes every step, and
// glibc returns large blocks to the kernel on free (mmap threshold), so each step would map fresh
// pages and pay a page fault per 4 KB on first touch. Keeping freed blocks of the exact size for
// reuse removes that cost; blocks under kCacheMinBytes are left to malloc, which already reuses
// them well. The cache is off under AddressSanitizer and with TG_CPU_CACHE=0.
#pragma once
#include <cstddef>
#include <string>

namespace tg {

void* cpu_allocate(size_t nbytes);
void cpu_deallocate(void* ptr, size_t nbytes);

struct CpuMemoryStats {
  size_t in_use = 0;       // bytes held by live storages
  size_t peak_in_use = 0;  // the most ever held at once
  size_t cached = 0;       // bytes in freed blocks kept for reuse
  // The most ever held in live storages and the cache together: what the allocator has taken from
  // the system, the part of the resident set it accounts for.
  size_t peak_reserved = 0;
  size_t system_allocations = 0;  // blocks taken from the system (not served by the cache)
};
CpuMemoryStats cpu_memory_stats();
// One line for ./train --mem-stats: "cpu peak 412 MiB in use, 480 MiB reserved, 1234 allocations".
std::string cpu_memory_summary();
// Returns every cached block to the system.
void cpu_release_cache();

// While one of these lives (on any thread), an allocation the cache cannot serve within its usual
// size slack takes the smallest idle cached block of any larger size before asking the system
// (allocations under kCacheMinBytes excepted: they would pin a block for a few bytes). Like a
// block taken within the slack, it counts whole in the statistics' in-use bytes.
// For the transients a training loop makes between steps (a checkpoint's f32 copies of masters
// kept in another form): the step's activation blocks sit idle then and take them, where new
// memory would raise the resident peak; they are freed before the next step wants those blocks.
// Inside a step it would let small tensors pin large blocks, so it is never on there.
class CpuCacheBorrowScope {
 public:
  CpuCacheBorrowScope();
  ~CpuCacheBorrowScope();
  CpuCacheBorrowScope(const CpuCacheBorrowScope&) = delete;
  CpuCacheBorrowScope& operator=(const CpuCacheBorrowScope&) = delete;
};

}  // namespace tg
