// CUDA elementwise arithmetic: broadcasting a op b, its backward in the dense and rows layouts, and
// the tensor-scalar ops. Contracts in ops/cuda/elementwise.h. All of it is memory-bound: the fast
// paths move 16 bytes per access (ops/cuda/elementwise.cuh) and do nothing else per element but the
// arithmetic.
#include "ops/cuda/elementwise.h"

#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/elementwise.cuh"
#include "ops/cuda/reduce.cuh"

namespace tg::cuda {

namespace {

struct AddOp { __device__ static float apply(float a, float b) { return a + b; } };
struct SubOp { __device__ static float apply(float a, float b) { return a - b; } };
struct MulOp { __device__ static float apply(float a, float b) { return a * b; } };
struct DivOp { __device__ static float apply(float a, float b) { return a / b; } };

constexpr int kThreads = 256;

// ---- forward -------------------------------------------------------------------------------

// One operand of the dense/row fast path, read at flat output index i: cols == 0 dense (element i),
// cols == 1 a single broadcast element, cols = C > 1 one row of C broadcast over the rows (element
// i % C). A pack never crosses a row end: the vector path runs only when C is a multiple of the
// pack size, and packs start at multiples of it.
template <int W, class T>
__device__ __forceinline__ void load_operand(const T* p, int64_t cols, int64_t i, float (&x)[W]) {
  if (cols == 0) {
    load_f32(x, p + i);
  } else if (cols == 1) {
    const float v = to_f32(*p);
#pragma unroll
    for (int k = 0; k < W; k++) x[k] = v;
  } else {
    load_f32(x, p + i % cols);
  }
}

// out (n) = a op b, each operand dense, a row or a scalar (see load_operand).
template <class Op, class T>
struct BinaryBody {
  T* out;
  const T* a;
  const T* b;
  int64_t a_cols, b_cols;
  template <int W>
  __device__ void run(int64_t i) const {
    float x[W], y[W], z[W];
    load_operand<W>(a, a_cols, i, x);
    load_operand<W>(b, b_cols, i, y);
#pragma unroll
    for (int k = 0; k < W; k++) z[k] = Op::apply(x[k], y[k]);
    store_f32(out + i, z);
  }
};

// out (n, contiguous) = a op b with a, b at the strides of `layout`. Grid-stride, one element per
// thread per step; the offsets cost one division per merged dimension, which only the rare
// non-contiguous or mid-dimension broadcasts pay.
template <class Op, class T>
__global__ void binary_strided_kernel(T* out, const T* a, const T* b, int64_t n, StridedLayout layout) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t a_offset, b_offset;
    strided_offsets(layout, i, a_offset, b_offset);
    out[i] = from_f32<T>(Op::apply(to_f32(a[a_offset]), to_f32(b[b_offset])));
  }
}

// How an operand of the merged layout reads in the fast path (its `cols`, see load_operand), or
// false when it needs the strided walk. ndim 1: stride 1 dense, 0 scalar. ndim 2 (rows, C): strides
// (C, 1) dense, (0, 1) a row, (0, 0) a scalar.
bool fast_operand(const StridedLayout& layout, int which, int64_t& cols) {
  if (layout.ndim == 0) {
    cols = 0;
    return true;
  }
  const int64_t* s = layout.strides[which];
  if (layout.ndim == 1) {
    if (s[0] != 0 && s[0] != 1) return false;
    cols = s[0] == 1 ? 0 : 1;
    return true;
  }
  if (layout.ndim != 2) return false;
  const int64_t C = layout.shape[1];
  if (s[0] == C && s[1] == 1) cols = 0;
  else if (s[0] == 0 && s[1] == 1) cols = C;
  else if (s[0] == 0 && s[1] == 0) cols = 1;
  else return false;
  return true;
}

// 16-byte packs of this operand stay aligned and inside one row: checked on the host before the
// vector path is chosen.
bool operand_vectorizable(const void* p, int64_t cols, int pack) {
  if (cols == 1) return true;  // read as one element, broadcast
  return aligned16(p) && cols % pack == 0;
}

template <class Op>
void binary_forward(const char* op, DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides,
                    const void* b, const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t size : shape) n *= size;
  if (n == 0) return;
  StridedLayout layout;
  if (!merge_dimensions(shape, a_strides, b_strides, layout))
    throw Error(std::string(op) + ": the operands need more than " + std::to_string(kMaxDims) +
                " dimensions after merging; the CUDA kernel handles at most " + std::to_string(kMaxDims));
  int64_t a_cols = 0, b_cols = 0;
  const bool fast = fast_operand(layout, 0, a_cols) && fast_operand(layout, 1, b_cols);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    if (fast) {
      constexpr int kPack = kVec16<T>;
      const bool vectorized = aligned16(out) && operand_vectorizable(a, a_cols, kPack) &&
                              operand_vectorizable(b, b_cols, kPack);
      launch_pack_loop<T>("binary_forward", n, vectorized,
                          BinaryBody<Op, T>{static_cast<T*>(out), static_cast<const T*>(a),
                                            static_cast<const T*>(b), a_cols, b_cols});
    } else {
      binary_strided_kernel<Op, T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
          static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n, layout);
      TG_CUDA_CHECK_LAUNCH("binary_strided_kernel");
    }
  });
}

// ---- backward, dense -----------------------------------------------------------------------

// da (n) += dout; db (n) += sign * dout; either may be null.
template <class T>
struct AddBackwardBody {
  T* da;
  T* db;
  const T* dout;
  float sign;
  template <int W>
  __device__ void run(int64_t i) const {
    float g[W];
    load_f32(g, dout + i);
    if (da) add_f32<W>(da + i, g);
    if (db) {
#pragma unroll
      for (int k = 0; k < W; k++) g[k] *= sign;
      add_f32<W>(db + i, g);
    }
  }
};

// da (n) += dout * b; db (n) += dout * a.
template <class T>
struct MulBackwardBody {
  T* da;
  T* db;
  const T* dout;
  const T* a;
  const T* b;
  template <int W>
  __device__ void run(int64_t i) const {
    float g[W], other[W], term[W];
    load_f32(g, dout + i);
    if (da) {
      load_f32(other, b + i);
#pragma unroll
      for (int k = 0; k < W; k++) term[k] = g[k] * other[k];
      add_f32<W>(da + i, term);
    }
    if (db) {
      load_f32(other, a + i);
#pragma unroll
      for (int k = 0; k < W; k++) term[k] = g[k] * other[k];
      add_f32<W>(db + i, term);
    }
  }
};

// da (n) += dout / b; db (n) -= dout * a / b^2 (as dout * a * inv * inv, like the CPU kernel).
template <class T>
struct DivBackwardBody {
  T* da;
  T* db;
  const T* dout;
  const T* a;
  const T* b;
  template <int W>
  __device__ void run(int64_t i) const {
    float g[W], inv[W], term[W];
    load_f32(g, dout + i);
    load_f32(inv, b + i);
#pragma unroll
    for (int k = 0; k < W; k++) inv[k] = 1.0f / inv[k];
    if (da) {
#pragma unroll
      for (int k = 0; k < W; k++) term[k] = g[k] * inv[k];
      add_f32<W>(da + i, term);
    }
    if (db) {
      float x[W];
      load_f32(x, a + i);
#pragma unroll
      for (int k = 0; k < W; k++) term[k] = -(g[k] * x[k] * inv[k] * inv[k]);
      add_f32<W>(db + i, term);
    }
  }
};

// ---- backward, rows layout: a (rows, C) dense, b (C) -----------------------------------------

// The per-element terms of each op: what da gains from dout (g) and the row operand (b), and what
// the column sum of db adds up, from g and the dense operand (a). The sign of db is applied once to
// the column total.
struct AddRows {
  static constexpr bool kReadsOperands = false;
  __device__ static float da_term(float g, float) { return g; }
  __device__ static float db_term(float g, float, float) { return g; }
};
struct MulRows {
  static constexpr bool kReadsOperands = true;
  __device__ static float da_term(float g, float b) { return g * b; }
  __device__ static float db_term(float g, float a, float) { return g * a; }
};
struct DivRows {
  static constexpr bool kReadsOperands = true;
  __device__ static float da_term(float g, float b) { return g / b; }
  __device__ static float db_term(float g, float a, float b) {
    const float inv = 1.0f / b;
    return g * a * inv * inv;
  }
};

// With db: a column-sum body (ops/cuda/reduce.cuh) over (1, rows, C) that also updates da.
template <class Kind, class T>
struct RowsColumnBody {
  T* da;
  T* db;
  const T* dout;
  const T* a;
  const T* b;
  int64_t C;
  float db_sign;
  __device__ float visit(int64_t, int64_t r, int64_t c) const {
    const int64_t i = r * C + c;
    const float g = to_f32(dout[i]);
    const float av = Kind::kReadsOperands ? to_f32(a[i]) : 0.0f;
    const float bv = Kind::kReadsOperands ? to_f32(b[c]) : 0.0f;
    if (da) da[i] = from_f32<T>(to_f32(da[i]) + Kind::da_term(g, bv));
    return Kind::db_term(g, av, bv);
  }
  __device__ void finish(int64_t, int64_t c, float total) const {
    db[c] = from_f32<T>(to_f32(db[c]) + db_sign * total);
  }
};

// Without db: da (rows * C) += da_term(dout, b[i % C]) as a flat pack loop.
template <class Kind, class T>
struct RowsDaBody {
  T* da;
  const T* dout;
  const T* b;
  int64_t C;
  template <int W>
  __device__ void run(int64_t i) const {
    float g[W], bv[W], term[W];
    load_f32(g, dout + i);
    if (Kind::kReadsOperands) load_operand<W>(b, C, i, bv);
#pragma unroll
    for (int k = 0; k < W; k++) term[k] = Kind::da_term(g[k], Kind::kReadsOperands ? bv[k] : 0.0f);
    add_f32<W>(da + i, term);
  }
};

template <class Kind>
void rows_backward(const char* op, DType dtype, void* da, void* db, const void* dout, const void* a, const void* b,
                   int64_t rows, int64_t C, float db_sign, float* scratch) {
  if (rows * C == 0 && !db) return;
  TG_DISPATCH_FLOAT(dtype, op, T, {
    if (db) {
      const ColumnPlan plan = plan_columns(1, rows, C);
      launch_column_sums(op, plan, scratch,
                         RowsColumnBody<Kind, T>{static_cast<T*>(da), static_cast<T*>(db),
                                                 static_cast<const T*>(dout), static_cast<const T*>(a),
                                                 static_cast<const T*>(b), C, db_sign});
    } else if (da) {
      const bool vectorized = all_aligned16({da, dout, b}) && C % kVec16<T> == 0;
      launch_pack_loop<T>("rows_backward_da", rows * C, vectorized,
                          RowsDaBody<Kind, T>{static_cast<T*>(da), static_cast<const T*>(dout),
                                              static_cast<const T*>(b), C});
    }
  });
}

// ---- tensor-scalar -------------------------------------------------------------------------

// out (n) = inp * scale + shift: scale_forward (shift 0) and add_scalar_forward (scale 1) in one body.
template <class T>
struct AffineBody {
  T* out;
  const T* inp;
  float scale, shift;
  template <int W>
  __device__ void run(int64_t i) const {
    float x[W];
    load_f32(x, inp + i);
#pragma unroll
    for (int k = 0; k < W; k++) x[k] = x[k] * scale + shift;
    store_f32(out + i, x);
  }
};

// dinp (n) += dout * s
template <class T>
struct ScaleBackwardBody {
  T* dinp;
  const T* dout;
  float s;
  template <int W>
  __device__ void run(int64_t i) const {
    float g[W];
    load_f32(g, dout + i);
#pragma unroll
    for (int k = 0; k < W; k++) g[k] *= s;
    add_f32<W>(dinp + i, g);
  }
};

}  // namespace

void add_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<AddOp>("add", dtype, out, a, a_strides, b, b_strides, shape);
}
void sub_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<SubOp>("sub", dtype, out, a, a_strides, b, b_strides, shape);
}
void mul_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<MulOp>("mul", dtype, out, a, a_strides, b, b_strides, shape);
}
void div_forward(DType dtype, void* out, const void* a, const std::vector<int64_t>& a_strides, const void* b,
                 const std::vector<int64_t>& b_strides, const std::vector<int64_t>& shape) {
  binary_forward<DivOp>("div", dtype, out, a, a_strides, b, b_strides, shape);
}

void add_backward(DType dtype, void* da, void* db, const void* dout, int64_t n, float sign) {
  if (!da && !db) return;
  TG_DISPATCH_FLOAT(dtype, "add_backward", T, {
    launch_pack_loop<T>("add_backward", n, all_aligned16({da, db, dout}),
                        AddBackwardBody<T>{static_cast<T*>(da), static_cast<T*>(db), static_cast<const T*>(dout), sign});
  });
}

void mul_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t n) {
  if (!da && !db) return;
  TG_DISPATCH_FLOAT(dtype, "mul_backward", T, {
    launch_pack_loop<T>("mul_backward", n, all_aligned16({da, db, dout, a, b}),
                        MulBackwardBody<T>{static_cast<T*>(da), static_cast<T*>(db), static_cast<const T*>(dout),
                                           static_cast<const T*>(a), static_cast<const T*>(b)});
  });
}

void div_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t n) {
  if (!da && !db) return;
  TG_DISPATCH_FLOAT(dtype, "div_backward", T, {
    launch_pack_loop<T>("div_backward", n, all_aligned16({da, db, dout, a, b}),
                        DivBackwardBody<T>{static_cast<T*>(da), static_cast<T*>(db), static_cast<const T*>(dout),
                                           static_cast<const T*>(a), static_cast<const T*>(b)});
  });
}

int64_t rows_backward_scratch_floats(int64_t rows, int64_t C) { return plan_columns(1, rows, C).scratch_floats(); }

void add_rows_backward(DType dtype, void* da, void* db, const void* dout, int64_t rows, int64_t C, float sign,
                       float* scratch) {
  rows_backward<AddRows>("add_rows_backward", dtype, da, db, dout, nullptr, nullptr, rows, C, sign, scratch);
}

void mul_rows_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t rows,
                       int64_t C, float* scratch) {
  rows_backward<MulRows>("mul_rows_backward", dtype, da, db, dout, a, b, rows, C, 1.0f, scratch);
}

void div_rows_backward(DType dtype, void* da, void* db, const void* dout, const void* a, const void* b, int64_t rows,
                       int64_t C, float* scratch) {
  rows_backward<DivRows>("div_rows_backward", dtype, da, db, dout, a, b, rows, C, -1.0f, scratch);
}

void scale_forward(DType dtype, void* out, const void* inp, float s, int64_t n) {
  TG_DISPATCH_FLOAT(dtype, "scale", T, {
    launch_pack_loop<T>("scale_forward", n, all_aligned16({out, inp}),
                        AffineBody<T>{static_cast<T*>(out), static_cast<const T*>(inp), s, 0.0f});
  });
}

void scale_backward(DType dtype, void* dinp, const void* dout, float s, int64_t n) {
  TG_DISPATCH_FLOAT(dtype, "scale_backward", T, {
    launch_pack_loop<T>("scale_backward", n, all_aligned16({dinp, dout}),
                        ScaleBackwardBody<T>{static_cast<T*>(dinp), static_cast<const T*>(dout), s});
  });
}

void add_scalar_forward(DType dtype, void* out, const void* inp, float s, int64_t n) {
  TG_DISPATCH_FLOAT(dtype, "add_scalar", T, {
    launch_pack_loop<T>("add_scalar_forward", n, all_aligned16({out, inp}),
                        AffineBody<T>{static_cast<T*>(out), static_cast<const T*>(inp), 1.0f, s});
  });
}

}  // namespace tg::cuda
