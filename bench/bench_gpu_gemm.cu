// GEMM on the GPU: tilegrad's kernels (ops/cuda/gemm.h) against cuBLAS in the same run.
//
//   bf16 (f32 accumulation) at the GPT-2 124M shapes with M = 16384 tokens, in the three layouts
//   a Linear uses: forward y = x W^T (A (M,K), B = W (N,K) transposed), dX = dY W, dW = dY^T X;
//   bf16 squares 2048^3, 4096^3, 8192^3; f32 4096^3 against cublasSgemm (no TF32 on either side).
// Each case first checks that both results agree (relative error ||ours - cuBLAS|| / ||cuBLAS||),
// then times each side: median of 25 runs after 3 warm-up runs, cudaEvents around every run.
//
//   bench_gpu_gemm [--csv]
// Exits 0 with a message when there is no GPU.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cuda/gemm.h"
#include "tensor/dtype.h"

namespace {

#define CHECK_CUDA(call)                                                                            \
  do {                                                                                              \
    cudaError_t e_ = (call);                                                                        \
    if (e_ != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "%s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)
#define CHECK_CUBLAS(call)                                                                          \
  do {                                                                                              \
    cublasStatus_t s_ = (call);                                                                     \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                              \
      std::fprintf(stderr, "%s failed at %s:%d: status %d\n", #call, __FILE__, __LINE__, int(s_)); \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

constexpr int kWarmup = 3, kRepeats = 25;

// Uniform values in [-1, 1) from a hash of the index: reproducible, no host transfer.
template <class T> __global__ void fill_kernel(T* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ (seed * 0x9e3779b9u) ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    const float v = (h & 0xffffff) / 8388608.0f - 1.0f;
    p[i] = static_cast<T>(v);
  }
}

template <class T> T* device_random(int64_t n, uint32_t seed) {
  T* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * sizeof(T)));
  fill_kernel<T><<<1024, 256>>>(p, n, seed);
  CHECK_CUDA(cudaGetLastError());
  return p;
}

// Median milliseconds of fn over kRepeats runs after kWarmup, each run bracketed by events.
double median_ms(const std::function<void()>& fn) {
  for (int i = 0; i < kWarmup; i++) fn();
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<float> ms(kRepeats);
  for (int i = 0; i < kRepeats; i++) {
    CHECK_CUDA(cudaEventRecord(start, cudaStreamLegacy));
    fn();
    CHECK_CUDA(cudaEventRecord(stop, cudaStreamLegacy));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms[i], start, stop));
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return ms[kRepeats / 2];
}

template <class T> float to_float(T x) { return static_cast<float>(x); }
template <> float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T> double rel_error(const T* ours, const T* theirs, int64_t n) {
  std::vector<T> a(n), b(n);
  CHECK_CUDA(cudaMemcpy(a.data(), ours, n * sizeof(T), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(b.data(), theirs, n * sizeof(T), cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    const double x = to_float(a[i]), y = to_float(b[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Case {
  std::string name;
  bool trans_a, trans_b;
  int64_t M, N, K;
};

bool csv = false;

void report(const Case& c, const char* dtype, double ours_ms, double cublas_ms, double err) {
  const double flops = 2.0 * c.M * c.N * c.K;
  const double ours = flops / ours_ms / 1e9, theirs = flops / cublas_ms / 1e9;  // TFLOP/s
  const std::string layout = std::string(c.trans_a ? "T" : "N") + (c.trans_b ? "T" : "N");
  if (csv) {
    std::printf("%s,%s,%s,%lld,%lld,%lld,%.4f,%.4f,%.2f,%.2f,%.3f,%.2e\n", c.name.c_str(), dtype, layout.c_str(),
                (long long)c.M, (long long)c.N, (long long)c.K, ours_ms, cublas_ms, ours, theirs, ours / theirs, err);
  } else {
    std::printf("%-22s %-4s %s  M=%-6lld N=%-6lld K=%-6lld  ours %8.3f ms %7.1f TFLOP/s   cuBLAS %8.3f ms %7.1f TFLOP/s"
                "   ratio %.3f   rel err %.1e%s\n",
                c.name.c_str(), dtype, layout.c_str(), (long long)c.M, (long long)c.N, (long long)c.K, ours_ms, ours,
                cublas_ms, theirs, ours / theirs, err, err > 1e-2 ? "  MISMATCH" : "");
  }
  std::fflush(stdout);
}

// Row-major C (M,N) = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets the operands
// swapped, each with the same transpose flag (a row-major (r,c) buffer is a column-major (c,r) one).
void bench_bf16(cublasHandle_t handle, const Case& c) {
  using bf16 = __nv_bfloat16;
  const int64_t a_elems = c.M * c.K, b_elems = c.K * c.N, c_elems = c.M * c.N;
  const int64_t lda = c.trans_a ? c.M : c.K, ldb = c.trans_b ? c.K : c.N, ldc = c.N;
  bf16* A = device_random<bf16>(a_elems, 1);
  bf16* B = device_random<bf16>(b_elems, 2);
  bf16 *C_ours = nullptr, *C_cublas = nullptr;
  CHECK_CUDA(cudaMalloc(&C_ours, c_elems * sizeof(bf16)));
  CHECK_CUDA(cudaMalloc(&C_cublas, c_elems * sizeof(bf16)));
  const float alpha = 1.0f, beta = 0.0f;
  auto ours = [&] {
    tg::cuda::gemm(tg::DType::BF16, c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A, lda, B, ldb, beta, C_ours, ldc);
  };
  auto theirs = [&] {
    CHECK_CUBLAS(cublasGemmEx(handle, c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                              int(c.N), int(c.M), int(c.K), &alpha, B, CUDA_R_16BF, int(ldb), A, CUDA_R_16BF, int(lda),
                              &beta, C_cublas, CUDA_R_16BF, int(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  ours();
  theirs();
  CHECK_CUDA(cudaDeviceSynchronize());
  const double err = rel_error(C_ours, C_cublas, c_elems);
  const double ours_ms = median_ms(ours), cublas_ms = median_ms(theirs);
  report(c, "bf16", ours_ms, cublas_ms, err);
  CHECK_CUDA(cudaFree(A));
  CHECK_CUDA(cudaFree(B));
  CHECK_CUDA(cudaFree(C_ours));
  CHECK_CUDA(cudaFree(C_cublas));
}

void bench_f32(cublasHandle_t handle, const Case& c) {
  const int64_t lda = c.trans_a ? c.M : c.K, ldb = c.trans_b ? c.K : c.N, ldc = c.N;
  float* A = device_random<float>(c.M * c.K, 3);
  float* B = device_random<float>(c.K * c.N, 4);
  float *C_ours = nullptr, *C_cublas = nullptr;
  CHECK_CUDA(cudaMalloc(&C_ours, c.M * c.N * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&C_cublas, c.M * c.N * sizeof(float)));
  const float alpha = 1.0f, beta = 0.0f;
  auto ours = [&] {
    tg::cuda::gemm(tg::DType::F32, c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A, lda, B, ldb, beta, C_ours, ldc);
  };
  auto theirs = [&] {
    CHECK_CUBLAS(cublasSgemm(handle, c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                             int(c.N), int(c.M), int(c.K), &alpha, B, int(ldb), A, int(lda), &beta, C_cublas, int(ldc)));
  };
  ours();
  theirs();
  CHECK_CUDA(cudaDeviceSynchronize());
  const double err = rel_error(C_ours, C_cublas, c.M * c.N);
  const double ours_ms = median_ms(ours), cublas_ms = median_ms(theirs);
  report(c, "f32", ours_ms, cublas_ms, err);
  CHECK_CUDA(cudaFree(A));
  CHECK_CUDA(cudaFree(B));
  CHECK_CUDA(cudaFree(C_ours));
  CHECK_CUDA(cudaFree(C_cublas));
}

int run() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_gpu_gemm: no CUDA GPU visible, skipping\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cublasHandle_t handle;
  CHECK_CUBLAS(cublasCreate(&handle));
  CHECK_CUBLAS(cublasSetStream(handle, cudaStreamLegacy));
  // Plain FP32 for Sgemm (no TF32 tensor-core shortcut); bf16 GemmEx still uses tensor cores.
  CHECK_CUBLAS(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
  if (csv) std::printf("case,dtype,layout,M,N,K,ours_ms,cublas_ms,ours_tflops,cublas_tflops,ratio,rel_err\n");
  else std::printf("GEMM on %s (sm_%d%d), median of %d runs\n", prop.name, prop.major, prop.minor, kRepeats);

  const int64_t tokens = 16384;
  struct Shape {
    const char* name;
    int64_t in, out;
  };
  const Shape gpt2[] = {{"c_attn", 768, 2304}, {"c_fc", 768, 3072}, {"c_proj(mlp)", 3072, 768}, {"lm_head", 768, 50304}};
  for (const Shape& s : gpt2) {
    const std::string name = s.name;
    bench_bf16(handle, {name + " fwd", false, true, tokens, s.out, s.in});   // y = x W^T
    bench_bf16(handle, {name + " dX", false, false, tokens, s.in, s.out});   // dX = dY W
    bench_bf16(handle, {name + " dW", true, false, s.out, s.in, tokens});    // dW = dY^T X
  }
  for (int64_t n : {2048, 4096, 8192}) {
    bench_bf16(handle, {"square NN " + std::to_string(n), false, false, n, n, n});
    bench_bf16(handle, {"square NT " + std::to_string(n), false, true, n, n, n});
  }
  bench_f32(handle, {"square NN 4096", false, false, 4096, 4096, 4096});
  bench_f32(handle, {"square NT 4096", false, true, 4096, 4096, 4096});
  CHECK_CUBLAS(cublasDestroy(handle));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  tg::FlagSet flags("bench_gpu_gemm", "[--csv]",
                    "GEMM on the GPU: tilegrad's kernels (ops/cuda/gemm.h) against cuBLAS in the same run, after\n"
                    "checking that both agree: bf16 at the GPT-2 124M shapes (16384 tokens) in a Linear's three\n"
                    "layouts, bf16 squares 2048^3 to 8192^3, and f32 4096^3 against cublasSgemm (no TF32).");
  flags.add_switch("csv", &csv, "case,dtype,layout,M,N,K,ours_ms,cublas_ms,ours_tflops,cublas_tflops,ratio,rel_err");
  return tg::bench::run_main(flags, argc, argv, run);
}
