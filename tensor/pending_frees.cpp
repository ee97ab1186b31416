#include "tensor/pending_frees.h"

namespace tg {

void PendingFrees::add(void* block, size_t size, const std::vector<void*>& streams, EventSource& events) {
  Pending p{block, size, {}, false};
  for (void* stream : streams) {
    void* event = events.record(stream);
    if (event) p.events.push_back(event);
    else p.unrecorded = true;
  }
  pending_.push_back(std::move(p));
  bytes_ += size;
}

size_t PendingFrees::collect(EventSource& events, const std::function<void(void*, size_t)>& ready) {
  size_t handed = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    bool done = !it->unrecorded;
    for (void* event : it->events) {
      if (!done) break;
      done = events.completed(event);
    }
    if (!done) {
      ++it;
      continue;
    }
    for (void* event : it->events) events.release(event);
    bytes_ -= it->size;
    ready(it->block, it->size);
    it = pending_.erase(it);
    handed++;
  }
  return handed;
}

size_t PendingFrees::drain(EventSource& events, const std::function<void(void*, size_t)>& ready) {
  size_t handed = pending_.size();
  for (Pending& p : pending_) {
    for (void* event : p.events) events.release(event);
    ready(p.block, p.size);
  }
  pending_.clear();
  bytes_ = 0;
  return handed;
}

}  // namespace tg
