// The report of ./train --profile: the ops recorded by ops::Profiler over a few training steps,
// grouped, judged against the roofline measured at the start, and written as a table (printed and
// profile.txt), profile.csv and roofline.png.
//
// Each row is one op with one set of operand shapes in one phase (and, in the backward, for one
// autograd node), its figures per step. Its bound is max(FLOPs / peak, bytes / bandwidth): the
// least time the machine could take for that traffic and arithmetic; "time lost" is time - bound,
// and the rows are sorted by it, so the top row is where a faster kernel would gain the most.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/profiler.h"

namespace tg {

// The two roofs. Measured at the start of the run (CPU: the FMA probe and a copy of two 256 MB
// buffers); on a GPU the datasheet figures go beside them. A bf16 run on a CPU with AVX512_BF16
// has a third: its GEMMs run on vdpbf16ps, whose peak is about twice the FMA one, so their rows
// are judged against that (ProfileRow::bf16_dot) and the rest, computing in f32, against the FMA's.
struct Roofline {
  double peak_flops = 0;      // FLOP/s
  double bandwidth = 0;       // bytes/s
  std::string peak_source, bandwidth_source;  // "measured: FMA chains, 2 threads"
  double bf16_peak_flops = 0;  // FLOP/s of vdpbf16ps; 0 where the run's GEMMs have no such unit
  std::string bf16_peak_source;
  // The compute roof of a row: the bf16 one for the GEMMs that run on it.
  double peak_for(bool bf16_dot) const { return bf16_dot && bf16_peak_flops > 0 ? bf16_peak_flops : peak_flops; }
  double ridge() const { return bandwidth > 0 ? peak_flops / bandwidth : 0; }  // FLOP/byte
};

struct ProfileRow {
  std::string phase, op, node, shapes;
  double calls = 0;    // per step
  double seconds = 0;  // per step
  double flops = 0, bytes = 0;  // per step
  bool bf16_dot = false;        // its FLOPs run on vdpbf16ps (ops::OpCost::bf16_dot)

  double intensity() const { return bytes > 0 ? flops / bytes : 0; }
  double bound_seconds(const Roofline& roof) const;
  bool compute_bound(const Roofline& roof) const {
    return roof.bandwidth > 0 && intensity() > roof.peak_for(bf16_dot) / roof.bandwidth;
  }
  double seconds_lost(const Roofline& roof) const { return seconds - bound_seconds(roof); }
};

// Groups the records of `steps` steps into rows (figures per step), sorted by time lost, largest
// first.
std::vector<ProfileRow> profile_rows(const std::vector<ops::OpRecord>& records, int64_t steps, const Roofline& roof);

// What the allocator can tell about peak memory: the parameters, gradients and optimizer state are
// summed from their tensors; activations (with temporaries) are the allocator's peak in use minus
// those three, on the CPU; unknown (negative) where the allocator cannot tell.
struct MemoryByKind {
  double parameters = 0, gradients = 0, optimizer_state = 0, activations = -1;
  double peak_in_use = -1;
  std::string note;  // how the figures were found, or why one is missing
};

struct ProfileSummary {
  int64_t steps = 0;
  double step_seconds = 0;         // the measured wall time of one step (mean over the steps)
  double model_flops_per_step = 0;  // the task's model FLOPs (forward + backward), for MFU
  double cpu_seconds = -1;  // the process's CPU time per step, every thread (the loader's too); < 0: unknown
  int threads = 1;          // the OpenMP threads the ops ran on
  Roofline roof;
  std::vector<ProfileRow> rows;
  MemoryByKind memory;

  double op_seconds() const;    // the rows' sum
  double bound_seconds() const; // the sum of the rows' bounds
  double op_flops() const;      // every FLOP the ops ran (recomputation included), for HFU
};

// The table and its footer, as printed (and written to profile.txt). At most max_rows rows; the
// rest are summed in one line.
std::string format_profile(const ProfileSummary& summary, size_t max_rows = 40);

// profile.csv: one line per row, with the columns named in the header. Throws tg::Error naming the
// file when it cannot be written.
void write_profile_csv(const std::string& path, const ProfileSummary& summary);
extern const char* const kProfileCsvHeader;

// roofline.png from profile.csv: log-log, one point per op with FLOPs sized by its time, the roofs
// drawn from the measured peak and bandwidth. Returns "" or what went wrong (no gnuplot...).
std::string plot_roofline(const std::string& csv_path, const std::string& png_path, const Roofline& roof);

}  // namespace tg
