// CUDA events for the profiler (ops/profiler.h): a pair recorded on the compute stream around an
// op's launch times the kernels it queued, without synchronising the launch.
#pragma once

namespace tg::cuda {

// Records a new event on cuda::stream() and returns it (a cudaEvent_t, opaque to callers).
void* profiler_event_record();
// Milliseconds between two recorded events; waits for `stop` to complete.
float profiler_event_elapsed_ms(void* start, void* stop);
void profiler_event_destroy(void* event);

}  // namespace tg::cuda
