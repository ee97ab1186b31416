#include "ops/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/error.h"

namespace tg::cpu {

namespace {

// The ScopedCpuIsa override, -1 for none. Atomic: the kernels' worker threads read it.
std::atomic<int> g_override{-1};

// "scalar, avx2": the levels up to best.
std::string levels_up_to(CpuIsa best) {
  std::string list;
  for (CpuIsa isa : kCpuIsaLevels)
    if (isa <= best) list += std::string(list.empty() ? "" : ", ") + cpu_isa_name(isa);
  return list;
}

// TG_CPU_ISA, else the best level; computed once.
CpuIsa process_isa() {
  static const CpuIsa isa = [] {
    const char* env = std::getenv("TG_CPU_ISA");
    return env && *env ? parse_cpu_isa(env) : cpu_isa_best();
  }();
  return isa;
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::scalar: return "scalar";
    case CpuIsa::avx2: return "avx2";
    case CpuIsa::avx512: return "avx512";
  }
  return "unknown";
}

CpuIsa cpu_isa_best() {
  // The features of the -march each level is compiled with (Makefile), one by one: clang's builtin
  // knows no level names ("x86-64-v4") and no F16C, LZCNT or MOVBE, which every CPU with AVX2
  // also has (x86-64-v3 is AVX2, FMA, BMI1/2 and those three). libgcc and compiler-rt both check
  // that the OS saves the wider register state (XCR0) before they report AVX or AVX-512 features.
  static const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  static const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512cd");
  return v4 ? CpuIsa::avx512 : v3 ? CpuIsa::avx2 : CpuIsa::scalar;
}

bool cpu_isa_supported(CpuIsa isa) { return isa <= cpu_isa_best(); }

CpuIsa parse_cpu_isa(const char* value, CpuIsa best) {
  for (CpuIsa isa : kCpuIsaLevels) {
    if (std::strcmp(value, cpu_isa_name(isa)) != 0) continue;
    TG_CHECK(isa <= best, std::string("TG_CPU_ISA=") + value + ": this CPU lacks " + value + " (it supports " +
                              levels_up_to(best) + ")");
    return isa;
  }
  throw Error(std::string("TG_CPU_ISA='") + value + "' is not an instruction-set level (expected avx512, avx2 or scalar)");
}

CpuIsa cpu_isa() {
  const int forced = g_override.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<CpuIsa>(forced) : process_isa();
}

ScopedCpuIsa::ScopedCpuIsa(CpuIsa isa) {
  TG_CHECK(cpu_isa_supported(isa), std::string("ScopedCpuIsa: this CPU lacks ") + cpu_isa_name(isa) +
                                       " (it supports " + levels_up_to(cpu_isa_best()) + ")");
  previous_ = g_override.exchange(static_cast<int>(isa));
}

ScopedCpuIsa::~ScopedCpuIsa() { g_override.store(previous_); }

}  // namespace tg::cpu
