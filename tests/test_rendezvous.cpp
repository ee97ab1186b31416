// The torchrun-style launch: the variables read and checked, the rank's GPU, and the TCP
// rendezvous store exercised by real processes (fork) on localhost.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>
#include <thread>

#include "dist/launch.h"
#include "dist/nccl_communicator.h"
#include "dist/peer_report.h"
#include "dist/rendezvous_store.h"
#include "tests/program_test_util.h"
#include "tests/scoped_env.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::dist;
using tg::test::ScopedEnv;

namespace {

using Env = std::map<std::string, std::optional<std::string>>;

// Every launcher variable unset.
Env no_launcher() {
  Env env;
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "WORLD_SIZE",
                           "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"})
    env[name] = std::nullopt;
  return env;
}

// A complete torchrun-style launch of rank 1 of 2, with `changes` applied.
Env torchrun(const Env& changes) {
  Env env = no_launcher();
  env["WORLD_SIZE"] = "2";
  env["RANK"] = "1";
  env["LOCAL_RANK"] = "1";
  env["MASTER_ADDR"] = "localhost";
  env["MASTER_PORT"] = "29500";
  for (const auto& [name, value] : changes) env[name] = value;
  return env;
}

// A TCP port free at the moment of asking (the kernel's pick for port 0).
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t length = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  close(fd);
  return ntohs(addr.sin_port);
}

// What every rank of the exchange test does: publish a value with a zero byte and a high byte in
// it, meet the others, read every other rank's value, meet again before rank 0 closes the store.
// Returns "" or what went wrong.
std::string exchange(RendezvousStore& store) {
  auto value_of = [](int r) { return std::string("rank ") + std::to_string(r) + std::string(1, '\0') + "\xff end"; };
  store.set("value " + std::to_string(store.rank()), value_of(store.rank()));
  store.barrier("published");
  for (int r = 0; r < store.world_size(); r++) {
    if (!store.check("value " + std::to_string(r)))
      return "value " + std::to_string(r) + " is not set after the barrier";
    std::string got = store.get("value " + std::to_string(r));
    if (got != value_of(r)) return "value " + std::to_string(r) + " is \"" + got + "\"";
  }
  if (store.check("never set")) return "check() found a key nobody set";
  store.barrier("read");
  return "";
}

}  // namespace

// ---- the variables ---------------------------------------------------------------------------

TEST(DistTorchrunLaunch, ReadsEveryVariable) {
  ScopedEnv env(torchrun({{"MASTER_ADDR", "10.1.2.3"}, {"MASTER_PORT", "6000"}}));
  LaunchInfo launch = detect_launch();
  EXPECT_EQ(launch.launcher, "torchrun-style variables");
  EXPECT_EQ(launch.rank, 1);
  EXPECT_EQ(launch.world_size, 2);
  EXPECT_EQ(launch.local_rank, 1);
  EXPECT_EQ(launch.master_addr, "10.1.2.3");
  EXPECT_EQ(launch.master_port, 6000);
}

TEST(DistTorchrunLaunch, OneRankNeedsNoStore) {
  ScopedEnv env(torchrun({{"WORLD_SIZE", "1"}, {"RANK", "0"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", std::nullopt},
                          {"MASTER_PORT", std::nullopt}}));
  LaunchInfo launch = detect_launch();
  EXPECT_EQ(launch.world_size, 1);
  EXPECT_EQ(make_communicator(Device::cpu(), launch)->engine(), "single process");
}

TEST(DistTorchrunLaunch, NamesEachMissingOrBadVariable) {
  struct Case {
    Env changes;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {{{"RANK", std::nullopt}}, {"RANK is not set"}},
      {{{"LOCAL_RANK", std::nullopt}}, {"LOCAL_RANK is not set"}},
      {{{"RANK", "-1"}}, {"RANK", "\"-1\"", "non-negative integer"}},
      {{{"RANK", "5"}}, {"rank 5 of world size 2", "below the world size"}},
      {{{"LOCAL_RANK", "x"}}, {"LOCAL_RANK", "\"x\""}},
      {{{"LOCAL_RANK", "3"}, {"RANK", "1"}}, {"local rank 3", "cannot exceed the rank"}},
      {{{"MASTER_ADDR", std::nullopt}}, {"MASTER_ADDR is not set", "2 ranks"}},
      {{{"MASTER_PORT", std::nullopt}}, {"MASTER_PORT is not set"}},
      {{{"MASTER_PORT", "70000"}}, {"MASTER_PORT", "\"70000\"", "[1, 65535]"}},
      {{{"MASTER_PORT", "0"}}, {"MASTER_PORT", "\"0\"", "[1, 65535]"}},
      {{{"MASTER_PORT", "29500x"}}, {"MASTER_PORT", "\"29500x\""}},
      {{{"WORLD_SIZE", "0"}}, {"world size 0"}},
  };
  for (const Case& c : cases) {
    ScopedEnv env(torchrun(c.changes));
    expect_error([] { detect_launch(); }, c.message);
  }
}

TEST(DistTorchrunLaunch, MpirunWinsOverAnExportedWorldSize) {
  Env values = torchrun({});
  values["OMPI_COMM_WORLD_SIZE"] = "3";
  values["OMPI_COMM_WORLD_RANK"] = "2";
  values["OMPI_COMM_WORLD_LOCAL_RANK"] = "0";
  ScopedEnv env(values);
  LaunchInfo launch = detect_launch();
  EXPECT_EQ(launch.launcher, "mpirun");
  EXPECT_EQ(launch.world_size, 3);
  EXPECT_EQ(launch.rank, 2);
  EXPECT_EQ(launch.master_addr, "");
}

TEST(DistTorchrunLaunch, EachCudaRankTakesTheGpuOfItsLocalRank) {
  LaunchInfo one{0, 1, 0, "", "", 0};
  EXPECT_EQ(rank_device(Device::cuda(0), one), Device::cuda(0));
  LaunchInfo second{3, 4, 1, "torchrun-style variables", "localhost", 29500};
  EXPECT_EQ(rank_device(Device::cpu(), second), Device::cpu());
  if (cuda_device_count() >= 2) {
    EXPECT_EQ(rank_device(Device::cuda(0), second), Device::cuda(1));
  } else {
    EXPECT_ERROR_MENTIONS(rank_device(Device::cuda(0), second), "rank 3 with local rank 1",
                          "shows " + std::to_string(cuda_device_count()) + " CUDA device", "cuda:<local rank>");
  }
}

TEST(DistTorchrunLaunch, CudaRanksWithoutNcclSayItInOneLine) {
  if (built_with_nccl()) GTEST_SKIP() << "this build has NCCL";
  LaunchInfo launch{0, 2, 0, "torchrun-style variables", "localhost", 29500};
  try {
    make_communicator(Device::cuda(0), launch);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("2 ranks on CUDA, but this build has no NCCL"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

// ---- the store -------------------------------------------------------------------------------

TEST(Rendezvous, ThreeProcessesExchangeValuesAndMeet) {
  const int port = free_port();
  const int world = 3;
  TempDir dir;
  // The children start first and retry until rank 0 listens, as ranks started by a launcher do.
  std::vector<pid_t> children;
  for (int rank = 1; rank < world; rank++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::string problem;
      try {
        RendezvousStore store("localhost", port, rank, world, std::chrono::seconds(20));
        problem = exchange(store);
      } catch (const std::exception& e) {
        problem = e.what();
      }
      std::ofstream(dir.file("rank" + std::to_string(rank))) << problem;
      _exit(problem.empty() ? 0 : 1);
    }
    children.push_back(pid);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  {
    RendezvousStore store("localhost", port, 0, world, std::chrono::seconds(20));
    EXPECT_EQ(store.port(), port);
    EXPECT_EQ(exchange(store), "");
  }
  for (size_t i = 0; i < children.size(); i++) {
    int status = 0;
    ASSERT_EQ(waitpid(children[i], &status, 0), children[i]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "rank " << i + 1 << ": " << tg::test::read_file(dir.file("rank" + std::to_string(i + 1)));
  }
}

TEST(Rendezvous, AGetWaitsForTheSetOfAnotherProcess) {
  const int port = free_port();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 1;
    try {
      RendezvousStore store("127.0.0.1", port, 1, 2, std::chrono::seconds(20));
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // rank 0's get is parked meanwhile
      store.set("id", "12345");
      store.barrier("done");
      code = 0;
    } catch (const std::exception&) {
    }
    _exit(code);
  }
  RendezvousStore store("127.0.0.1", port, 0, 2, std::chrono::seconds(20));
  EXPECT_EQ(store.get("id"), "12345");
  store.barrier("done");
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(Rendezvous, AMissingPeerTimesOutNamingTheAddressAndTheRank) {
  RendezvousStore store("localhost", 0, 0, 3, std::chrono::milliseconds(300));
  std::string address = "localhost:" + std::to_string(store.port());
  EXPECT_ERROR_MENTIONS(store.barrier("start"), "rendezvous store at " + address, "rank 0 of 3", "barrier 'start'",
                        "2 of 3 ranks did not arrive (ranks 1, 2)", "--dist-timeout");
}

TEST(Rendezvous, AnUnreachableStoreTimesOutNamingTheAddressAndTheRank) {
  const int port = free_port();  // nobody listens there
  auto start = std::chrono::steady_clock::now();
  EXPECT_ERROR_MENTIONS(RendezvousStore("localhost", port, 1, 2, std::chrono::milliseconds(300)),
                        "rendezvous store at localhost:" + std::to_string(port), "MASTER_ADDR:MASTER_PORT",
                        "rank 1 of 2", "could not reach the store within 0.3 s", "Connection refused");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(Rendezvous, AKeyNobodySetsTimesOut) {
  RendezvousStore store("localhost", 0, 0, 1, std::chrono::milliseconds(200));
  EXPECT_ERROR_MENTIONS(store.get("nccl unique id"), "get of key 'nccl unique id'", "no answer within 0.2 s",
                        "no rank has set it");
  // The connection is out of step after a timed-out get; the store says so rather than answer wrongly.
  EXPECT_ERROR_MENTIONS(store.set("k", "v"), "an earlier request failed");
}

TEST(Rendezvous, ATakenPortAndABadHostAreNamed) {
  RendezvousStore first("localhost", 0, 0, 1, std::chrono::seconds(5));
  EXPECT_ERROR_MENTIONS(RendezvousStore("localhost", first.port(), 0, 1, std::chrono::seconds(5)),
                        "cannot listen on port " + std::to_string(first.port()), "pick another MASTER_PORT");
  // Without a resolver the lookup fails "temporarily" and is retried until the timeout: either way
  // the message names the host.
  EXPECT_ERROR_MENTIONS(RendezvousStore("no-such-host.invalid", 29500, 1, 2, std::chrono::milliseconds(300)),
                        "no-such-host.invalid", "rank 1 of 2");
  EXPECT_ERROR_MENTIONS(RendezvousStore("localhost", 0, 1, 2, std::chrono::seconds(1)), "[1, 65535]");
}

TEST(Rendezvous, ASetAfterRankZeroExitedSaysSo) {
  const int port = free_port();
  auto rank0 = std::make_unique<RendezvousStore>("localhost", port, 0, 2, std::chrono::seconds(5));
  RendezvousStore rank1("localhost", port, 1, 2, std::chrono::seconds(5));
  rank1.set("a", "1");
  rank0.reset();  // rank 0's process ends: its server closes every connection
  EXPECT_ERROR_MENTIONS(rank1.get("a"), "closed the connection", "has rank 0 exited?");
}

TEST(Rendezvous, AWatchdogHearsWhichPeersAreStuckAndWhichAreSilent) {
  // Rank 1 is stuck in the same collective and reports it; rank 2 is alive but silent (busy, or
  // stopped); rank 0's report names both.
  const int port = free_port();
  const char* const kStuck = "all_reduce (sum) of bucket 3, collective #12";
  std::vector<pid_t> children;
  for (int rank = 1; rank <= 2; rank++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 1;
      try {
        RendezvousStore store("localhost", port, rank, 3, std::chrono::seconds(20));
        if (rank == 1) exchange_peer_reports(store, kStuck, std::chrono::seconds(1));
        store.barrier("end");
        code = 0;
      } catch (const std::exception&) {
      }
      _exit(code);
    }
    children.push_back(pid);
  }
  RendezvousStore store("localhost", port, 0, 3, std::chrono::seconds(20));
  std::string report = exchange_peer_reports(store, kStuck, std::chrono::seconds(2));
  EXPECT_EQ(report,
            "rank 1: waits in all_reduce (sum) of bucket 3, collective #12; "
            "rank 2: reported nothing (dead, stopped, or not in a collective)");
  store.barrier("end");
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}
