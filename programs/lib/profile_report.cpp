#include "programs/lib/profile_report.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <tuple>

#include "tensor/error.h"

namespace tg {

double ProfileRow::bound_seconds(const Roofline& roof) const {
  const double peak = roof.peak_for(bf16_dot);
  double compute = peak > 0 ? flops / peak : 0;
  double memory = roof.bandwidth > 0 ? bytes / roof.bandwidth : 0;
  return std::max(compute, memory);
}

std::vector<ProfileRow> profile_rows(const std::vector<ops::OpRecord>& records, int64_t steps, const Roofline& roof) {
  using Key = std::tuple<int, std::string, std::string, std::string>;  // phase, op, node, shapes
  std::map<Key, ProfileRow> groups;
  for (const ops::OpRecord& r : records) {
    std::string shapes = r.shapes();
    ProfileRow& row = groups[Key{static_cast<int>(r.phase), r.op, r.node, shapes}];
    if (row.op.empty()) {
      row.phase = ops::phase_name(r.phase);
      row.op = r.op;
      row.node = r.node;
      row.shapes = shapes;
    }
    row.calls += 1;
    row.seconds += r.seconds;
    row.flops += r.flops;
    row.bytes += r.bytes;
    row.bf16_dot = row.bf16_dot || r.bf16_dot;
  }
  const double per_step = 1.0 / static_cast<double>(std::max<int64_t>(steps, 1));
  std::vector<ProfileRow> rows;
  for (auto& [key, row] : groups) {
    row.calls *= per_step;
    row.seconds *= per_step;
    row.flops *= per_step;
    row.bytes *= per_step;
    rows.push_back(row);
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const ProfileRow& a, const ProfileRow& b) {
    return a.seconds_lost(roof) > b.seconds_lost(roof);
  });
  return rows;
}

double ProfileSummary::op_seconds() const {
  double sum = 0;
  for (const ProfileRow& r : rows) sum += r.seconds;
  return sum;
}

double ProfileSummary::bound_seconds() const {
  double sum = 0;
  for (const ProfileRow& r : rows) sum += r.bound_seconds(roof);
  return sum;
}

double ProfileSummary::op_flops() const {
  double sum = 0;
  for (const ProfileRow& r : rows) sum += r.flops;
  return sum;
}

namespace {

std::string row_label(const ProfileRow& r) {
  // A backward kernel is named by the node it ran for: "linear: matmul" reads as "the matmul that
  // linear's backward ran".
  return r.node.empty() || r.node == r.op ? r.op : r.node + ": " + r.op;
}

std::string format(const char* fmt, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), fmt, value);
  return buffer;
}

// "compute", "memory", or "none" for a row with neither FLOPs nor bytes (waiting for the loader).
const char* bound_by(const ProfileRow& r, const Roofline& roof) {
  if (r.flops <= 0 && r.bytes <= 0) return "none";
  return r.compute_bound(roof) ? "compute" : "memory";
}

std::string megabytes(double bytes) { return bytes < 0 ? "unknown" : format("%.1f MB", bytes / 1e6); }

}  // namespace

std::string format_profile(const ProfileSummary& s, size_t max_rows) {
  const double step_ms = 1e3 * s.step_seconds;
  std::string out;
  char line[512];
  std::snprintf(line, sizeof(line), "%-40s %-9s %6s %9s %6s %9s %9s %7s %8s %7s %9s %7s %-7s %9s  %s\n", "op", "phase",
                "calls", "ms", "%step", "MFLOP", "MB", "FLOP/B", "GFLOP/s", "GB/s", "bound ms", "%bound", "bound",
                "lost ms", "shapes");
  out += line;
  size_t shown = 0;
  ProfileRow rest;
  for (const ProfileRow& r : s.rows) {
    if (shown == max_rows) {
      rest.calls += r.calls;
      rest.seconds += r.seconds;
      rest.flops += r.flops;
      rest.bytes += r.bytes;
      continue;
    }
    shown++;
    const double ms = 1e3 * r.seconds, bound_ms = 1e3 * r.bound_seconds(s.roof);
    std::snprintf(line, sizeof(line), "%-40s %-9s %6.0f %9.3f %6.1f %9.2f %9.2f %7.2f %8.1f %7.1f %9.3f %7.1f %-7s %9.3f  %s\n",
                  row_label(r).c_str(), r.phase.c_str(), r.calls, ms, step_ms > 0 ? 100 * ms / step_ms : 0,
                  r.flops / 1e6, r.bytes / 1e6, r.intensity(), r.seconds > 0 ? r.flops / r.seconds / 1e9 : 0,
                  r.seconds > 0 ? r.bytes / r.seconds / 1e9 : 0, bound_ms, ms > 0 ? 100 * bound_ms / ms : 0,
                  bound_by(r, s.roof), ms - bound_ms, r.shapes.c_str());
    out += line;
  }
  if (rest.calls > 0) {
    std::snprintf(line, sizeof(line), "%-40s %-9s %6.0f %9.3f %6.1f  (the %zu rows below the first %zu)\n",
                  "(other rows)", "", rest.calls, 1e3 * rest.seconds, step_ms > 0 ? 100e3 * rest.seconds / step_ms : 0,
                  s.rows.size() - shown, shown);
    out += line;
  }

  const double op_ms = 1e3 * s.op_seconds(), bound_ms = 1e3 * s.bound_seconds();
  // MFU against the peak of the unit the GEMMs run on, as the status line's: vdpbf16ps in a bf16
  // run that has it.
  const bool bf16_mfu = s.roof.bf16_peak_flops > 0;
  const double peak_time = s.step_seconds * (bf16_mfu ? s.roof.bf16_peak_flops : s.roof.peak_flops);
  const double mfu = peak_time > 0 ? s.model_flops_per_step / peak_time : -1;
  const double hfu = peak_time > 0 ? s.op_flops() / peak_time : -1;
  out += "\n";
  std::snprintf(line, sizeof(line), "step: %.3f ms measured (mean of %lld steps); the ops add up to %.3f ms (%.1f%%)",
                step_ms, static_cast<long long>(s.steps), op_ms, step_ms > 0 ? 100 * op_ms / step_ms : 0);
  out += line;
  out += "; the rest is outside the op fronts (allocation, zero-filled gradient buffers, graph bookkeeping, "
         "copies made by views)\n";
  if (s.cpu_seconds >= 0 && s.step_seconds > 0) {
    // On a machine shared with other work the process waits for a core, and that wait lands in
    // whichever op (or gap) it falls in: this line says how much of the step it was.
    std::snprintf(line, sizeof(line),
                  "CPU time: %.3f ms per step, %.0f%% of %d thread(s) x the step's wall time%s\n", 1e3 * s.cpu_seconds,
                  100 * s.cpu_seconds / (s.threads * s.step_seconds), s.threads,
                  s.cpu_seconds < 0.8 * s.threads * s.step_seconds
                      ? " (the machine was busy: the times include waits for a core)"
                      : "");
    out += line;
  }
  std::snprintf(line, sizeof(line), "sum of the bounds: %.3f ms, %.1f%% of the step: a step could take that long at best\n",
                bound_ms, step_ms > 0 ? 100 * bound_ms / step_ms : 0);
  out += line;
  std::snprintf(line, sizeof(line), "roofline: peak %.1f GFLOP/s (%s), bandwidth %.1f GB/s (%s), ridge %.1f FLOP/byte\n",
                s.roof.peak_flops / 1e9, s.roof.peak_source.c_str(), s.roof.bandwidth / 1e9,
                s.roof.bandwidth_source.c_str(), s.roof.ridge());
  out += line;
  if (bf16_mfu) {
    std::snprintf(line, sizeof(line),
                  "bf16 GEMMs: peak %.1f GFLOP/s (%s), ridge %.1f FLOP/byte; their rows are judged against it, the "
                  "other ops (computing in f32) against the FMA peak\n",
                  s.roof.bf16_peak_flops / 1e9, s.roof.bf16_peak_source.c_str(),
                  s.roof.bandwidth > 0 ? s.roof.bf16_peak_flops / s.roof.bandwidth : 0);
    out += line;
  }
  if (mfu >= 0) {
    std::snprintf(line, sizeof(line), "MFU %.1f%% (model FLOPs), HFU %.1f%% (every FLOP the ops ran, recomputation included)%s",
                  100 * mfu, 100 * hfu, bf16_mfu ? ", of the bf16 peak" : "");
    out += line;
    // Measured on a busy machine, the FMA probe finds less than the cores can do.
    if (mfu > 1 || hfu > 1) out += " -- above 100%: the peak was measured low (the machine was busy at the start)";
    out += "\n";
  }
  const MemoryByKind& m = s.memory;
  out += "peak memory: parameters " + megabytes(m.parameters) + ", gradients " + megabytes(m.gradients) +
         ", optimizer state " + megabytes(m.optimizer_state) + ", activations and temporaries " +
         megabytes(m.activations) + (m.peak_in_use >= 0 ? ", peak in use " + megabytes(m.peak_in_use) : "") +
         (m.note.empty() ? "" : " (" + m.note + ")") + "\n";
  return out;
}

const char* const kProfileCsvHeader =
    "op,node,phase,shapes,calls,ms,percent_of_step,flops,bytes,intensity,gflops_per_s,gb_per_s,bound_ms,"
    "percent_of_bound,bound_by,lost_ms";

void write_profile_csv(const std::string& path, const ProfileSummary& s) {
  std::ofstream csv(path);
  if (!csv) throw Error("cannot write '" + path + "'");
  csv << kProfileCsvHeader << "\n";
  const double step_ms = 1e3 * s.step_seconds;
  char numbers[512];
  for (const ProfileRow& r : s.rows) {
    const double ms = 1e3 * r.seconds, bound_ms = 1e3 * r.bound_seconds(s.roof);
    std::snprintf(numbers, sizeof(numbers), "%g,%.6f,%.3f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6f,%.3f,%s,%.6f", r.calls, ms,
                  step_ms > 0 ? 100 * ms / step_ms : 0, r.flops, r.bytes, r.intensity(),
                  r.seconds > 0 ? r.flops / r.seconds / 1e9 : 0, r.seconds > 0 ? r.bytes / r.seconds / 1e9 : 0,
                  bound_ms, ms > 0 ? 100 * bound_ms / ms : 0, bound_by(r, s.roof),
                  ms - bound_ms);
    csv << r.op << ',' << r.node << ',' << r.phase << ',' << r.shapes << ',' << numbers << "\n";
  }
  if (!csv) throw Error("cannot write '" + path + "'");
}

std::string plot_roofline(const std::string& csv_path, const std::string& png_path, const Roofline& roof) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "gnuplot is not installed, so no roofline.png (install it with: sudo apt-get install gnuplot-nox); the "
           "numbers are in " + csv_path;
  if (roof.peak_flops <= 0 || roof.bandwidth <= 0) return "no measured peak or bandwidth, so no roofline.png";
  const double peak = roof.peak_flops / 1e9, bandwidth = roof.bandwidth / 1e9;  // GFLOP/s, GB/s
  const double peak16 = roof.bf16_peak_flops / 1e9;  // 0: no bf16 roof
  std::string script_path = png_path + ".gp";
  {
    std::ofstream script(script_path);
    // Columns (1-based): 5 calls, 6 ms, 7 percent_of_step, 8 flops, 10 intensity, 11 gflops_per_s, 3 phase.
    // Ops without FLOPs (gathers, copies) have no place on a log FLOP axis and are left out.
    script << "set terminal pngcairo size 1000,700 noenhanced\n"
           << "set output '" << png_path << "'\n"
           << "set datafile separator ','\n"
           << "set logscale xy\nset grid\nset key bottom right\n"
           << "set xlabel 'arithmetic intensity (FLOP/byte)'\nset ylabel 'achieved GFLOP/s'\n"
           << "set title 'roofline: peak " << format("%.1f", peak) << " GFLOP/s, bandwidth " << format("%.1f", bandwidth)
           << " GB/s (measured); point area ~ time'\n"
           << "roof(x) = x * " << bandwidth << " < " << peak << " ? x * " << bandwidth << " : " << peak << "\n"
           << "roof16(x) = x * " << bandwidth << " < " << peak16 << " ? x * " << bandwidth << " : " << peak16 << "\n"
           << "set xrange [0.01:10000]\nset yrange [0.01:" << 3 * std::max(peak, peak16) << "]\nset samples 400\n"
           << "size(p) = 0.5 + 4 * sqrt(p / 100)\n"
           << "plot roof(x) with lines lw 2 lc rgb 'black' title 'roofline', \\\n"
           << (peak16 > 0 ? "  roof16(x) with lines lw 2 dt 2 lc rgb 'black' title 'bf16 GEMMs (vdpbf16ps)', \\\n" : "")
           << "  '" << csv_path << "' every ::1 using ($8 > 0 && strcol(3) eq 'forward' ? $10 : 1/0):11:(size($7)) "
           << "with points pt 7 ps variable lc rgb '#1f77b4' title 'forward', \\\n"
           << "  '' every ::1 using ($8 > 0 && strcol(3) eq 'backward' ? $10 : 1/0):11:(size($7)) "
           << "with points pt 7 ps variable lc rgb '#d62728' title 'backward', \\\n"
           << "  '' every ::1 using ($8 > 0 && strcol(3) ne 'forward' && strcol(3) ne 'backward' ? $10 : 1/0):11:(size($7)) "
           << "with points pt 7 ps variable lc rgb '#2ca02c' title 'optimizer, copy'\n";
  }
  std::string command = "gnuplot '" + script_path + "' >/dev/null 2>&1";
  int rc = std::system(command.c_str());
  if (rc != 0) return "gnuplot failed to draw " + png_path + " (run: gnuplot " + script_path + " to see why)";
  std::remove(script_path.c_str());
  return "";
}

}  // namespace tg
