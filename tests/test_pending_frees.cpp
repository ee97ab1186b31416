// The stream-aware bookkeeping of the CUDA caching allocator (tensor/pending_frees.h), with a fake
// event source: a freed block used by other streams comes back only once all of their events have
// completed, in free order; a block whose event could not be recorded waits for drain().
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <utility>
#include <vector>

#include "tensor/pending_frees.h"

using namespace tg;

namespace {

// Streams are small integers cast to pointers; each recorded event remembers its stream and the
// stream's clock at recording, and completes once the test has advanced that stream's clock past
// it (as a CUDA event completes once its stream's earlier work is done).
class FakeEvents : public EventSource {
 public:
  void* record(void* stream) override {
    if (fail_on.count(stream)) return nullptr;
    auto* event = new Recorded{stream, clock[stream] + 1};
    live.insert(event);
    return event;
  }
  bool completed(void* event) override {
    auto* e = static_cast<Recorded*>(event);
    EXPECT_TRUE(live.count(e)) << "queried an event that was released or never recorded";
    return clock[e->stream] >= e->needs;
  }
  void release(void* event) override {
    auto* e = static_cast<Recorded*>(event);
    EXPECT_EQ(live.erase(e), 1u) << "released an event twice or one never recorded";
    delete e;
  }
  void finish_work(void* stream) { clock[stream]++; }

  struct Recorded {
    void* stream;
    int needs;
  };
  std::map<void*, int> clock;
  std::set<Recorded*> live;
  std::set<void*> fail_on;  // streams on which record() fails
};

void* stream(int i) { return reinterpret_cast<void*>(static_cast<uintptr_t>(i)); }
void* block(int i) { return reinterpret_cast<void*>(static_cast<uintptr_t>(0x1000 * i)); }

struct Collected {
  std::vector<std::pair<void*, size_t>> blocks;
  std::function<void(void*, size_t)> sink() {
    return [this](void* b, size_t n) { blocks.emplace_back(b, n); };
  }
};

}  // namespace

TEST(PendingFrees, ABlockReturnsOnlyWhenEveryStreamHasFinished) {
  FakeEvents events;
  PendingFrees pending;
  Collected got;
  pending.add(block(1), 512, {stream(7), stream(8)}, events);
  EXPECT_EQ(pending.count(), 1u);
  EXPECT_EQ(pending.bytes(), 512u);
  EXPECT_EQ(pending.collect(events, got.sink()), 0u);  // neither stream has finished
  events.finish_work(stream(7));
  EXPECT_EQ(pending.collect(events, got.sink()), 0u);  // stream 8 still uses it
  EXPECT_TRUE(got.blocks.empty());
  events.finish_work(stream(8));
  EXPECT_EQ(pending.collect(events, got.sink()), 1u);
  ASSERT_EQ(got.blocks.size(), 1u);
  EXPECT_EQ(got.blocks[0], std::make_pair(block(1), size_t(512)));
  EXPECT_EQ(pending.count(), 0u);
  EXPECT_EQ(pending.bytes(), 0u);
  EXPECT_TRUE(events.live.empty());  // every event released
}

TEST(PendingFrees, WorkQueuedAfterTheFreeDoesNotHoldTheBlock) {
  // The event is recorded at the free: the block waits for the work before it, not for later work.
  FakeEvents events;
  PendingFrees pending;
  Collected got;
  events.finish_work(stream(1));  // work before the block's use, already done
  pending.add(block(1), 1024, {stream(1)}, events);
  events.finish_work(stream(1));  // the work that used the block
  EXPECT_EQ(pending.collect(events, got.sink()), 1u);
}

TEST(PendingFrees, BlocksComeBackInFreeOrderAsTheirStreamsFinish) {
  FakeEvents events;
  PendingFrees pending;
  Collected got;
  pending.add(block(1), 512, {stream(1)}, events);
  pending.add(block(2), 2048, {stream(2)}, events);
  pending.add(block(3), 4096, {stream(1)}, events);
  EXPECT_EQ(pending.bytes(), 512u + 2048u + 4096u);
  events.finish_work(stream(1));  // frees blocks 1 and 3, not 2
  EXPECT_EQ(pending.collect(events, got.sink()), 2u);
  ASSERT_EQ(got.blocks.size(), 2u);
  EXPECT_EQ(got.blocks[0].first, block(1));
  EXPECT_EQ(got.blocks[1].first, block(3));
  EXPECT_EQ(pending.bytes(), 2048u);
  events.finish_work(stream(2));
  EXPECT_EQ(pending.collect(events, got.sink()), 1u);
  EXPECT_EQ(got.blocks[2].first, block(2));
  EXPECT_TRUE(events.live.empty());
}

TEST(PendingFrees, AnUnrecordedEventHoldsTheBlockUntilDrain) {
  FakeEvents events;
  events.fail_on.insert(stream(9));
  PendingFrees pending;
  Collected got;
  pending.add(block(1), 512, {stream(1), stream(9)}, events);
  pending.add(block(2), 512, {stream(1)}, events);
  events.finish_work(stream(1));
  events.finish_work(stream(9));
  EXPECT_EQ(pending.collect(events, got.sink()), 1u);  // block 2 only: block 1's stream 9 is unknown
  EXPECT_EQ(got.blocks[0].first, block(2));
  // After a device synchronization every stream is done: drain hands over the rest.
  EXPECT_EQ(pending.drain(events, got.sink()), 1u);
  EXPECT_EQ(got.blocks[1].first, block(1));
  EXPECT_EQ(pending.count(), 0u);
  EXPECT_TRUE(events.live.empty());
}

TEST(PendingFrees, DrainReleasesEventsStillPending) {
  FakeEvents events;
  PendingFrees pending;
  Collected got;
  pending.add(block(1), 512, {stream(1), stream(2)}, events);
  EXPECT_EQ(events.live.size(), 2u);
  EXPECT_EQ(pending.drain(events, got.sink()), 1u);
  EXPECT_TRUE(events.live.empty());
  EXPECT_EQ(pending.bytes(), 0u);
}
