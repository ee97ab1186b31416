// ./train under mpirun: two ranks at --batch B train what one process trains at --batch 2B, rank
// 0 alone prints and writes, and launches the build cannot serve fail in one line. The two-rank
// runs are skipped, saying why, where mpirun or MPI is missing.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <sstream>
#include <thread>

#include "programs/lib/checkpoint.h"
#include "tests/mpi_test_util.h"
#include "tests/program_test_util.h"
#include "tests/train_dist_test_util.h"

using namespace tg;
using namespace tg::test;

TEST(TrainDist, TwoRanksAtBatch4TrainLikeOneProcessAtBatch8) {
  std::string why = why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(80));
  Result single = run("train", corpus + kTinyRun + " --batch 8 --out " + dir.file("one"));
  ASSERT_EQ(single.status, 0) << single.err;
  Result ranks = run("train", corpus + kTinyRun + " --batch 4 --out " + dir.file("two"), mpirun_prefix(2));
  ASSERT_EQ(ranks.status, 0) << ranks.out << ranks.err;
  expect_same_training(dir.file("one"), dir.file("two"));

  // Rank 0 alone prints: one header, one last status line, naming the ranks and the wait.
  auto occurrences = [&](const std::string& text) {
    size_t n = 0;
    for (size_t at = ranks.out.find(text); at != std::string::npos; at = ranks.out.find(text, at + 1)) n++;
    return n;
  };
  EXPECT_EQ(occurrences("data parallel: 2 ranks (MPI), global batch 8 = 2 x 4 x 8"), 1u) << ranks.out;
  EXPECT_EQ(occurrences("step 20/20"), 1u) << ranks.out;
  EXPECT_NE(ranks.out.find("| 2 ranks, comm wait "), std::string::npos) << ranks.out;
  EXPECT_NE(read_file(dir.file("two") + "/config.json").find("\"world-size\": 2"), std::string::npos);
}

TEST(TrainDist, GradientAccumulationUnderNoSyncTrainsLikeOneProcess) {
  // Two micro-batches of 2 per rank: the loader's two draws of 4 are one process's draw of 8, rank
  // 0 taking rows 0-1 of each and rank 1 rows 2-3; the first micro-batch accumulates under
  // no_sync, the second's backward averages.
  std::string why = why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(80));
  Result single = run("train", corpus + kTinyRun + " --batch 8 --out " + dir.file("one"));
  ASSERT_EQ(single.status, 0) << single.err;
  Result ranks = run("train", corpus + kTinyRun + " --batch 2 --grad-accum 2 --out " + dir.file("two"), mpirun_prefix(2));
  ASSERT_EQ(ranks.status, 0) << ranks.out << ranks.err;
  expect_same_training(dir.file("one"), dir.file("two"));
}

TEST(TrainDist, LaunchesThisBuildCannotServeFailInOneLine) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(20));
  // torchrun-style variables start CPU ranks without MPI's runtime: the MPI engine needs mpirun.
  EXPECT_ONE_LINE_ERROR(run("train", corpus + kTinyRun + " --batch 4 --out " + dir.file("run"),
                            "WORLD_SIZE=2 RANK=0 LOCAL_RANK=0 MASTER_ADDR=localhost MASTER_PORT=29500 "),
                        "starts under mpirun");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + kTinyRun + " --batch 4 --out " + dir.file("run"), "WORLD_SIZE=2 RANK=5 "),
                        "rank 5 of world size 2");
}

TEST(TrainDist, AStuckRankEndsTheJobWithinTheTimeout) {
  // Rank 1 stops (SIGSTOP: alive, silent, as a hung rank is) once training runs; rank 0's next
  // collective waits --dist-timeout 5 seconds, says what it waited for, and ends the job.
  std::string why = why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(80)), out = dir.file("stuck");
  std::string command = mpirun_prefix(2, 120) + TG_PROGRAM_DIR + "train " + corpus + kTinyRun +
                        " --batch 4 --steps 1000000 --dist-timeout 5 --out " + out + " >" + dir.file("log") + " 2>&1";
  std::thread job([&] { (void)std::system(command.c_str()); });
  pid_t rank1 = -1;
  for (int tries = 0; tries < 600 && rank1 < 0; tries++) {  // up to a minute for the first status line
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (read_file(dir.file("log")).find("step ") != std::string::npos) rank1 = find_rank(out, 1);
  }
  ASSERT_GT(rank1, 0) << "rank 1 never started training:\n" << read_file(dir.file("log"));
  auto stopped = std::chrono::steady_clock::now();
  kill(rank1, SIGSTOP);
  job.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  kill(rank1, SIGKILL);  // in case mpirun left it stopped
  std::string log = read_file(dir.file("log"));
  EXPECT_NE(log.find("rank 0 of 2: all_reduce"), std::string::npos) << log;
  EXPECT_NE(log.find("did not complete within 5 s (--dist-timeout)"), std::string::npos) << log;
  EXPECT_LT(seconds, 60) << "the job should end a few seconds after the 5 s timeout";
}
