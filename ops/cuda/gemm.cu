// The GEMM launchers (argument checks, kernel choice by dtype) and the two bias helpers of Linear.
// The GEMM kernels themselves are in gemm_tensorcore.cu (bf16, f16) and gemm_simt.cu (f32).
#include <algorithm>
#include <string>

#include "ops/cuda/gemm_internal.cuh"

namespace tg::cuda {

using gemm_detail::GemmParams;

namespace {

constexpr uintptr_t kVectorBytes = 16;

void check_sizes(const char* op, int64_t M, int64_t N, int64_t K, int64_t batch) {
  if (M < 0 || N < 0 || K < 0 || batch < 0)
    throw Error(std::string(op) + ": sizes must be >= 0, got M=" + std::to_string(M) + " N=" + std::to_string(N) +
                " K=" + std::to_string(K) + " batch=" + std::to_string(batch));
}

}  // namespace

bool gemm_operand_vectorizable(DType dtype, const void* ptr, int64_t ld, int64_t batch, int64_t batch_stride) {
  const int64_t per_vector = static_cast<int64_t>(kVectorBytes / dtype_size(dtype));
  return ptr != nullptr && aligned16(ptr) && ld % per_vector == 0 && (batch <= 1 || batch_stride % per_vector == 0);
}

void gemm_batched(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c, const GemmEpilogue& epilogue) {
  const char* op = "gemm";
  check_sizes(op, M, N, K, batch);
  if (M == 0 || N == 0 || batch == 0) return;
  if (epilogue.pre_gelu && !epilogue.gelu)
    throw Error("gemm: the epilogue stores a pre-activation (pre_gelu) but applies no GELU");
  GemmParams p{};
  p.M = M;
  p.N = N;
  // alpha == 0 or K == 0: the product is zero and A, B (possibly null) are never read.
  p.K = alpha == 0.0f ? 0 : K;
  p.A = A;
  p.lda = lda;
  p.stride_a = stride_a;
  p.B = B;
  p.ldb = ldb;
  p.stride_b = stride_b;
  p.C = C;
  p.ldc = ldc;
  p.stride_c = stride_c;
  p.batch = batch;
  p.alpha = alpha;
  p.beta = beta;
  p.bias = epilogue.bias;
  p.gelu = epilogue.gelu;
  p.pre_gelu = epilogue.pre_gelu;
  p.residual = epilogue.residual;
  if (p.K > 0 && (!A || !B)) throw Error("gemm: A or B is null with K = " + std::to_string(K) + " > 0");
  if (!C) throw Error("gemm: C is null");
  const int64_t lda_min = trans_a ? M : K, ldb_min = trans_b ? K : N;
  // A and B are only checked when they are read: a contiguous (M, 0) operand has row stride 0,
  // which the fronts pass on as its ld (the CPU kernel accepts it).
  if ((p.K > 0 && (lda < std::max<int64_t>(lda_min, 1) || ldb < std::max<int64_t>(ldb_min, 1))) || ldc < N)
    throw Error("gemm: leading dimensions lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
                " ldc=" + std::to_string(ldc) + " are below the row lengths " + std::to_string(lda_min) + ", " +
                std::to_string(ldb_min) + ", " + std::to_string(N));
  p.a_vector = p.K > 0 && gemm_operand_vectorizable(dtype, A, lda, batch, stride_a);
  p.b_vector = p.K > 0 && gemm_operand_vectorizable(dtype, B, ldb, batch, stride_b);
  const int64_t per_vector = static_cast<int64_t>(kVectorBytes / dtype_size(dtype));
  p.epilogue_vector = aligned16(C) && aligned16(epilogue.bias) && aligned16(epilogue.pre_gelu) &&
                      aligned16(epilogue.residual) && ldc % per_vector == 0 &&
                      (batch <= 1 || stride_c % per_vector == 0);
  switch (dtype) {
    case DType::F32: gemm_detail::launch_gemm_simt(p, trans_a, trans_b); break;
    case DType::BF16: gemm_detail::launch_gemm_tensorcore<bf16>(p, trans_a, trans_b); break;
    case DType::F16: gemm_detail::launch_gemm_tensorcore<f16>(p, trans_a, trans_b); break;
    default: throw Error(std::string(op) + ": no CUDA kernel for dtype " + dtype_name(dtype) + " (f32, bf16 or f16)");
  }
}

void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc, const GemmEpilogue& epilogue) {
  gemm_batched(dtype, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1, 0, 0, 0, epilogue);
}

// ---- bias helpers ------------------------------------------------------------------------------

namespace {

// out (M,N) = bias (N) on every row; grid-stride over the M*N elements.
template <class T> __global__ void broadcast_rows_kernel(T* out, const T* bias, int64_t M, int64_t N) {
  const int64_t total = M * N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = bias[i % N];
}

constexpr int kSumColumns = 32, kSumRowThreads = 8;

// Row bands of the column sums: enough blocks to fill the GPU (about 1024 with the column
// blocks), at least 64 rows per band, and a function of (M, N) only so that the summation order,
// and so the result, never depends on the machine.
int64_t column_sum_bands(int64_t M, int64_t N) {
  const int64_t column_blocks = (N + kSumColumns - 1) / kSumColumns;
  int64_t bands = (1024 + column_blocks - 1) / column_blocks;
  bands = std::min(bands, (M + 63) / 64);
  return std::max<int64_t>(std::min<int64_t>(bands, 65535), 1);
}

// Pass 1. grid (column blocks, bands), block (32, 8). Thread (x, y) sums rows y, y+8, ... of band
// blockIdx.y in column blockIdx.x*32 + x; the 8 partials of a column are then added in y order and
// written to partial[band][column].
template <class T>
__global__ void column_sums_partial_kernel(float* partial, const T* dout, int64_t M, int64_t N, int64_t band_rows) {
  __shared__ float sums[kSumRowThreads][kSumColumns];
  const int64_t col = blockIdx.x * static_cast<int64_t>(kSumColumns) + threadIdx.x;
  const int64_t row_begin = blockIdx.y * band_rows, row_end = min(M, row_begin + band_rows);
  float s = 0.0f;
  if (col < N)
    for (int64_t row = row_begin + threadIdx.y; row < row_end; row += kSumRowThreads) s += to_f32(dout[row * N + col]);
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < N) {
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < kSumRowThreads; y++) total += sums[y][threadIdx.x];
    partial[blockIdx.y * N + col] = total;
  }
}

// Pass 2. One thread per column (grid-stride): dbias[col] += the bands' partials, in band order.
template <class T> __global__ void column_sums_finish_kernel(T* dbias, const float* partial, int64_t bands, int64_t N) {
  for (int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; col < N;
       col += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t b = 0; b < bands; b++) s += partial[b * N + col];
    dbias[col] = from_f32<T>(to_f32(dbias[col]) + s);
  }
}

}  // namespace

void broadcast_rows(DType dtype, void* out, const void* bias, int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return;
  TG_DISPATCH_FLOAT(dtype, "broadcast_rows", T, {
    broadcast_rows_kernel<T><<<grid_for(M * N, 256), 256, 0, stream()>>>(static_cast<T*>(out),
                                                                         static_cast<const T*>(bias), M, N);
    TG_CUDA_CHECK_LAUNCH("broadcast_rows_kernel");
  });
}

int64_t column_sums_scratch_floats(int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return 0;
  return column_sum_bands(M, N) * N;
}

void column_sums_accumulate(DType dtype, void* dbias, const void* dout, int64_t M, int64_t N, float* scratch) {
  if (M <= 0 || N <= 0) return;
  const int64_t bands = column_sum_bands(M, N), band_rows = (M + bands - 1) / bands;
  const int64_t column_blocks = (N + kSumColumns - 1) / kSumColumns;
  if (column_blocks > 0x7fffffff) throw Error("column_sums_accumulate: N = " + std::to_string(N) + " is too large");
  TG_DISPATCH_FLOAT(dtype, "column_sums_accumulate", T, {
    const dim3 grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(bands));
    column_sums_partial_kernel<T><<<grid, dim3(kSumColumns, kSumRowThreads), 0, stream()>>>(
        scratch, static_cast<const T*>(dout), M, N, band_rows);
    TG_CUDA_CHECK_LAUNCH("column_sums_partial_kernel");
    column_sums_finish_kernel<T><<<grid_for(N, 256), 256, 0, stream()>>>(static_cast<T*>(dbias), scratch, bands, N);
    TG_CUDA_CHECK_LAUNCH("column_sums_finish_kernel");
  });
}

}  // namespace tg::cuda
