// Runs a test suite once per instruction-set level of the CPU kernels (ops/cpu/isa.h), inside the
// one test binary: on an AVX-512 machine the AVX2 and scalar kernels are tested too.
//
//   class GemmKernel : public CpuIsaTest {};
//   TG_INSTANTIATE_FOR_EACH_CPU_ISA(GemmKernel);
//   TEST_P(GemmKernel, SquareAwkwardSizes) { ... }     // runs as GemmKernel.SquareAwkwardSizes/avx2 ...
//
// A level this CPU lacks is skipped, naming it.
#pragma once
#include <gtest/gtest.h>

#include <optional>

#include "ops/cpu/isa.h"

class CpuIsaTest : public ::testing::TestWithParam<tg::cpu::CpuIsa> {
 protected:
  void SetUp() override {
    if (!tg::cpu::cpu_isa_supported(GetParam()))
      GTEST_SKIP() << "this CPU lacks " << tg::cpu::cpu_isa_name(GetParam());
    level_.emplace(GetParam());
  }
  void TearDown() override { level_.reset(); }

 private:
  std::optional<tg::cpu::ScopedCpuIsa> level_;
};

#define TG_INSTANTIATE_FOR_EACH_CPU_ISA(Suite)                                    \
  INSTANTIATE_TEST_SUITE_P(, Suite, ::testing::ValuesIn(::tg::cpu::kCpuIsaLevels), \
                           [](const ::testing::TestParamInfo<::tg::cpu::CpuIsa>& info) { \
                             return std::string(::tg::cpu::cpu_isa_name(info.param));     \
                           })
