#include "ops/cpu/elementwise.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Below this many elements a parallel region costs more than it saves (a fork/join is a few
// microseconds; one core adds ~4k floats per microsecond). On `parallel for simd` the clause must
// read `if (parallel : ...)`: a plain `if` applies to the simd part too (OpenMP 5), and gcc then
// runs small tensors through a scalar loop, 8x slower for GELU.
static constexpr int64_t kParallelMin = 1 << 15;
// A thread's unit of work along a row: big enough to amortise scheduling and the index arithmetic,
// small enough to balance the tail.
static constexpr int64_t kChunk = 1 << 14;

namespace {
struct AddOp { static float apply(float a, float b) { return a + b; } };
struct SubOp { static float apply(float a, float b) { return a - b; } };
struct MulOp { static float apply(float a, float b) { return a * b; } };
struct DivOp { static float apply(float a, float b) { return a / b; } };

// The operands' strides after dropping size-1 dimensions and merging neighbours that all three
// tensors walk as one (e.g. (4, 5) + (5) stays 2-D, (4, 5) + (4, 5) becomes 1-D of 20), so the
// inner loop is as long as possible and the common cases reach the dense code paths.
struct Layout {
  std::vector<int64_t> shape, a_strides, b_strides;
};

Layout coalesce(const std::vector<int64_t>& shape, const std::vector<int64_t>& a_strides,
                const std::vector<int64_t>& b_strides) {
  Layout reversed;  // innermost first while building
  for (size_t k = shape.size(); k-- > 0;) {
    if (shape[k] == 1) continue;
    if (!reversed.shape.empty()) {
      int64_t inner_size = reversed.shape.back();
      bool a_merges = a_strides[k] == reversed.a_strides.back() * inner_size;
      bool b_merges = b_strides[k] == reversed.b_strides.back() * inner_size;
      if (a_merges && b_merges) {
        reversed.shape.back() *= shape[k];
        continue;
      }
    }
    reversed.shape.push_back(shape[k]);
    reversed.a_strides.push_back(a_strides[k]);
    reversed.b_strides.push_back(b_strides[k]);
  }
  Layout layout;
  layout.shape.assign(reversed.shape.rbegin(), reversed.shape.rend());
  layout.a_strides.assign(reversed.a_strides.rbegin(), reversed.a_strides.rend());
  layout.b_strides.assign(reversed.b_strides.rbegin(), reversed.b_strides.rend());
  return layout;
}

// One contiguous run of the output; the dense and one-side-broadcast cases get SIMD loops.
template <class Op>
inline void binary_run(float* out, const float* a, int64_t a_stride, const float* b, int64_t b_stride, int64_t n) {
  if (a_stride == 1 && b_stride == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = Op::apply(a[i], b[i]);
  } else if (a_stride == 1 && b_stride == 0) {
    float bv = *b;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = Op::apply(a[i], bv);
  } else if (a_stride == 0 && b_stride == 1) {
    float av = *a;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = Op::apply(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; i++) out[i] = Op::apply(a[i * a_stride], b[i * b_stride]);
  }
}

template <class Op>
void binary_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                    const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n == 0) return;
  Layout layout = coalesce(shape, a_strides, b_strides);
  size_t nd = layout.shape.size();
  if (nd == 0) {  // every dimension has size 1
    out[0] = Op::apply(a[0], b[0]);
    return;
  }
  // Runs along the innermost dimension, cut into pieces of at most kChunk so that a few long rows
  // still spread over every thread; bias-like (rows, C) op (C) lands here with a dense inner loop.
  int64_t inner = layout.shape[nd - 1];
  int64_t a_inner = layout.a_strides[nd - 1], b_inner = layout.b_strides[nd - 1];
  int64_t pieces = (inner + kChunk - 1) / kChunk, rows = n / inner;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t task = 0; task < rows * pieces; task++) {
    int64_t r = task / pieces, start = (task % pieces) * kChunk, len = std::min(kChunk, inner - start);
    int64_t a_off = start * a_inner, b_off = start * b_inner, rest = r;
    for (size_t k = nd - 1; k-- > 0;) {
      int64_t i = rest % layout.shape[k];
      rest /= layout.shape[k];
      a_off += i * layout.a_strides[k];
      b_off += i * layout.b_strides[k];
    }
    binary_run<Op>(out + r * inner + start, a + a_off, a_inner, b + b_off, b_inner, len);
  }
}

// The rows-layout backward: one pass over (rows, C) that updates da row by row (when `da_row` is
// given) and adds the column sums of `db_term` into db (when db is given). Each thread sums blocks of
// kBlockRows rows in float (short, so little rounding) and adds each block into its own double
// partials; the partials are combined at the end, so no two threads write one column.
template <class DaRow, class DbTerm>
void rows_backward(float* da, float* db, int64_t rows, int64_t C, float db_sign, DaRow da_row, DbTerm db_term) {
  constexpr int64_t kBlockRows = 64;
  if (rows == 0 || C == 0) return;
  bool parallel = rows * C >= kParallelMin;
  int max_threads = parallel ? omp_get_max_threads() : 1;
  std::vector<double> partials(db ? static_cast<size_t>(max_threads) * C : 0, 0.0);
  int64_t blocks = (rows + kBlockRows - 1) / kBlockRows;
#pragma omp parallel if (parallel)
  {
    double* mine = db ? partials.data() + static_cast<size_t>(omp_get_thread_num()) * C : nullptr;
    std::vector<float> block(db ? C : 0);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
      int64_t r0 = blk * kBlockRows, r1 = std::min(rows, r0 + kBlockRows);
      if (db) std::fill(block.begin(), block.end(), 0.0f);
      for (int64_t r = r0; r < r1; r++) {
        if (da) da_row(r);
        if (db) {
          float* acc = block.data();
#pragma omp simd
          for (int64_t c = 0; c < C; c++) acc[c] += db_term(r, c);
        }
      }
      if (db)
        for (int64_t c = 0; c < C; c++) mine[c] += block[c];
    }
  }
  if (!db) return;
  for (int64_t c = 0; c < C; c++) {
    double total = 0;
    for (int t = 0; t < max_threads; t++) total += partials[static_cast<size_t>(t) * C + c];
    db[c] += db_sign * static_cast<float>(total);
  }
}
}  // namespace

void add_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<AddOp>(out, a, a_strides, b, b_strides, shape);
}
void sub_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<SubOp>(out, a, a_strides, b, b_strides, shape);
}
void mul_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<MulOp>(out, a, a_strides, b, b_strides, shape);
}
void div_forward(float* out, const float* a, const std::vector<int64_t>& a_strides, const float* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<DivOp>(out, a, a_strides, b, b_strides, shape);
}

void add_backward(float* da, float* db, const float* dout, int64_t n, float sign) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    if (da) da[i] += dout[i];
    if (db) db[i] += sign * dout[i];
  }
}

void add_rows_backward(float* da, float* db, const float* dout, int64_t rows, int64_t C, float sign) {
  rows_backward(
      da, db, rows, C, sign,
      [=](int64_t r) {
        float* d = da + r * C;
        const float* g = dout + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) d[c] += g[c];
      },
      [=](int64_t r, int64_t c) { return dout[r * C + c]; });
}

void mul_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    if (da) da[i] += dout[i] * b[i];
    if (db) db[i] += dout[i] * a[i];
  }
}

void mul_rows_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t rows, int64_t C) {
  rows_backward(
      da, db, rows, C, 1.0f,
      [=](int64_t r) {
        float* d = da + r * C;
        const float* g = dout + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) d[c] += g[c] * b[c];
      },
      [=](int64_t r, int64_t c) { return dout[r * C + c] * a[r * C + c]; });
}

void div_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float inv = 1.0f / b[i];
    if (da) da[i] += dout[i] * inv;
    if (db) db[i] -= dout[i] * a[i] * inv * inv;
  }
}

void div_rows_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t rows, int64_t C) {
  rows_backward(
      da, db, rows, C, -1.0f,
      [=](int64_t r) {
        float* d = da + r * C;
        const float* g = dout + r * C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) d[c] += g[c] / b[c];
      },
      [=](int64_t r, int64_t c) {
        float inv = 1.0f / b[c];
        return dout[r * C + c] * a[r * C + c] * inv * inv;
      });
}

void scale_forward(float* out, const float* inp, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] * s;
}

void scale_backward(float* dinp, const float* dout, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * s;
}

void add_scalar_forward(float* out, const float* inp, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] + s;
}

TG_CPU_ISA_END
}  // namespace tg::cpu
