// The rendezvous of a torchrun-style launch: a small key-value store of byte strings over TCP.
// Rank 0 serves it at MASTER_PORT (a thread of rank 0's process); every rank, rank 0 included,
// connects to it as a client. The NCCL engine shares its unique id through it (rank 0 sets it, the
// others get it), and a barrier lets the ranks agree that everyone has arrived.
//
//   RendezvousStore store(launch.master_addr, launch.master_port, launch.rank, launch.world_size, timeout);
//   if (rank == 0) store.set("nccl id", bytes); else bytes = store.get("nccl id");
//   store.barrier("nccl bootstrap");
//
// Every wait is bounded by `timeout`: a rank that cannot reach the store retries connecting until
// then (rank 0 may start later than the others), a get waits until some rank sets the key, and a
// barrier until every rank has reached it. On timeout the error names this rank, the address
// (MASTER_ADDR:MASTER_PORT), the key or barrier, and for a barrier the ranks that did not arrive.
// IPv4 only; the store serves on every interface of rank 0's machine.
//
// The store lives as long as rank 0's object: rank 0 should destroy it only after a last barrier,
// which it leaves last, when no rank will ask it anything more.
#pragma once
#include <chrono>
#include <memory>
#include <string>

namespace tg::dist {

class RendezvousStore {
 public:
  // Rank 0 first listens on `port` (0: a free port, then port() says which). Throws naming the
  // address and the rank when the port is taken or the store cannot be reached within `timeout`.
  RendezvousStore(const std::string& host, int port, int rank, int world_size, std::chrono::milliseconds timeout);
  ~RendezvousStore();
  RendezvousStore(const RendezvousStore&) = delete;
  RendezvousStore& operator=(const RendezvousStore&) = delete;

  // Sets `key` to `value` (any bytes) for every rank; a later set replaces it.
  void set(const std::string& key, const std::string& value);
  // The value of `key`, waiting until some rank has set it.
  std::string get(const std::string& key);
  // Whether `key` is set now, without waiting.
  bool check(const std::string& key);
  // Returns once every rank has called barrier(name); rank 0 returns last, once every rank has
  // seen it complete, so that rank 0 may close the store after a final barrier. Each name is used
  // once per job.
  void barrier(const std::string& name);

  // The bound on every later wait (the NCCL watchdog asks its peers' state with a short one).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int port() const { return port_; }
  std::string address() const { return host_ + ":" + std::to_string(port_); }  // "localhost:29500"

  struct Server;

 private:
  // One request and its reply over the connection; throws naming `what` on timeout or a lost store.
  std::string request(char op, const std::string& key, const std::string& value, const std::string& what);
  // key += delta on the server (an unset key counts as 0); the new count.
  long long add(const std::string& key, long long delta, const std::string& what);
  std::string describe() const;  // "rendezvous store at host:port (MASTER_ADDR:MASTER_PORT), rank r of n"

  std::string host_;
  int port_ = 0;
  int rank_ = 0;
  int world_size_ = 1;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;         // this rank's connection
  bool broken_ = false;  // a request timed out or the store went away: the stream is out of step
  std::unique_ptr<Server> server_;  // rank 0 only
};

}  // namespace tg::dist
