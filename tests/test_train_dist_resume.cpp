// ./train under mpirun, stopped and resumed: a Ctrl-C that reaches one rank stops both at the same
// step with one checkpoint holding every rank's dropout generator, and --resume at the same world
// size continues bit for bit; at another world size it continues and says it is not bit-exact.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "programs/lib/checkpoint.h"
#include "tests/mpi_test_util.h"
#include "tests/program_test_util.h"
#include "tests/train_dist_test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

// The tiny GPT with dropout on, so every rank's dropout generator is part of what must survive the
// restart (each rank draws its own masks); long enough that the signal lands mid-run.
const std::string kDropoutRun =
    " --layers 1 --heads 2 --embd 16 --block 8 --eval-batches 2 --sample-every 100000 --threads 1 --device cpu"
    " --steps 1000 --log-every 1 --eval-every 250 --lr 1e-2 --dropout 0.2 --batch 4";

// Every tensor of two checkpoints (model and optimizer), bit for bit.
void expect_identical_checkpoints(const std::string& a_path, const std::string& b_path) {
  Checkpoint a = load_checkpoint(a_path), b = load_checkpoint(b_path);
  for (const SafetensorsData* part : {&a.model, &a.optimizer}) {
    const SafetensorsData& other = part == &a.model ? b.model : b.optimizer;
    ASSERT_EQ(part->tensors.size(), other.tensors.size());
    for (const auto& [name, tensor] : part->tensors) {
      const Tensor& twin = other.at(name);
      ASSERT_EQ(tensor.nbytes(), twin.nbytes()) << name;
      EXPECT_EQ(std::memcmp(tensor.data_raw(), twin.data_raw(), tensor.nbytes()), 0) << name << " differs";
    }
  }
  EXPECT_EQ(a.state.rank_dropout_rng, b.state.rank_dropout_rng);
}

}  // namespace

TEST(TrainDistResume, SigintOnRankOneStopsBothAndResumesBitForBit) {
  std::string why = why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(80));
  std::string args = corpus + kDropoutRun;
  Result straight = run("train", args + " --out " + dir.file("straight"), mpirun_prefix(2));
  ASSERT_EQ(straight.status, 0) << straight.out << straight.err;

  // The signal goes to rank 1 alone: rank 0 learns of it through the step's agreement. A step
  // takes a millisecond here, far less than a look at the log, so rank 1 is first stopped
  // (SIGSTOP; rank 0 then waits in its next collective), signalled, and let go.
  std::string split = dir.file("split"), log = dir.file("log");
  std::string command = mpirun_prefix(2) + TG_PROGRAM_DIR + "train " + args + " --out " + split + " >" + log + " 2>&1";
  std::thread job([&] { (void)std::system(command.c_str()); });
  pid_t rank1 = -1;
  bool training = false;
  for (int tries = 0; tries < 6000 && !training; tries++) {  // up to a minute for the first status line
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (rank1 < 0) rank1 = find_rank(split, 1);
    training = rank1 > 0 && read_file(log).find("step ") != std::string::npos;
  }
  if (training) {
    kill(rank1, SIGSTOP);
    kill(rank1, SIGINT);
    kill(rank1, SIGCONT);
  }
  job.join();
  std::string stopped = read_file(log);
  ASSERT_TRUE(training) << "the run never started training:\n" << stopped;
  ASSERT_NE(stopped.find("SIGINT: stopped at step "), std::string::npos) << "the run ended before the signal:\n" << stopped;
  Checkpoint at_stop = load_checkpoint(split + "/last.safetensors");
  ASSERT_EQ(at_stop.state.rank_dropout_rng.size(), 2u) << "the checkpoint should hold both ranks' dropout generators";
  EXPECT_NE(at_stop.state.rank_dropout_rng[0], at_stop.state.rank_dropout_rng[1]);
  EXPECT_EQ(at_stop.state.rank_dropout_rng[0], at_stop.state.dropout_rng);

  Result resumed = run("train", args + " --out " + split + " --resume", mpirun_prefix(2));
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("resuming "), std::string::npos) << resumed.out;
  EXPECT_EQ(resumed.out.find("not bit for bit"), std::string::npos) << resumed.out;
  std::vector<std::string> a = loss_columns(read_file(dir.file("straight/metrics.csv")));
  std::vector<std::string> b = loss_columns(read_file(split + "/metrics.csv"));
  ASSERT_EQ(a.size(), 1001u);
  EXPECT_EQ(a, b);  // every step's train loss and every val loss, to 9 significant digits
  expect_identical_checkpoints(dir.file("straight/last.safetensors"), split + "/last.safetensors");

  // The same checkpoint at world size 1: it trains on, and says why it is not the 2-rank run.
  Result alone = run("train", args + " --out " + split + " --resume --steps 1002");
  ASSERT_EQ(alone.status, 0) << alone.out << alone.err;
  EXPECT_NE(alone.out.find("was trained on 2 rank(s) and resumes on 1"), std::string::npos) << alone.out;
  EXPECT_NE(alone.out.find("not bit for bit"), std::string::npos) << alone.out;
  EXPECT_NE(alone.out.find("step 1002/1002"), std::string::npos) << alone.out;
}
