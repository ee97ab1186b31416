#include "ops/cuda/profiler_events.h"

#include "tensor/cuda_check.h"

namespace tg::cuda {

void* profiler_event_record() {
  cudaEvent_t event;
  TG_CUDA_CHECK(cudaEventCreate(&event));
  TG_CUDA_CHECK(cudaEventRecord(event, stream()));
  return static_cast<void*>(event);
}

float profiler_event_elapsed_ms(void* start, void* stop) {
  TG_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0;
  TG_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
  return ms;
}

// Never throws: it runs from destructors, where an error from a dying context is moot.
void profiler_event_destroy(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

}  // namespace tg::cuda
