#include "programs/lib/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "autograd/engine.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/isa.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/grad_scaler.h"
#include "optim/param_group.h"
#include "optim/schedule.h"
#include "optim/sgd.h"
#include "tensor/cuda_allocator.h"
#include "tensor/error.h"
#include "programs/lib/gpu_peak.h"
#include "programs/lib/machine_peak.h"
#include "programs/lib/metrics.h"
#include "programs/lib/progress.h"
#include "programs/lib/run_setup.h"
#include "programs/lib/stop_signal.h"
#include "programs/lib/task.h"

namespace tg {

namespace {

using Clock = std::chrono::steady_clock;

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

// --optimizer: AdamW with GPT's betas (0.9, 0.95), or SGD with Nesterov momentum. Both decay the
// weight matrices and kernels only (param_group.h).
std::unique_ptr<Optimizer> make_optimizer(const RunConfig& c, Module& model) {
  std::vector<ParamGroup> groups = weight_decay_groups(model.parameters(), static_cast<float>(c.weight_decay));
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
GradScalerOptions scaler_options(DType dtype) {
  GradScalerOptions options;
  options.enabled = dtype == DType::F16;
  return options;
}

class Trainer {
 public:
  explicit Trainer(RunSetup& run)
      : run_(run), c_(run.config), task_(*run.task), device_(parse_device(c_.device)),
        dtype_(parse_dtype(c_.dtype)),  // fp32, bf16 or fp16 by now (resolve_defaults)
        model_(built_model(task_, device_, dtype_)),
        optimizer_(make_optimizer(c_, model_)),
        scaler_(scaler_options(dtype_)),
        metrics_(c_.out + "/metrics.csv", task_.example_unit().column, task_.metric_columns(),
                 run.resume_from.has_value(), run.resume_from ? run.resume_from->state.step : 0) {
    state_.best_val_loss = std::numeric_limits<double>::infinity();
    set_device(device_);  // kernels launch on the current device
    state_.total_steps = c_.steps;
    manual_seed(static_cast<uint64_t>(c_.seed));  // dropout draws from the default generator
    if (run.resume_from) restore(*run.resume_from);
    examples_per_step_ = task_.examples_per_micro_batch() * static_cast<double>(c_.grad_accum);
    // MFU against the CPU's measured FMA peak, or the GPU's dense datasheet peak for the dtype.
    peak_flops_ = device_.is_cpu() ? cpu_peak_gflops(omp_get_max_threads()) * 1e9 : gpu_peak(device_, dtype_).flops;
  }

  int run() {
    print_header();
    install_stop_handlers();
    session_start_ = Clock::now();
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
  bool train_step(float lr, double& loss) {
    optimizer_->set_lr(lr);
    optimizer_->zero_grad();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < c_.grad_accum; micro++) {
      Tensor micro_loss = task_.micro_batch_loss();
      float value = micro_loss.item();
      if (!std::isfinite(value)) return stop_on_non_finite("loss", value);
      loss_sum += value;
      // The mean over micro-batches, by scaling each backward's seed gradient (and, for fp16, by
      // the loss scale: the scaler divides it out of the gradients before they are used).
      scaler_.backward(micro_loss, 1.0f / static_cast<float>(c_.grad_accum));
    }
    loss = loss_sum / static_cast<double>(c_.grad_accum);
    // fp16: an overflowed gradient skips this update and halves the scale; training goes on.
    bool finite = scaler_.unscale_(model_.parameters());
    if (finite && c_.clip > 0) {
      float norm = clip_grad_norm(model_.parameters(), static_cast<float>(c_.clip));
      if (!std::isfinite(norm) && !scaler_.enabled()) return stop_on_non_finite("gradient norm", norm);
    }
    scaler_.step(*optimizer_);
    scaler_.update();
    state_.step++;
    return true;
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
      bar_.clear();
      std::printf("%s\n", status_line(report).c_str());
      if (scaler_.enabled() && scaler_.skipped_steps() > reported_skips_) {
        std::printf("  fp16: %lld steps skipped so far (gradient overflow), loss scale now %g\n",
                    static_cast<long long>(scaler_.skipped_steps()), static_cast<double>(scaler_.scale()));
        reported_skips_ = scaler_.skipped_steps();
      }
      if (c_.mem_stats && device_.is_cuda()) std::printf("  memory: %s\n", cuda_memory_summary(device_).c_str());
      std::fflush(stdout);
      row.examples_per_second = report.examples_per_second;
      interval_seconds_ = 0;
      interval_steps_ = 0;
    }
    bool improved = false;
    if (eval) {
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
    if (log || eval) metrics_.append(row);
    if (s % c_.sample_every == 0 || last) {
      bar_.clear();
      task_.print_sample(s);
    }
    if (eval || last || s % c_.save_every == 0 || stop_requested()) save(improved);
    // gnuplot takes a few hundred milliseconds: redraw at most every half minute, and at the end.
    if (eval && (last || seconds_since(last_plot_) > 30)) plot();
    if (!stop_requested() || last) return false;
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
    model_.load_state_dict(ckpt.model);
    optimizer_->load_state_tensors(ckpt.optimizer);
    scaler_.load_state_tensors(ckpt.optimizer);
    state_ = ckpt.state;
    saved_step_ = state_.step;
    // --steps given again on resume lengthens (or shortens) the schedule from here on.
    if (!c_.minutes && state_.total_steps != c_.steps) state_.total_steps = std::max(c_.steps, state_.step);
    task_.restore(ckpt);
    default_generator().set_state(state_.dropout_rng);
  }

  void save(bool improved) {
    state_.dropout_rng = default_generator().state();
    std::string config = config_to_json(c_);
    TaskCheckpoint extras = task_.checkpoint_extras();
    auto training_state = optimizer_->state_tensors();
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
    if (device_.is_cpu())
      std::printf("cpu kernels: %s (gemm tile %dx%d; TG_CPU_ISA forces a level)\n", cpu::cpu_isa_name(cpu::cpu_isa()),
                  cpu::gemm_mr(), cpu::gemm_nr());
    if (run_.resume_from)
      std::printf("resuming %s at step %lld/%lld\n", run_.resume_from->path.c_str(),
                  static_cast<long long>(state_.step), static_cast<long long>(state_.total_steps));
    std::printf("run folder %s\n", c_.out.c_str());
    std::fflush(stdout);
  }

  // The task's last evaluation, if it has one (a test split): printed and kept in metrics.csv.
  void final_evaluation() {
    Metrics metrics = task_.final_evaluation();
    if (metrics.empty()) return;
    std::printf("step %lld: %s\n", static_cast<long long>(state_.step), describe_metrics(metrics).c_str());
    std::fflush(stdout);
    MetricsRow row;
    row.step = state_.step;
    row.time_seconds = state_.elapsed_seconds;
    row.lr = last_lr_;
    for (const auto& [name, value] : metrics) row.extra[name] = value;
    metrics_.append(row);
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
  MetricsLog metrics_;
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
