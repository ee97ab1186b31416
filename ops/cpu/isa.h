// Instruction-set levels of the CPU kernels, chosen at run time.
//
// A kernel file whose code differs per level (intrinsics under `#if defined(__AVX512F__)`, or a
// hot loop the compiler vectorises) is listed in the Makefile's ISA_SRCS and compiled once per
// level, with that level's -march, into the namespace tg::cpu::<level> (TG_CPU_ISA_BEGIN/END put
// its declarations and definitions there). The rest of the library is compiled for baseline
// x86-64 and calls the public tg::cpu:: entry points in ops/cpu/isa_dispatch.cpp, which forward
// to the active level's copy: one binary runs on any x86-64 CPU and uses what it has.
//
// The active level is the best the CPU supports (cpuid, and the OS saving the wider registers),
// or TG_CPU_ISA=avx512|avx2|scalar, or a ScopedCpuIsa in tests.
#pragma once

namespace tg::cpu {

// In increasing order; each level's CPU supports every level below it.
//   scalar  baseline x86-64 (SSE2): the plain loops, vectorised 4 wide where the compiler can
//   avx2    x86-64-v3: AVX2 + FMA (Haswell, Zen 1 and later)
//   avx512  x86-64-v4: AVX-512 F/BW/DQ/VL (Skylake-SP, Zen 4 and later)
enum class CpuIsa { scalar, avx2, avx512 };
constexpr int kCpuIsaCount = 3;
constexpr CpuIsa kCpuIsaLevels[kCpuIsaCount] = {CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avx512};

// The levels as an X-macro, X(level, arg) for each: the namespaces and the dispatch tables below
// follow it. A new level is one entry here, in CpuIsa and in the Makefile's ISA_LEVELS.
#define TG_CPU_ISA_LEVELS(X, arg) X(scalar, arg) X(avx2, arg) X(avx512, arg)

// "scalar", "avx2", "avx512".
const char* cpu_isa_name(CpuIsa isa);

// The highest level this CPU (and OS) supports.
CpuIsa cpu_isa_best();

// Whether this CPU can run `isa`'s code: isa <= cpu_isa_best().
bool cpu_isa_supported(CpuIsa isa);

// A TG_CPU_ISA value -> its level, on a CPU whose highest level is `best`. Throws tg::Error naming
// TG_CPU_ISA, the value and what is accepted when it is not a level's name, or what the CPU has
// when it names a level above `best`.
CpuIsa parse_cpu_isa(const char* value, CpuIsa best = cpu_isa_best());

// The level the dispatched kernels run: a ScopedCpuIsa's while one lives, else TG_CPU_ISA's (read
// once; a bad value throws from every call), else cpu_isa_best().
CpuIsa cpu_isa();

// Forces `isa` for its lifetime (tests run every kernel at every level). Throws tg::Error when this
// CPU lacks it. Process-wide, not per thread (the kernels' OpenMP threads must see it too), so
// nest them but never use them from two threads at once.
class ScopedCpuIsa {
 public:
  explicit ScopedCpuIsa(CpuIsa isa);
  ~ScopedCpuIsa();
  ScopedCpuIsa(const ScopedCpuIsa&) = delete;
  ScopedCpuIsa& operator=(const ScopedCpuIsa&) = delete;

 private:
  int previous_;  // the override it replaced, -1 for none
};

// ---- for the kernel files and their dispatcher ------------------------------------------------

// Around a per-level file's declarations (in its header) and definitions: inside tg::cpu, they
// open the level's namespace when the file is compiled for a level (the Makefile defines
// TG_CPU_ISA_NS), and nothing elsewhere, where the same header declares the public entry points.
#ifdef TG_CPU_ISA_NS
#define TG_CPU_ISA_BEGIN inline namespace TG_CPU_ISA_NS {
#define TG_CPU_ISA_END }
#else
#define TG_CPU_ISA_BEGIN
#define TG_CPU_ISA_END
#endif

// In the dispatcher (inside namespace tg::cpu, after the public declaration of fn): declares each
// level's fn with the public one's type.
#define TG_CPU_ISA_DECLARE_ONE(level, fn) \
  namespace level {                       \
  decltype(::tg::cpu::fn) fn;             \
  }
#define TG_CPU_ISA_DECLARE(fn) TG_CPU_ISA_LEVELS(TG_CPU_ISA_DECLARE_ONE, fn)

// Calls the active level's fn: TG_CPU_ISA_CALL(gemm, trans_a, trans_b, ...).
template <typename Fn>
Fn* cpu_isa_pick(Fn* const (&by_level)[kCpuIsaCount]) {
  return by_level[static_cast<int>(cpu_isa())];
}
#define TG_CPU_ISA_ADDRESS_ONE(level, fn) &level::fn,
#define TG_CPU_ISA_CALL(fn, ...) \
  ::tg::cpu::cpu_isa_pick<decltype(::tg::cpu::fn)>({TG_CPU_ISA_LEVELS(TG_CPU_ISA_ADDRESS_ONE, fn)})(__VA_ARGS__)

}  // namespace tg::cpu
