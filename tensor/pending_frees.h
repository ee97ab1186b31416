// The stream-aware half of the CUDA caching allocator, as plain host logic: blocks freed while
// work on another stream may still use them wait here until that work is done.
//
// Why. Every kernel of tilegrad runs on one in-order stream, so a freed block can be handed out at
// once: whatever still reads it is queued before whatever writes it next. A block also used on
// another stream (the NCCL engine's communication stream) has no such order: reusing it at once
// could let a new kernel overwrite a buffer that a collective is still sending. So, as PyTorch's
// record_stream does, the allocator remembers the other streams a block was used on, and when the
// block is freed records an event on each; the block goes back to the free lists only once every
// one of those events has completed.
//
// Events come from an EventSource: CUDA events in the allocator, a fake in the tests. Events and
// streams are opaque pointers here (cudaEvent_t and cudaStream_t are pointer types).
#pragma once
#include <cstddef>
#include <deque>
#include <functional>
#include <vector>

namespace tg {

class EventSource {
 public:
  virtual ~EventSource() = default;
  // An event recorded on `stream` now, or null when it could not be recorded.
  virtual void* record(void* stream) = 0;
  // Whether the work queued on the event's stream before it has finished.
  virtual bool completed(void* event) = 0;
  // The event is no longer needed.
  virtual void release(void* event) = 0;
};

class PendingFrees {
 public:
  // Holds `block` (of `size` bytes) until events recorded now on each of `streams` complete. When
  // an event cannot be recorded, the block waits for drain() (a whole-device synchronization).
  void add(void* block, size_t size, const std::vector<void*>& streams, EventSource& events);
  // Hands each block whose events have all completed to ready(block, size), in the order they were
  // freed, and forgets it and its events. Returns how many it handed over.
  size_t collect(EventSource& events, const std::function<void(void*, size_t)>& ready);
  // Hands over every block, done or not: for a caller that has just synchronized the device.
  size_t drain(EventSource& events, const std::function<void(void*, size_t)>& ready);

  size_t count() const { return pending_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Pending {
    void* block;
    size_t size;
    std::vector<void*> events;
    bool unrecorded;  // an event could not be recorded: only drain() frees it
  };
  std::deque<Pending> pending_;
  size_t bytes_ = 0;
};

}  // namespace tg
