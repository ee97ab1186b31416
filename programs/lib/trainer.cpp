#include "programs/lib/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "autograd/engine.h"
#include "nn/gpt.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/grad_scaler.h"
#include "optim/param_group.h"
#include "optim/schedule.h"
#include "tensor/cuda_allocator.h"
#include "tensor/error.h"
#include "programs/lib/gpu_peak.h"
#include "programs/lib/machine_peak.h"
#include "programs/lib/metrics.h"
#include "programs/lib/progress.h"
#include "programs/lib/run_setup.h"
#include "programs/lib/sampling.h"
#include "programs/lib/stop_signal.h"

namespace tg {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

GPTConfig gpt_config(const RunConfig& c, int64_t vocab_size) {
  GPTConfig g;
  g.vocab_size = vocab_size;
  g.block_size = c.block;
  g.n_layer = c.layers;
  g.n_head = c.heads;
  g.n_embd = c.embd;
  g.dropout = static_cast<float>(c.dropout);
  g.bias = true;
  return g;
}

// Mean loss over eval_batches batches of the validation split. The batches come from a generator
// seeded the same way at every evaluation, so successive validation losses measure the model,
// not the draw, and the training stream's randomness is untouched.
double validation_loss(GPT& model, const RunSetup& run) {
  const RunConfig& c = run.config;
  Generator gen(static_cast<uint64_t>(c.seed) ^ 0x76616c6964ull);
  NoGrad no_grad;
  model.eval();
  double total = 0;
  for (int64_t i = 0; i < c.eval_batches; i++) {
    Batch batch = sample_batch(*run.data.val, c.batch, c.block, gen);
    Device device = parse_device(c.device);
    total += model.loss(model.forward(batch.inputs.to(device)), batch.targets.to(device)).item();
  }
  model.train();
  return total / static_cast<double>(c.eval_batches);
}

void print_sample(GPT& model, const RunSetup& run, int64_t step) {
  const RunConfig& c = run.config;
  // Start from a newline when the vocabulary has one: text after a line break is typical text.
  std::vector<int32_t> ids;
  try { ids = run.tokenizer->encode("\n"); } catch (const Error&) { ids = {0}; }
  Generator gen(static_cast<uint64_t>(c.seed) + static_cast<uint64_t>(step));
  SamplingOptions options;
  options.tokens = c.sample_tokens;
  std::printf("---- sample at step %lld ----\n", static_cast<long long>(step));
  generate(model, ids, options, gen, [&](int32_t id) { std::fputs(run.tokenizer->token_bytes(id).c_str(), stdout); std::fflush(stdout); });
  std::printf("\n----\n");
  std::fflush(stdout);
}

// Moves and converts the model first: the optimizer must hold the final parameters (nn/module.h).
// With bf16 or f16 the parameters themselves become half precision; AdamW keeps f32 masters.
std::vector<ParamGroup> groups_on_device(GPT& model, Device device, DType dtype, float weight_decay) {
  if (device != Device::cpu()) model.to(device);
  if (dtype != DType::F32) model.to(dtype);
  return weight_decay_groups(model.parameters(), weight_decay);
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
      : run_(run), c_(run.config), model_(gpt_config(c_, run.tokenizer->vocab_size()), static_cast<uint64_t>(c_.seed)),
        device_(parse_device(c_.device)),
        dtype_(parse_dtype(c_.dtype)),  // fp32, bf16 or fp16 by now (resolve_defaults)
        optimizer_(groups_on_device(model_, device_, dtype_, static_cast<float>(c_.weight_decay)),
                   static_cast<float>(c_.lr), 0.9f, 0.95f, 1e-8f, c_.stochastic_rounding,
                   static_cast<uint64_t>(c_.seed)),
        scaler_(scaler_options(dtype_)),
        loader_(run.data.train, c_.batch, c_.block, static_cast<uint64_t>(c_.seed)),
        metrics_(c_.out + "/metrics.csv", run.resume_from.has_value(), run.resume_from ? run.resume_from->state.step : 0) {
    state_.best_val_loss = std::numeric_limits<double>::infinity();
    set_device(device_);  // kernels launch on the current device
    state_.total_steps = c_.steps;
    manual_seed(static_cast<uint64_t>(c_.seed));  // dropout draws from the default generator
    if (run.resume_from) restore(*run.resume_from);
    tokens_per_step_ = static_cast<double>(c_.batch * c_.block * c_.grad_accum);
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
    print_summary();
    return 0;
  }

 private:
  // One optimizer step over grad_accum micro-batches; `loss` gets their mean. Returns false after
  // reporting a NaN or inf loss or gradient norm, with the optimizer step not taken.
  bool train_step(float lr, double& loss) {
    optimizer_.set_lr(lr);
    optimizer_.zero_grad();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < c_.grad_accum; micro++) {
      Batch batch = loader_.next();
      Tensor micro_loss = model_.loss(model_.forward(batch.inputs.to(device_)), batch.targets.to(device_));
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
    scaler_.step(optimizer_);
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
      report.tokens_per_second = tokens_per_step_ * static_cast<double>(interval_steps_) / interval_seconds_;
      report.peak_fraction = peak_flops_ > 0 ? model_.flops_per_token() * report.tokens_per_second / peak_flops_ : -1;
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
      row.tokens_per_second = report.tokens_per_second;
      interval_seconds_ = 0;
      interval_steps_ = 0;
    }
    bool improved = false;
    if (eval) {
      row.val_loss = validation_loss(model_, run_);
      improved = row.val_loss < state_.best_val_loss;
      if (improved) {
        state_.best_val_loss = row.val_loss;
        state_.best_step = s;
      }
      bar_.clear();
      std::printf("step %lld: val loss %.4f%s\n", static_cast<long long>(s), row.val_loss, improved ? " (best so far)" : "");
      std::fflush(stdout);
    }
    if (log || eval) metrics_.append(row);
    if (s % c_.sample_every == 0 || last) {
      bar_.clear();
      print_sample(model_, run_, s);
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
    model_.load_state_dict(ckpt.model);
    optimizer_.load_state_tensors(ckpt.optimizer);
    scaler_.load_state_tensors(ckpt.optimizer);
    state_ = ckpt.state;
    saved_step_ = state_.step;
    // --steps given again on resume lengthens (or shortens) the schedule from here on.
    if (!c_.minutes && state_.total_steps != c_.steps) state_.total_steps = std::max(c_.steps, state_.step);
    loader_.restore(state_.loader);
    default_generator().set_state(state_.dropout_rng);
  }

  void save(bool improved) {
    state_.loader = loader_.position();
    state_.dropout_rng = default_generator().state();
    std::string config = config_to_json(c_), tokenizer = run_.tokenizer->to_json();
    auto training_state = optimizer_.state_tensors();
    for (auto& entry : scaler_.state_tensors()) training_state.push_back(entry);
    save_checkpoint(run_.last_path, model_.state_dict(), training_state, state_, config, tokenizer);
    if (improved) save_checkpoint(run_.best_path, model_.state_dict(), training_state, state_, config, tokenizer);
    saved_step_ = state_.step;
  }

  void plot() {
    last_plot_ = Clock::now();
    std::string problem = plot_losses(c_.out + "/metrics.csv", c_.out + "/loss.png");
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
    std::printf("corpus %s: %s train + %s validation tokens, %s tokenizer with %lld ids\n", c_.data.c_str(),
                format_count(static_cast<double>(run_.data.train->size())).c_str(),
                format_count(static_cast<double>(run_.data.val->size())).c_str(), run_.tokenizer->type().c_str(),
                static_cast<long long>(run_.tokenizer->vocab_size()));
    std::printf("model: %lld layers, %lld heads, %lld wide, block %lld, %s parameters; batch %lld x %lld%s on %s, "
                "%d threads\n",
                static_cast<long long>(c_.layers), static_cast<long long>(c_.heads),
                static_cast<long long>(c_.embd), static_cast<long long>(c_.block),
                format_count(static_cast<double>(model_.num_parameters())).c_str(), static_cast<long long>(c_.batch),
                static_cast<long long>(c_.block),
                c_.grad_accum > 1 ? (" x " + std::to_string(c_.grad_accum) + " accumulated").c_str() : "",
                (c_.device + " in " + c_.dtype).c_str(), omp_get_max_threads());
    if (run_.resume_from)
      std::printf("resuming %s at step %lld/%lld\n", run_.resume_from->path.c_str(),
                  static_cast<long long>(state_.step), static_cast<long long>(state_.total_steps));
    std::printf("run folder %s\n", c_.out.c_str());
    std::fflush(stdout);
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
    std::printf("\ncheckpoints: %s (last), %s (best); metrics: %s/metrics.csv\nsample with: ./generate --ckpt %s\n",
                run_.last_path.c_str(), run_.best_path.c_str(), c_.out.c_str(), c_.out.c_str());
    std::fflush(stdout);
  }

  RunSetup& run_;
  const RunConfig& c_;
  GPT model_;
  Device device_;
  DType dtype_;
  AdamW optimizer_;
  GradScaler scaler_;
  BatchLoader loader_;
  MetricsLog metrics_;
  TrainState state_;
  double tokens_per_step_ = 0, peak_flops_ = 0;
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

int train_main(int argc, char** argv) {
  try {
    std::optional<RunSetup> run = setup_run(argc, argv);
    if (!run) return 0;
    Trainer trainer(*run);
    return trainer.run();
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
