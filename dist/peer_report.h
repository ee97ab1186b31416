// What the ranks of a stuck job were doing, gathered through the rendezvous store when a watchdog
// fires (the NCCL engine's, in a torchrun-style launch).
//
// Each rank whose watchdog fires posts what it waits for, then listens for `grace` to the others.
// A peer stuck in the same collective timed out at about the same moment and posts too; a peer
// that is dead, stopped, or busy outside any collective posts nothing, and the report says so. So
// the report tells a hung collective (everyone waiting) from a missing rank (one silent).
#pragma once
#include <chrono>
#include <string>

#include "dist/rendezvous_store.h"

namespace tg::dist {

// Posts `doing` ("all_reduce (sum) of bucket 3 (f32, shape (1000)), collective #12") as this
// rank's state and returns the peers' as "rank 1: waits in ...; rank 2: reported nothing (dead,
// stopped, or not in a collective)", waiting at most `grace` for them. Throws when the store
// cannot be reached (its rank 0 is gone).
std::string exchange_peer_reports(RendezvousStore& store, const std::string& doing, std::chrono::milliseconds grace);

}  // namespace tg::dist
