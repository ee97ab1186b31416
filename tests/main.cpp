// GoogleTest main for the whole suite. Ends with the line "N passed, M failed[, K skipped]" that
// CI reads, counting test cases.
#include <gtest/gtest.h>

#include <cstdio>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
  int passed = unit.successful_test_count();
  int failed = unit.failed_test_count();
  int skipped = unit.skipped_test_count();
  if (skipped) std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  else std::printf("%d passed, %d failed\n", passed, failed);
  return rc;
}
