// The run-time choice of the CPU kernels' instruction-set level (ops/cpu/isa.h): TG_CPU_ISA's
// parsing, the refusal of a level the CPU lacks, and that a forced level's own code is what runs.
// The kernels themselves are tested at every level by their suites (tests/cpu_isa_test_util.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "ops/cpu/fma_peak.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/isa.h"
#include "tests/program_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::test;
using cpu::CpuIsa;

TEST(CpuIsaDispatch, NamesParseBackToTheirLevels) {
  for (CpuIsa isa : cpu::kCpuIsaLevels)
    EXPECT_EQ(cpu::parse_cpu_isa(cpu::cpu_isa_name(isa), CpuIsa::avx512), isa) << cpu::cpu_isa_name(isa);
}

TEST(CpuIsaDispatch, UnknownValueNamesTheVariableAndTheLevels) {
  for (const char* bad : {"avx1024", "AVX2", "sse2", " avx2"})
    EXPECT_ERROR_MENTIONS(cpu::parse_cpu_isa(bad, CpuIsa::avx512), "TG_CPU_ISA", std::string("'") + bad + "'",
                          "expected avx512, avx2 or scalar");
}

TEST(CpuIsaDispatch, LevelAboveTheCpusIsRefusedNamingWhatItHas) {
  // A CPU whose best is AVX2 (or baseline) refuses avx512 (and avx2), listing what it supports.
  EXPECT_ERROR_MENTIONS(cpu::parse_cpu_isa("avx512", CpuIsa::avx2), "TG_CPU_ISA=avx512", "this CPU lacks avx512",
                        "it supports scalar, avx2)");
  EXPECT_ERROR_MENTIONS(cpu::parse_cpu_isa("avx2", CpuIsa::scalar), "TG_CPU_ISA=avx2", "this CPU lacks avx2",
                        "it supports scalar)");
  EXPECT_EQ(cpu::parse_cpu_isa("scalar", CpuIsa::scalar), CpuIsa::scalar);
}

TEST(CpuIsaDispatch, SupportIsEveryLevelUpToTheBest) {
  for (CpuIsa isa : cpu::kCpuIsaLevels) EXPECT_EQ(cpu::cpu_isa_supported(isa), isa <= cpu::cpu_isa_best());
  EXPECT_TRUE(cpu::cpu_isa_supported(CpuIsa::scalar));
}

// The forced level's own copies run: the GEMM reports its micro-kernel and tile, and the FMA probe
// counts the level's vector width (16, 8 or 1 lanes, 12 chains, 2 FLOPs a lane).
TEST(CpuIsaDispatch, ForcedLevelRunsItsOwnKernels) {
  struct Expect {
    CpuIsa isa;
    const char* gemm;
    int mr, nr, lanes;
  };
  for (const Expect& e : {Expect{CpuIsa::scalar, "scalar 4x16", 4, 16, 1}, Expect{CpuIsa::avx2, "avx2 6x16", 6, 16, 8},
                          Expect{CpuIsa::avx512, "avx512 14x32", 14, 32, 16}}) {
    if (!cpu::cpu_isa_supported(e.isa)) {
      std::printf("[  SKIPPED ] level %s: this CPU lacks it\n", cpu::cpu_isa_name(e.isa));
      continue;
    }
    cpu::ScopedCpuIsa level(e.isa);
    EXPECT_EQ(cpu::cpu_isa(), e.isa);
    EXPECT_STREQ(cpu::gemm_kernel_name(), e.gemm);
    EXPECT_EQ(cpu::gemm_mr(), e.mr);
    EXPECT_EQ(cpu::gemm_nr(), e.nr);
    EXPECT_EQ(cpu::fma_chains(10), 2.0 * e.lanes * 12 * 10) << e.gemm;
  }
}

TEST(CpuIsaDispatch, ScopedOverridesNestAndRestore) {
  const CpuIsa before = cpu::cpu_isa();
  {
    cpu::ScopedCpuIsa outer(CpuIsa::scalar);
    EXPECT_EQ(cpu::cpu_isa(), CpuIsa::scalar);
    {
      cpu::ScopedCpuIsa inner(cpu::cpu_isa_best());
      EXPECT_EQ(cpu::cpu_isa(), cpu::cpu_isa_best());
    }
    EXPECT_EQ(cpu::cpu_isa(), CpuIsa::scalar);
  }
  EXPECT_EQ(cpu::cpu_isa(), before);
}

// TG_CPU_ISA is read by the program: ./train names the level it runs, and a bad value stops it
// before any work with the message.
TEST(CpuIsaDispatch, TrainReportsAndObeysTgCpuIsa) {
  TempDir dir;
  const std::string text = dir.path + "/text.txt";
  {
    std::ofstream out(text);
    for (int i = 0; i < 200; i++) out << "the quick brown fox jumps over the lazy dog. ";
  }
  const std::string args = text + " --out " + dir.path + "/run" +
                           " --layers 1 --heads 2 --embd 16 --block 8 --batch 2 --steps 1 --eval-batches 1"
                           " --sample-tokens 4 --threads 1 --device cpu";
  Result scalar = run("train", args, "TG_CPU_ISA=scalar ");
  EXPECT_EQ(scalar.status, 0) << scalar.out << scalar.err;
  EXPECT_NE(scalar.out.find("cpu kernels: scalar"), std::string::npos) << scalar.out;
  EXPECT_ONE_LINE_ERROR(run("train", args, "TG_CPU_ISA=avx1024 "), "TG_CPU_ISA='avx1024' is not an instruction-set level");
}
