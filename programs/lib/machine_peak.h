// The machine's roofs and caches: the peak FLOP/s (the denominator of the MFU the status line
// prints), the copy bandwidth (the profiler's memory roof) and the L2 per core (the planner's fast
// memory).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tg {

// fp32 FMA peak of this CPU in GFLOP/s on `threads` OpenMP threads at the instruction-set level the
// kernels run (ops/cpu/isa.h), measured once (about a tenth of a second) with independent SIMD FMA
// chains held in registers: what the cores can do at best, at the clock they run at now. More iterations give a steadier figure (the benchmarks use 10x).
double cpu_peak_gflops(int threads, long iterations = 2000000);

// bf16 peak in GFLOP/s the same way, with vdpbf16ps (each 32-bit lane adds two bf16 products: 64
// flops per instruction, counted as a bf16 GEMM counts them, 2 per multiply-add); 0 on a CPU
// without AVX512_BF16.
double cpu_bf16_peak_gflops(int threads, long iterations = 2000000);

// The vdpbf16ps chains behind it (machine_peak_avx512bf16.cpp, built for that ISA): flops done in
// `iterations` rounds on the calling thread. Call only where cpu::cpu_has_avx512_bf16().
double bf16_dot_flops_avx512bf16(long iterations);

// Copy bandwidth in GB/s (bytes read + bytes written per second) on `threads` OpenMP threads: the
// best of five copies between two buffers of `buffer_bytes`, large enough to miss every cache
// (256 MB, as bench_roofline measures it), after one untimed copy that maps the pages.
double cpu_copy_bandwidth_gbs(int threads, size_t buffer_bytes = size_t(256) << 20);

// The L2 cache of one core in bytes, from sysfs (/sys/devices/system/cpu/cpu0/cache/index*/ with
// level 2, its size divided by the CPUs that share it, hyper-threads counting as one core);
// 0 when the machine does not say.
int64_t cpu_l2_bytes_per_core();

}  // namespace tg
