// The machine's peak FLOP/s, the denominator of the MFU the status line prints.
#pragma once

namespace tg {

// fp32 FMA peak of this CPU in GFLOP/s on `threads` OpenMP threads, measured once (about a tenth
// of a second) with independent SIMD FMA chains held in registers: what the cores can do at best,
// at the clock they run at now. More iterations give a steadier figure (the benchmarks use 10x).
double cpu_peak_gflops(int threads, long iterations = 2000000);

// bf16 peak in GFLOP/s the same way, with vdpbf16ps (each 32-bit lane adds two bf16 products: 64
// flops per instruction, counted as a bf16 GEMM counts them, 2 per multiply-add); 0 on a CPU
// without AVX512_BF16.
double cpu_bf16_peak_gflops(int threads, long iterations = 2000000);

// The vdpbf16ps chains behind it (machine_peak_avx512bf16.cpp, built for that ISA): flops done in
// `iterations` rounds on the calling thread. Call only where cpu::cpu_has_avx512_bf16().
double bf16_dot_flops_avx512bf16(long iterations);

}  // namespace tg
