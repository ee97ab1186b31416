#include "programs/lib/trainer.h"

#include <omp.h>
#include <time.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "autograd/engine.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/sync_batchnorm.h"
#include "dist/zero_adamw.h"
#include "ops/gemm.h"
#include "ops/profiler.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/isa.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/grad_scaler.h"
#include "optim/param_group.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tensor/cpu_allocator.h"
#include "tensor/cuda_allocator.h"
#include "tensor/error.h"
#include "programs/lib/gpu_peak.h"
#include "programs/lib/machine_peak.h"
#include "programs/lib/metrics.h"
#include "programs/lib/profile_report.h"
#include "programs/lib/progress.h"
#include "programs/lib/roofline_probe.h"
#include "programs/lib/run_plan.h"
#include "programs/lib/run_setup.h"
#include "programs/lib/stop_signal.h"
#include "programs/lib/task.h"

namespace tg {

namespace {

using Clock = std::chrono::steady_clock;

// CPU time of the whole process (every thread), for --profile's busy-machine line.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The task's model, built and then moved and converted: the optimizer must hold the final
// parameters (nn/module.h). With bf16 or f16 the parameters themselves become half precision;
// AdamW keeps f32 masters.
Module& built_model(Task& task, Device device, DType dtype) {
  task.build_model(device);
  Module& model = task.model();
  if (device != Device::cpu()) model.to(device);
  if (dtype != DType::F32) model.to(dtype);
  return model;
}

// "31.1 KB", "12.4 MB": the optimizer-state line of the header.
std::string describe_bytes(double bytes) {
  char text[32];
  if (bytes < 1e6) std::snprintf(text, sizeof(text), "%.1f KB", bytes / 1e3);
  else std::snprintf(text, sizeof(text), "%.1f MB", bytes / 1e6);
  return text;
}

// --optimizer: AdamW with GPT's betas (0.9, 0.95), or SGD with Nesterov momentum. Both decay the
// weight matrices and kernels only (param_group.h). With --zero 1 and several ranks, AdamW's state
// is sharded over the ranks of `ddp` (built with shard_gradients).
std::unique_ptr<Optimizer> make_optimizer(const RunConfig& c, Module& model, dist::DataParallel* ddp) {
  std::vector<ParamGroup> groups = weight_decay_groups(model.parameters(), static_cast<float>(c.weight_decay));
  if (ddp && c.zero == 1)
    return std::make_unique<dist::ZeroAdamW>(std::move(groups), *ddp, static_cast<float>(c.lr), 0.9f, 0.95f, 1e-8f,
                                             static_cast<uint64_t>(c.seed));
  if (c.optimizer == "sgd")
    return std::make_unique<SGD>(std::move(groups), static_cast<float>(c.lr), static_cast<float>(c.momentum), 0.0f,
                                 /*nesterov=*/c.momentum > 0);
  return std::make_unique<AdamW>(std::move(groups), static_cast<float>(c.lr), 0.9f, 0.95f, 1e-8f,
                                 c.stochastic_rounding, static_cast<uint64_t>(c.seed));
}

// "val loss 1.4567, val accuracy 91.23%": metric names read as words; accuracies are percentages.
std::string describe_metrics(const Metrics& metrics) {
  std::string text;
  char value[32];
  for (const auto& [name, number] : metrics) {
    std::string words = name;
    for (char& ch : words) if (ch == '_') ch = ' ';
    bool accuracy = name.size() >= 8 && name.compare(name.size() - 8, 8, "accuracy") == 0;
    std::snprintf(value, sizeof(value), accuracy ? "%.2f%%" : "%.4f", number);
    text += (text.empty() ? "" : ", ") + words + " " + value;
  }
  return text;
}

// Loss scaling for fp16 only: bf16 has f32's exponent range, so its gradients do not underflow.
GradScalerOptions scaler_options(DType dtype, double init_scale) {
  GradScalerOptions options;
  options.enabled = dtype == DType::F16;
  options.init_scale = static_cast<float>(init_scale);
  return options;
}

class Trainer {
 public:
  explicit Trainer(RunSetup& run)
      : run_(run), c_(run.config), task_(*run.task), device_(dist::rank_device(parse_device(c_.device))),
        dtype_(parse_dtype(c_.dtype)),  // fp32, bf16 or fp16 by now (resolve_defaults)
        model_(built_model(task_, device_, dtype_)),
        scaler_(scaler_options(dtype_, c_.loss_scale)),
        comm_(dist::make_communicator(device_, dist::detect_launch(),
                                      std::chrono::seconds(static_cast<int64_t>(c_.dist_timeout)))),
        writer_(c_.rank == 0) {
    // Rank 0 alone writes the run folder's files.
    if (writer_)
      metrics_ = std::make_unique<MetricsLog>(c_.out + "/metrics.csv", task_.example_unit().column, task_.metric_columns(),
                                              run.resume_from.has_value(), run.resume_from ? run.resume_from->state.step : 0);
    state_.best_val_loss = std::numeric_limits<double>::infinity();
    set_device(device_);  // kernels launch on the current device
    state_.total_steps = c_.steps;
    // Dropout draws from the default generator; each rank its own masks (rank 0: the seed itself).
    manual_seed(static_cast<uint64_t>(c_.seed + c_.rank));
    if (run.resume_from) restore(*run.resume_from);
    comm_->set_timeout(std::chrono::seconds(static_cast<int64_t>(c_.dist_timeout)));
    // After restore: DataParallel starts every rank from rank 0's parameters. The optimizer after
    // it, since ZeRO-1 shards by its buckets; the checkpoint's state is the same on every rank.
    if (comm_->world_size() > 1) {
      dist::DataParallelOptions options;
      options.shard_gradients = c_.zero == 1;
      ddp_ = std::make_unique<dist::DataParallel>(model_, *comm_, options);
      if (c_.sync_bn) synced_batchnorms_ = dist::convert_sync_batchnorm(model_, *comm_);
    }
    optimizer_ = make_optimizer(c_, model_, ddp_.get());
    zero_ = dynamic_cast<dist::ZeroAdamW*>(optimizer_.get());
    if (run.resume_from) optimizer_->load_state_tensors(run.resume_from->optimizer);
    examples_per_step_ = task_.examples_per_micro_batch() * static_cast<double>(c_.grad_accum * c_.world_size);
    // MFU against the peak of the unit the GEMMs run on, as on a GPU and as --profile judges them:
    // the CPU's measured FMA peak (every rank's threads), its vdpbf16ps peak where bf16 GEMMs run
    // there (ops::gemm_runs_on_bf16_dot), or the GPU's dense datasheet peak for the dtype (one GPU
    // per rank).
    double cpu_peak = 0.0;
    if (device_.is_cpu())
      cpu_peak = ops::gemm_runs_on_bf16_dot(dtype_, device_) ? cpu_bf16_peak_gflops(omp_get_max_threads())
                                                             : cpu_peak_gflops(omp_get_max_threads());
    peak_flops_ = (device_.is_cpu() ? cpu_peak * 1e9 : gpu_peak(device_, dtype_).flops) * c_.world_size;
    plan_ = plan_execution();
  }

  int run() {
    if (c_.profile) return profile();
    print_header();
    install_stop_handlers();
    session_start_ = Clock::now();
    interval_wall_start_ = session_start_;
    session_start_elapsed_ = state_.elapsed_seconds;
    fitting_minutes_ = c_.minutes > 0 && !run_.resume_from;

    while (state_.step < state_.total_steps) {
      Clock::time_point step_start = Clock::now();
      float lr = cosine_lr(state_.step, c_.warmup, state_.total_steps, static_cast<float>(c_.lr),
                           static_cast<float>(c_.min_lr));
      double loss = 0;
      if (!train_step(lr, loss)) return 3;
      last_lr_ = lr;
      double step_seconds = seconds_since(step_start);
      state_.elapsed_seconds = session_start_elapsed_ + seconds_since(session_start_);
      agree_across_ranks(loss, step_seconds);
      if (!std::isfinite(loss)) {  // with several ranks: the mean over them, so every rank stops here
        stop_on_non_finite("loss", static_cast<float>(loss));
        return 3;
      }
      interval_seconds_ += step_seconds;
      interval_steps_++;
      // The first steps of a process are slow (page faults, thread start-up): an average that
      // forgets them gives a truer ETA.
      ema_step_seconds_ = ema_step_seconds_ == 0 ? step_seconds : 0.9 * ema_step_seconds_ + 0.1 * step_seconds;
      fit_minutes(step_seconds);
      if (report_and_save(loss, lr)) return 0;  // stopped by a signal, with a checkpoint
      bar_.update(state_.step, state_.total_steps, eta());
    }
    bar_.clear();
    final_evaluation();
    print_summary();
    return 0;
  }

 private:
  // One optimizer step over grad_accum micro-batches; `loss` gets their mean. Returns false after
  // reporting a NaN or inf loss or gradient norm, with the optimizer step not taken.
  //
  // With several ranks each computes the loss of its rows of the global batch, the gradient
  // buckets are averaged during the last micro-batch's backward (the ones before it accumulate
  // under no_sync), and every rank then takes the same update from the same averaged gradients:
  // the fp16 overflow skip and the clipping agree by construction. A non-finite loss is judged
  // after the step, on the mean over the ranks (run: agree_across_ranks), so all ranks stop together.
  bool train_step(float lr, double& loss) {
    optimizer_->set_lr(lr);
    {
      ops::PhaseScope phase(ops::Phase::Optimizer);
      optimizer_->zero_grad();
    }
    double loss_sum = 0;
    for (int64_t micro = 0; micro < c_.grad_accum; micro++) {
      dist::DataParallel::NoSync local_only =
          ddp_ && micro + 1 < c_.grad_accum ? ddp_->no_sync() : dist::DataParallel::NoSync();
      Tensor micro_loss = task_.micro_batch_loss();
      float value = micro_loss.item();
      if (!std::isfinite(value) && !ddp_) return stop_on_non_finite("loss", value);
      loss_sum += value;
      // The mean over micro-batches, by scaling each backward's seed gradient (and, for fp16, by
      // the loss scale: the scaler divides it out of the gradients before they are used).
      scaler_.backward(micro_loss, 1.0f / static_cast<float>(c_.grad_accum));
    }
    if (ddp_) ddp_->finish_gradient_sync();
    loss = loss_sum / static_cast<double>(c_.grad_accum);
    ops::PhaseScope phase(ops::Phase::Optimizer);  // unscaling, clipping and the update
    // fp16: an overflowed gradient skips this update and halves the scale; training goes on.
    bool finite = scaler_.unscale_(model_.parameters());
    if (finite && c_.clip > 0) {
      // ZeRO-1: each rank holds a shard of the averaged gradients, the norm is over all of them.
      float norm = zero_ ? zero_->clip_grad_norm(static_cast<float>(c_.clip))
                         : clip_grad_norm(model_.parameters(), static_cast<float>(c_.clip));
      if (!std::isfinite(norm) && !scaler_.enabled()) return stop_on_non_finite("gradient norm", norm);
    }
    scaler_.step(*optimizer_);
    scaler_.update();
    state_.step++;
    return true;
  }

  // --profile: two warm-up steps, then profile_steps steps under an ops::Profiler, each timed
  // whole; the report is printed and written to the run folder, and the run ends there (no
  // checkpoint: the steps were a measurement, and the folder can still start a real run).
  int profile() {
    print_header();
    std::printf("profiling: measuring the roofline, 2 warm-up steps, then %lld steps\n",
                static_cast<long long>(c_.profile_steps));
    std::fflush(stdout);
    ProfileSummary summary;
    summary.roof = measure_roofline(device_, dtype_, omp_get_max_threads());
    double loss = 0;
    for (int step = 0; step < 2; step++)
      if (!train_step(static_cast<float>(c_.lr), loss)) return 3;
    ops::Profiler profiler;
    const double cpu_start = process_cpu_seconds();
    for (int64_t step = 0; step < c_.profile_steps; step++) {
      drain();
      Clock::time_point start = Clock::now();
      if (!train_step(static_cast<float>(c_.lr), loss)) return 3;
      drain();
      summary.step_seconds += seconds_since(start);
    }
    summary.cpu_seconds = (process_cpu_seconds() - cpu_start) / static_cast<double>(c_.profile_steps);
    summary.threads = omp_get_max_threads();
    summary.steps = c_.profile_steps;
    summary.step_seconds /= static_cast<double>(c_.profile_steps);
    summary.model_flops_per_step = task_.flops_per_example() * examples_per_step_;
    summary.rows = profile_rows(profiler.records(), summary.steps, summary.roof);
    summary.memory = memory_by_kind();
    std::string report = format_profile(summary);
    std::printf("\n%s", report.c_str());
    const std::string csv = c_.out + "/profile.csv", png = c_.out + "/roofline.png";
    write_profile_csv(csv, summary);
    {
      std::ofstream text(c_.out + "/profile.txt");
      text << report;
    }
    std::string problem = plot_roofline(csv, png, summary.roof);
    std::printf("written: %s, %s/profile.txt%s\n", csv.c_str(), c_.out.c_str(),
                problem.empty() ? (", " + png).c_str() : ("; note: " + problem).c_str());
    std::fflush(stdout);
    return 0;
  }

  // Waits for the device's queued work (a no-op on the CPU), so that a step's wall time is all of it.
  void drain() {
    if (!device_.is_cuda()) return;
    for (const Tensor& p : model_.parameters()) {
      p.reshape({-1}).narrow(0, 0, 1).item();  // a copy to the host waits for the stream
      return;
    }
  }

  MemoryByKind memory_by_kind() const {
    MemoryByKind m;
    for (const Tensor& p : model_.parameters()) {
      m.parameters += static_cast<double>(p.nbytes());
      Tensor g = p.grad();
      if (g.defined()) m.gradients += static_cast<double>(g.nbytes());
    }
    m.optimizer_state = static_cast<double>(optimizer_->state_bytes());  // under ZeRO-1, this rank's shard
    if (device_.is_cpu()) {
      m.peak_in_use = static_cast<double>(cpu_memory_stats().peak_in_use);
      m.activations = m.peak_in_use - m.parameters - m.gradients - m.optimizer_state;
      m.note = "activations: the CPU allocator's peak in use less the other three";
    } else {
      m.note = "activations: not split out on CUDA; --mem-stats shows the caching allocator's peak";
    }
    return m;
  }

  // --minutes: the schedule's length is re-fitted to the measured speed (the first two steps, slow
  // with start-up costs, left out) until a tenth of the budget has passed, then kept; the run
  // also ends when the budget is spent.
  void fit_minutes(double step_seconds) {
    double budget = c_.minutes * 60.0;
    if (fitting_minutes_ && state_.step > 2) {
      fit_seconds_ += step_seconds;
      fit_steps_++;
      double per_step = fit_seconds_ / static_cast<double>(fit_steps_);
      state_.total_steps =
          state_.step + std::max<int64_t>(1, static_cast<int64_t>((budget - state_.elapsed_seconds) / per_step));
      if (state_.elapsed_seconds >= 0.1 * budget && fit_steps_ >= 3) {
        fitting_minutes_ = false;
        bar_.clear();
        std::printf("--minutes %s: %lld steps at %.1f ms/step\n", format_number(c_.minutes).c_str(),
                    static_cast<long long>(state_.total_steps), per_step * 1000);
      }
    }
    if (c_.minutes > 0 && state_.elapsed_seconds >= budget) state_.total_steps = state_.step;
  }

  double eta() const { return ema_step_seconds_ * static_cast<double>(state_.total_steps - state_.step); }

  // With several ranks, one small all-reduce per step makes every decision the loop takes from
  // local observations a common one: the loss shown is the mean over the ranks, a stop signal
  // that reached any rank stops all of them at this step, and the time (--minutes fits the
  // schedule to it) is the ranks' mean, so every rank computes the same number of steps.
  void agree_across_ranks(double& loss, double& step_seconds) {
    stop_agreed_ = stop_requested();
    if (!ddp_) return;
    Clock::time_point start = Clock::now();
    Tensor shared = Tensor::from_vector({static_cast<float>(loss), stop_agreed_ ? 1.0f : 0.0f,
                                         static_cast<float>(step_seconds), static_cast<float>(state_.elapsed_seconds)},
                                        {4})
                         .to(device_);  // where the engine moves tensors: NCCL's are on the GPU
    comm_->all_reduce(shared, dist::ReduceOp::Average, "the step's loss, stop flag and time");
    std::vector<float> mean = shared.to_vector();
    loss = mean[0];
    stop_agreed_ = mean[1] > 0;
    step_seconds = mean[2];
    state_.elapsed_seconds = mean[3];
    agree_seconds_ += seconds_since(start);
  }

  // Seconds this rank has spent waiting for the others so far: the gradient buckets still in
  // flight after backward, and the step's agreement.
  double comm_wait_seconds() const { return ddp_ ? ddp_->total_wait_seconds() + agree_seconds_ : 0.0; }

  // Status line, validation, sample, metrics row, checkpoints and plot for the step just taken.
  // Returns true when a signal asked to stop (the checkpoint is written by then).
  bool report_and_save(double loss, float lr) {
    int64_t s = state_.step;
    bool last = s == state_.total_steps;
    MetricsRow row;
    row.step = s;
    row.time_seconds = state_.elapsed_seconds;
    row.train_loss = loss;
    row.lr = lr;
    bool log = s % c_.log_every == 0 || last || s == 1;
    bool eval = s % c_.eval_every == 0 || last;
    if (log) {
      StepReport report;
      report.step = s;
      report.total_steps = state_.total_steps;
      report.loss = loss;
      report.lr = lr;
      report.ms_per_step = 1000.0 * interval_seconds_ / static_cast<double>(interval_steps_);
      report.examples_per_second = examples_per_step_ * static_cast<double>(interval_steps_) / interval_seconds_;
      report.example_unit = task_.example_unit().short_name;
      report.peak_fraction =
          peak_flops_ > 0 ? task_.flops_per_example() * report.examples_per_second / peak_flops_ : -1;
      report.eta_seconds = eta();
      report.world_size = c_.world_size;
      // Against this rank's wall time since the last line (the steps' times are the ranks' mean).
      report.comm_wait_fraction =
          ddp_ ? (comm_wait_seconds() - interval_wait_start_) / seconds_since(interval_wall_start_) : -1;
      interval_wait_start_ = comm_wait_seconds();
      interval_wall_start_ = Clock::now();
      bar_.clear();
      std::printf("%s\n", status_line(report).c_str());
      if (scaler_.enabled() && scaler_.skipped_steps() > reported_skips_) {
        std::printf("  fp16: %lld steps skipped so far (gradient overflow), loss scale now %g\n",
                    static_cast<long long>(scaler_.skipped_steps()), static_cast<double>(scaler_.scale()));
        reported_skips_ = scaler_.skipped_steps();
      }
      if (c_.mem_stats)
        std::printf("  memory: %s\n", (device_.is_cuda() ? cuda_memory_summary(device_) : cpu_memory_summary()).c_str());
      std::fflush(stdout);
      row.examples_per_second = report.examples_per_second;
      interval_seconds_ = 0;
      interval_steps_ = 0;
    }
    bool improved = false;
    if (eval && writer_) {  // evaluation, samples, metrics and plots: rank 0's
      Metrics metrics = task_.evaluate();
      for (const auto& [name, value] : metrics)
        if (name == "val_loss") row.val_loss = value;
        else row.extra[name] = value;
      improved = row.val_loss < state_.best_val_loss;
      if (improved) {
        state_.best_val_loss = row.val_loss;
        state_.best_step = s;
      }
      bar_.clear();
      std::printf("step %lld: %s%s\n", static_cast<long long>(s), describe_metrics(metrics).c_str(),
                  improved ? " (best so far)" : "");
      std::fflush(stdout);
    }
    if ((log || eval) && writer_) metrics_->append(row);
    if ((s % c_.sample_every == 0 || last) && writer_) {
      bar_.clear();
      task_.print_sample(s);
    }
    if (eval || last || s % c_.save_every == 0 || stop_agreed_) save(improved);
    // gnuplot takes a few hundred milliseconds: redraw at most every half minute, and at the end.
    if (eval && writer_ && (last || seconds_since(last_plot_) > 30)) plot();
    if (!stop_agreed_ || last) return false;
    bar_.clear();
    std::printf("%s: stopped at step %lld/%lld; checkpoint saved to %s\nresume with: %s\n", stop_signal_name(),
                static_cast<long long>(s), static_cast<long long>(state_.total_steps), run_.last_path.c_str(),
                run_.resume_command.c_str());
    std::fflush(stdout);
    return true;
  }

  void restore(const Checkpoint& ckpt) {
    // The flags were checked against the checkpoint's configuration; this catches what they do not
    // name (a vocabulary, a model edited since).
    if (!ckpt.task.architecture.empty() && ckpt.task.architecture != task_.architecture())
      throw Error(ckpt.path + " holds another model than this run builds: " + ckpt.task.architecture + " vs " +
                  task_.architecture() + " (start a new run with another --out)");
    model_.load_state_dict(ckpt.model);  // the optimizer's state: once it is built (the constructor)
    scaler_.load_state_tensors(ckpt.optimizer);
    state_ = ckpt.state;
    saved_step_ = state_.step;
    // --steps given again on resume lengthens (or shortens) the schedule from here on.
    if (!c_.minutes && state_.total_steps != c_.steps) state_.total_steps = std::max(c_.steps, state_.step);
    task_.restore(ckpt);
    restore_dropout_generator(ckpt.state);
  }

  // Each rank continues its own dropout stream where the checkpoint left it. At another world size
  // rank 0 continues the saved rank 0's and the others start fresh streams, seeded by rank and
  // step so that they do not replay the masks of the run's first steps (the run is not bit for
  // bit the original one then anyway: run_setup says so).
  void restore_dropout_generator(const TrainState& saved) {
    if (static_cast<int>(saved.rank_dropout_rng.size()) == c_.world_size)
      default_generator().set_state(saved.rank_dropout_rng[static_cast<size_t>(c_.rank)]);
    else if (c_.rank == 0)
      default_generator().set_state(saved.dropout_rng);
    else
      manual_seed(static_cast<uint64_t>(c_.seed + c_.rank) + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(saved.step));
  }

  // Every rank's dropout generator, gathered to every rank (the checkpoint is rank 0's to write):
  // a collective, so every rank calls it at each save. The 4 x 64-bit state travels as 8 i32.
  std::vector<Generator::State> gather_dropout_generators() {
    Generator::State mine = default_generator().state();
    Tensor local = Tensor::empty({8}, DType::I32, Device::cpu());
    std::memcpy(local.data_raw(), mine.data(), sizeof(mine));
    Tensor all = Tensor::empty({8 * static_cast<int64_t>(c_.world_size)}, DType::I32, Device::cpu());
    comm_->all_gather(local, all, "every rank's dropout generator");
    std::vector<Generator::State> states(static_cast<size_t>(c_.world_size));
    for (size_t r = 0; r < states.size(); r++)
      std::memcpy(states[r].data(), static_cast<const char*>(all.data_raw()) + r * sizeof(mine), sizeof(mine));
    return states;
  }

  void save(bool improved) {
    saved_step_ = state_.step;
    // Collectives, so every rank takes part: the dropout generators, and ZeRO-1's shards.
    if (ddp_) state_.rank_dropout_rng = gather_dropout_generators();
    if (!writer_ && !zero_) return;
    std::vector<std::pair<std::string, Tensor>> training_state;
    {
      // Between steps: the state's transient copies (AdamW's f32 masters of bf16 weights) go into
      // the step's idle blocks instead of new memory.
      CpuCacheBorrowScope borrow;
      training_state = optimizer_->state_tensors();
    }
    if (!writer_) return;
    state_.dropout_rng = default_generator().state();
    std::string config = config_to_json(c_);
    TaskCheckpoint extras = task_.checkpoint_extras();
    for (auto& entry : scaler_.state_tensors()) training_state.push_back(entry);
    save_checkpoint(run_.last_path, model_.state_dict(), training_state, state_, config, extras);
    if (improved) save_checkpoint(run_.best_path, model_.state_dict(), training_state, state_, config, extras);
    saved_step_ = state_.step;
  }

  void plot() {
    last_plot_ = Clock::now();
    std::string problem = plot_losses(c_.out + "/metrics.csv", c_.out + "/loss.png", task_.example_unit().noun);
    if (!problem.empty() && !plot_warned_) {
      std::printf("note: %s\n", problem.c_str());
      plot_warned_ = true;
    }
  }

  bool stop_on_non_finite(const char* what, float value) {
    bar_.clear();
    std::fflush(stdout);
    std::string kept = saved_step_ >= 0 ? "the last good checkpoint is " + run_.last_path + " (step " +
                                              std::to_string(saved_step_) + "), left as it was"
                                        : "no checkpoint had been written yet";
    std::fprintf(stderr, "train: %s is %s at step %lld; stopping (%s). Try a lower --lr or a --clip.\n", what,
                 std::isnan(value) ? "nan" : "inf", static_cast<long long>(state_.step + 1), kept.c_str());
    return false;
  }

  void print_header() {
    std::printf("%s\n", task_.describe_data().c_str());
    std::printf("model: %s, %s parameters; batch %s%s on %s with %s, %d threads\n", task_.describe_model().c_str(),
                format_count(static_cast<double>(model_.num_parameters())).c_str(), task_.describe_batch().c_str(),
                c_.grad_accum > 1 ? (" x " + std::to_string(c_.grad_accum) + " accumulated").c_str() : "",
                (c_.device + " in " + c_.dtype).c_str(), optimizer_->name(), omp_get_max_threads());
    if (ddp_)
      std::printf("data parallel: %d ranks (%s), global batch %s = %d x %s, gradients averaged in %zu buckets during "
                  "backward\n",
                  c_.world_size, comm_->engine().c_str(), std::to_string(c_.global_batch()).c_str(), c_.world_size,
                  task_.describe_batch().c_str(), ddp_->buckets().size());
    if (synced_batchnorms_ > 0)
      std::printf("--sync-bn: %d BatchNorm layers normalise with the global batch's statistics\n", synced_batchnorms_);
    if (zero_)
      std::printf("ZeRO-1: gradients reduce-scattered, AdamW state sharded: %s of optimizer state on this rank "
                  "(%s unsharded)\n",
                  describe_bytes(static_cast<double>(zero_->local_state_bytes())).c_str(),
                  describe_bytes(static_cast<double>(zero_->unsharded_state_bytes())).c_str());
    if (device_.is_cpu())
      std::printf("cpu kernels: %s (gemm tile %dx%d; TG_CPU_ISA forces a level)\n", cpu::cpu_isa_name(cpu::cpu_isa()),
                  cpu::gemm_mr(), cpu::gemm_nr());
    if (run_.resume_from)
      std::printf("resuming %s at step %lld/%lld\n", run_.resume_from->path.c_str(),
                  static_cast<long long>(state_.step), static_cast<long long>(state_.total_steps));
    std::printf("run folder %s\n", c_.out.c_str());
    std::printf("%s", plan_.c_str());
    if (!task_.describe_plan().empty()) std::printf("%s\n", task_.describe_plan().c_str());
    std::fflush(stdout);
  }

  // The fusion planner's decisions for the run's transformer blocks, applied to the model (the
  // blockwise MLP's chunk) before the first step; returns the lines the header prints.
  std::string plan_execution() {
    if (!run_has_transformer_blocks(c_)) return "";
    // The planner's figures: the status line's peak and a quick copy (64 MB buffers) on the CPU.
    Roofline roof;
    if (device_.is_cpu()) {
      roof.peak_flops = peak_flops_;
      roof.bandwidth = cpu_copy_bandwidth_gbs(omp_get_max_threads(), size_t(64) << 20) * 1e9;
    } else {
      roof = measure_roofline(device_, dtype_, omp_get_max_threads());
    }
    const PlannerMachine machine = planner_machine(device_, roof);
    task_.use_blockwise_mlp(choose_blockwise(c_, machine).chunk_tokens);
    return describe_run_plan(c_, machine);
  }

  // The task's last evaluation, if it has one (a test split): printed and kept in metrics.csv.
  void final_evaluation() {
    if (!writer_) return;
    Metrics metrics = task_.final_evaluation();
    if (metrics.empty()) return;
    std::printf("step %lld: %s\n", static_cast<long long>(state_.step), describe_metrics(metrics).c_str());
    std::fflush(stdout);
    MetricsRow row;
    row.step = state_.step;
    row.time_seconds = state_.elapsed_seconds;
    row.lr = last_lr_;
    for (const auto& [name, value] : metrics) row.extra[name] = value;
    metrics_->append(row);
  }

  void print_summary() {
    std::printf("done: %lld steps in %s", static_cast<long long>(state_.step),
                format_duration(state_.elapsed_seconds).c_str());
    if (state_.best_step >= 0)
      std::printf(", best val loss %.4f at step %lld", state_.best_val_loss, static_cast<long long>(state_.best_step));
    if (scaler_.enabled())
      std::printf("; %lld steps skipped for fp16 overflow, loss scale %g", static_cast<long long>(scaler_.skipped_steps()),
                  static_cast<double>(scaler_.scale()));
    if (device_.is_cuda()) std::printf("\nGPU memory: %s", cuda_memory_summary(device_).c_str());
    std::printf("\ncheckpoints: %s (last), %s (best); metrics: %s/metrics.csv\n%s\n", run_.last_path.c_str(),
                run_.best_path.c_str(), c_.out.c_str(), task_.next_step_hint(c_.out).c_str());
    std::fflush(stdout);
  }

  RunSetup& run_;
  const RunConfig& c_;
  Task& task_;
  Device device_;
  DType dtype_;
  Module& model_;
  std::unique_ptr<Optimizer> optimizer_;
  GradScaler scaler_;
  std::unique_ptr<dist::Communicator> comm_;  // the single-process engine when launched alone
  std::unique_ptr<dist::DataParallel> ddp_;   // with several ranks only
  dist::ZeroAdamW* zero_ = nullptr;           // optimizer_, when it is ZeRO-1's
  int synced_batchnorms_ = 0;                 // --sync-bn: the BatchNorm layers converted
  bool writer_;                               // rank 0: prints, evaluates, writes files
  std::string plan_;                          // the planner's lines for the header (plan_execution)
  std::unique_ptr<MetricsLog> metrics_;       // rank 0's
  bool stop_agreed_ = false;                  // a stop signal reached some rank (agree_across_ranks)
  double agree_seconds_ = 0, interval_wait_start_ = 0;
  Clock::time_point interval_wall_start_ = Clock::now();
  TrainState state_;
  double examples_per_step_ = 0, peak_flops_ = 0;
  float last_lr_ = 0;  // the last step's, for the final evaluation's metrics row
  int64_t saved_step_ = -1, reported_skips_ = 0;
  bool plot_warned_ = false;
  Clock::time_point last_plot_ = Clock::now();
  ProgressBar bar_;
  Clock::time_point session_start_;
  double session_start_elapsed_ = 0, interval_seconds_ = 0, ema_step_seconds_ = 0, fit_seconds_ = 0;
  int64_t interval_steps_ = 0, fit_steps_ = 0;
  bool fitting_minutes_ = false;
};

}  // namespace

int run_training(RunSetup& run) {
  Trainer trainer(run);
  return trainer.run();
}

int train_main(int argc, char** argv) {
  // Under mpirun every rank runs this; rank 0 alone prints progress (errors go to stderr from any rank).
  try {
    if (dist::detect_launch().rank != 0 && !std::freopen("/dev/null", "w", stdout))
      throw Error("cannot silence stdout on this rank");
  } catch (const Error& e) {
    std::fprintf(stderr, "train: %s\n", e.what());
    return 1;
  }
  try {
    cpu::cpu_isa();  // a bad TG_CPU_ISA stops the run here, before any work
    std::optional<RunSetup> run = setup_run(argc, argv);
    if (!run) return 0;
    return run_training(*run);
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "train: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "train: out of memory; try a smaller --batch, --block or model\n");
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "train: %s\n", e.what());
    return 1;
  }
}

}  // namespace tg
