#include "dist/rendezvous_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "tensor/error.h"

namespace tg::dist {

// The wire format, the same both ways. A request: one op byte ('S' set, 'G' get, 'C' check, 'A'
// add), the key and the value, each as a 4-byte little-endian length and its bytes. A reply: one
// length and its bytes (get: the value; check: "1" or "0"; add: the new count in decimal).
namespace {

using Clock = std::chrono::steady_clock;

void put_length(std::string& out, size_t n) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
}
uint32_t get_length(const std::string& in, size_t at) {
  uint32_t n = 0;
  for (int i = 0; i < 4; i++) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return n;
}
std::string framed(const std::string& bytes) {
  std::string out;
  put_length(out, bytes.size());
  return out + bytes;
}

// Sends every byte (blocking socket); false when the peer is gone. MSG_NOSIGNAL: a closed peer
// is an error to report, not a SIGPIPE that ends the process.
bool send_all(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

int millis_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

std::string seconds_text(std::chrono::milliseconds t) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", t.count() / 1000.0);
  return text;
}

}  // namespace

// Rank 0's server: one thread polling the listening socket and every client connection. Gets of a
// key not yet set are parked until a set or add of that key answers them.
struct RendezvousStore::Server {
  int listen_fd = -1;
  int wake[2] = {-1, -1};  // a write to wake[1] stops the thread
  std::thread thread;

  struct Client {
    int fd;
    std::string in;  // bytes received and not yet parsed
  };
  std::vector<Client> clients;
  std::map<std::string, std::string> values;
  std::map<std::string, std::vector<int>> parked;  // key -> clients waiting in get

  // A lost client is not an error here: it is dropped when its next read fails.
  void reply(int fd, const std::string& bytes) { send_all(fd, framed(bytes)); }

  void store(const std::string& key, const std::string& value) {
    values[key] = value;
    auto it = parked.find(key);
    if (it == parked.end()) return;
    for (int fd : it->second) reply(fd, value);
    parked.erase(it);
  }

  void handle(int fd, char op, const std::string& key, const std::string& value) {
    auto it = values.find(key);
    switch (op) {
      case 'S':
        store(key, value);
        reply(fd, "");
        return;
      case 'G':
        if (it != values.end()) reply(fd, it->second);
        else parked[key].push_back(fd);
        return;
      case 'C':
        reply(fd, it != values.end() ? "1" : "0");
        return;
      case 'A': {
        // strtoll, not stoll: a malformed count (a stray client) must not throw in the server thread.
        long long count = (it != values.end() ? std::strtoll(it->second.c_str(), nullptr, 10) : 0) +
                          std::strtoll(value.c_str(), nullptr, 10);
        store(key, std::to_string(count));
        reply(fd, std::to_string(count));
        return;
      }
    }
  }

  // Parses and answers every complete request in the client's buffer.
  void serve(Client& client) {
    std::string& in = client.in;
    size_t at = 0;
    for (;;) {
      if (in.size() - at < 5) break;
      size_t key_len = get_length(in, at + 1);
      if (in.size() - at < 5 + key_len + 4) break;
      size_t value_len = get_length(in, at + 5 + key_len);
      size_t total = 5 + key_len + 4 + value_len;
      if (in.size() - at < total) break;
      handle(client.fd, in[at], in.substr(at + 5, key_len), in.substr(at + 9 + key_len, value_len));
      at += total;
    }
    in.erase(0, at);
  }

  void drop(size_t index) {
    int fd = clients[index].fd;
    for (auto& [key, fds] : parked) fds.erase(std::remove(fds.begin(), fds.end(), fd), fds.end());
    ::close(fd);
    clients.erase(clients.begin() + static_cast<long>(index));
  }

  void run() {
    for (;;) {
      std::vector<pollfd> fds = {{wake[0], POLLIN, 0}, {listen_fd, POLLIN, 0}};
      for (const Client& c : clients) fds.push_back({c.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents) return;
      if (fds[1].revents & POLLIN) {
        int fd = ::accept(listen_fd, nullptr, nullptr);
        if (fd >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          clients.push_back({fd, ""});
        }
      }
      // Backwards, so that dropping a client leaves the indices still to visit in place.
      for (size_t i = fds.size() - 1; i >= 2; i--) {
        if (!fds[i].revents) continue;
        size_t index = i - 2;
        char buffer[4096];
        ssize_t n = ::recv(clients[index].fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          drop(index);
          continue;
        }
        clients[index].in.append(buffer, static_cast<size_t>(n));
        serve(clients[index]);
      }
    }
  }

  ~Server() {
    if (thread.joinable()) {
      char stop = 1;
      if (::write(wake[1], &stop, 1) != 1) {}  // the thread is blocked in poll; one byte wakes it
      thread.join();
    }
    for (Client& c : clients) ::close(c.fd);
    for (int fd : {listen_fd, wake[0], wake[1]})
      if (fd >= 0) ::close(fd);
  }
};

std::string RendezvousStore::describe() const {
  return "rendezvous store at " + address() + " (MASTER_ADDR:MASTER_PORT), rank " + std::to_string(rank_) + " of " +
         std::to_string(world_size_);
}

RendezvousStore::RendezvousStore(const std::string& host, int port, int rank, int world_size,
                                 std::chrono::milliseconds timeout)
    : host_(host), port_(port), rank_(rank), world_size_(world_size), timeout_(timeout) {
  if (port < 0 || port > 65535 || (port == 0 && rank != 0))
    throw Error("rendezvous store at " + address() + ": the port must be in [1, 65535]" +
                (rank == 0 ? " (or 0 for a free one)" : ""));
  if (rank < 0 || rank >= world_size)
    throw Error(describe() + ": the rank must be in [0, world size)");

  std::string connect_host = host;
  if (rank == 0) {
    // Rank 0 serves on every interface, and reaches its own server through the loopback.
    server_ = std::make_unique<Server>();
    Server& s = *server_;
    s.listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s.listen_fd < 0 || ::pipe2(s.wake, O_CLOEXEC) != 0)
      throw Error(describe() + ": cannot create a socket: " + std::strerror(errno));
    int one = 1;
    setsockopt(s.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw Error(describe() + ": rank 0 cannot listen on port " + std::to_string(port) + ": " + std::strerror(errno) +
                  (errno == EADDRINUSE ? " (another job or a previous run holds it; pick another MASTER_PORT)" : ""));
    socklen_t length = sizeof addr;
    getsockname(s.listen_fd, reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
    if (::listen(s.listen_fd, 1024) != 0) throw Error(describe() + ": listen: " + std::strerror(errno));
    s.thread = std::thread([&s] { s.run(); });
    connect_host = "127.0.0.1";
  }

  // Connect, retrying until the deadline: the other ranks may start before rank 0 listens.
  const Clock::time_point deadline = Clock::now() + timeout_;
  std::string last_error;
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int status = ::getaddrinfo(connect_host.c_str(), std::to_string(port_).c_str(), &hints, &found);
    if (status == 0) {
      for (addrinfo* a = found; a && fd_ < 0; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          fd_ = fd;
        } else {
          last_error = std::string("connect: ") + std::strerror(errno);
          ::close(fd);
        }
      }
      ::freeaddrinfo(found);
    } else if (status != EAI_AGAIN) {
      throw Error(describe() + ": cannot resolve the host \"" + connect_host + "\": " + ::gai_strerror(status));
    } else {
      last_error = std::string("getaddrinfo: ") + ::gai_strerror(status);
    }
    if (fd_ >= 0) break;
    if (Clock::now() >= deadline)
      throw Error(describe() + ": could not reach the store within " + seconds_text(timeout_) +
                  " (--dist-timeout): rank 0 serves it; has it started, with the same MASTER_ADDR and "
                  "MASTER_PORT? (last try: " + last_error + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RendezvousStore::~RendezvousStore() {
  if (fd_ >= 0) ::close(fd_);
}

std::string RendezvousStore::request(char op, const std::string& key, const std::string& value,
                                     const std::string& what) {
  if (broken_)
    throw Error(describe() + ": " + what + ": an earlier request failed, so the connection is out of step");
  std::string message(1, op);
  message += framed(key) + framed(value);
  if (!send_all(fd_, message)) {
    broken_ = true;
    throw Error(describe() + ": " + what + ": the store closed the connection (has rank 0 exited?)");
  }
  const Clock::time_point deadline = Clock::now() + timeout_;
  std::string in;
  for (;;) {
    if (in.size() >= 4 && in.size() - 4 >= get_length(in, 0)) return in.substr(4);
    pollfd p{fd_, POLLIN, 0};
    int ready = ::poll(&p, 1, millis_left(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      broken_ = true;
      throw Error(describe() + ": " + what + " got no answer within " + seconds_text(timeout_) + " (--dist-timeout)");
    }
    char buffer[4096];
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      throw Error(describe() + ": " + what + ": the store closed the connection (has rank 0 exited?)");
    }
    in.append(buffer, static_cast<size_t>(n));
  }
}

void RendezvousStore::set(const std::string& key, const std::string& value) {
  request('S', key, value, "set of key '" + key + "'");
}

std::string RendezvousStore::get(const std::string& key) {
  try {
    return request('G', key, "", "get of key '" + key + "'");
  } catch (const Error& e) {
    if (std::string(e.what()).find("no answer") == std::string::npos) throw;
    throw Error(std::string(e.what()) + ": no rank has set it");
  }
}

bool RendezvousStore::check(const std::string& key) {
  return request('C', key, "", "check of key '" + key + "'") == "1";
}

long long RendezvousStore::add(const std::string& key, long long delta, const std::string& what) {
  return std::strtoll(request('A', key, std::to_string(delta), what).c_str(), nullptr, 10);
}

void RendezvousStore::barrier(const std::string& name) {
  const std::string prefix = "barrier/" + name + "/";
  set(prefix + "rank " + std::to_string(rank_), "");
  const std::string what = "barrier '" + name + "'";
  if (add(prefix + "count", 1, what) == world_size_) set(prefix + "done", "");
  // Polled rather than a parked get, so that after a timeout the connection is still in step to
  // ask which ranks are missing.
  const Clock::time_point deadline = Clock::now() + timeout_;
  auto pause = std::chrono::milliseconds(1);
  while (!check(prefix + "done")) {
    if (Clock::now() >= deadline) {
      std::string missing;
      int count = 0;
      for (int r = 0; r < world_size_; r++) {
        if (check(prefix + "rank " + std::to_string(r))) continue;
        if (count++ < 8) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
      if (count > 8) missing += " and " + std::to_string(count - 8) + " more";
      throw Error(describe() + ": barrier '" + name + "' timed out after " + seconds_text(timeout_) +
                  " (--dist-timeout): " + std::to_string(count) + " of " + std::to_string(world_size_) +
                  " ranks did not arrive (rank" + (count == 1 ? " " : "s ") + missing +
                  "); are they running, with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT?");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
  // Rank 0 leaves last: the others may still be polling for "done", and its store must outlive
  // their polls when this barrier is the job's last use of it.
  add(prefix + "left", 1, what);
  if (rank_ != 0) return;
  pause = std::chrono::milliseconds(1);
  while (add(prefix + "left", 0, what) < world_size_) {
    if (Clock::now() >= deadline)
      throw Error(describe() + ": barrier '" + name + "': every rank arrived, but not all saw it within " +
                  seconds_text(timeout_) + " (--dist-timeout)");
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace tg::dist
