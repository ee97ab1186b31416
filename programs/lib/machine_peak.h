// The machine's peak FLOP/s, the denominator of the MFU the status line prints.
#pragma once

namespace tg {

// fp32 FMA peak of this CPU in GFLOP/s on `threads` OpenMP threads at the instruction-set level the
// kernels run (ops/cpu/isa.h), measured once (about a tenth of a second) with independent SIMD FMA
// chains held in registers: what the cores can do at best, at the clock they run at now. More iterations give a steadier figure (the benchmarks use 10x).
double cpu_peak_gflops(int threads, long iterations = 2000000);

}  // namespace tg
