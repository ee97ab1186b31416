#include "ops/cpu/concat.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace tg::cpu {

// Below this many bytes one thread copies faster than a team starts.
static constexpr int64_t kParallelMinBytes = int64_t{1} << 17;

// Each thread copies an equal share of the OUTPUT's bytes (cut at cache-line multiples), walking
// the runs that cross its share with one memcpy per piece. Splitting the output rather than the
// outer index keeps both cores busy for every dimension: a join along dimension 0 has outer = 1
// (one run per input), and a join along the last dimension has many short runs.
void concat_forward(void* out, const std::vector<const void*>& inputs, const std::vector<int64_t>& run_bytes,
                    int64_t outer) {
  const size_t count = inputs.size();
  std::vector<int64_t> offset(count + 1, 0);  // offset[i]: where input i's run starts in a row
  for (size_t i = 0; i < count; i++) offset[i + 1] = offset[i] + run_bytes[i];
  const int64_t row_bytes = offset[count], total = outer * row_bytes;
  if (total == 0) return;
  char* dst = static_cast<char*>(out);

#pragma omp parallel if (total >= kParallelMinBytes)
  {
    const int64_t threads = omp_get_num_threads(), thread = omp_get_thread_num();
    const int64_t share = ((total + threads - 1) / threads + 63) / 64 * 64;
    int64_t pos = std::min(total, thread * share);
    const int64_t end = std::min(total, pos + share);
    if (pos < end) {
      int64_t row = pos / row_bytes, column = pos - row * row_bytes;
      // The input whose run holds `column`: the last i with offset[i] <= column (empty runs, with
      // offset[i] == offset[i + 1], are passed over by upper_bound).
      size_t i = static_cast<size_t>(std::upper_bound(offset.begin(), offset.end(), column) - offset.begin()) - 1;
      while (pos < end) {
        const int64_t take = std::min(end - pos, offset[i + 1] - column);
        const char* src = static_cast<const char*>(inputs[i]) + row * run_bytes[i] + (column - offset[i]);
        std::memcpy(dst + pos, src, static_cast<size_t>(take));
        pos += take;
        column += take;
        while (i < count && column == offset[i + 1]) i++;  // next non-empty run of this row
        if (i == count) {                                  // or the first of the next row
          row++;
          column = 0;
          i = 0;
          while (offset[i + 1] == 0) i++;  // row_bytes > 0, so some run is non-empty
        }
      }
    }
  }
}

}  // namespace tg::cpu
