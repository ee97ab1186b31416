// The LSTM language model (nn/lstm_lm.h), the LanguageModel interface's decoders (nn/gpt.h too),
// and `./train FILE --arch lstm` end to end: it learns, resumes exactly, samples with ./generate,
// and refuses what does not fit (another --arch on --resume, GPT-only flags, ./classify).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "autograd/functions/view.h"
#include "nn/gpt.h"
#include "nn/gradcheck.h"
#include "nn/lstm_lm.h"
#include "programs/lib/checkpoint.h"
#include "tensor/device.h"
#include "tensor/safetensors.h"
#include "tests/program_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

LSTMLanguageModelConfig tiny_lstm(int64_t V = 7, int64_t H = 5, int64_t L = 2) {
  LSTMLanguageModelConfig c;
  c.vocab_size = V;
  c.n_embd = H;
  c.n_layer = L;
  return c;
}

Tensor random_ids(int64_t B, int64_t T, int64_t V, Generator& gen) {
  std::vector<int32_t> ids(static_cast<size_t>(B * T));
  for (auto& id : ids) id = static_cast<int32_t>(gen.below(static_cast<uint64_t>(V)));
  return Tensor::from_ints(ids, {B, T});
}

std::vector<double> as_double(const Tensor& t) {
  std::vector<float> f = t.contiguous().to_vector();
  return std::vector<double>(f.begin(), f.end());
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The model written out in double precision from its own weights: the embedding rows, PyTorch's
// LSTM equations layer by layer (gates i, f, g, o), the linear head. idx (B, T) -> logits (B, T, V).
std::vector<double> reference_logits(const LSTMLanguageModel& model, const std::vector<int32_t>& idx, int64_t B,
                                     int64_t T) {
  const LSTMLanguageModelConfig& c = model.config();
  const int64_t H = c.n_embd, V = c.vocab_size;
  std::vector<double> wte = as_double(model.wte->weight);
  std::vector<std::vector<double>> seq(static_cast<size_t>(B * T), std::vector<double>(static_cast<size_t>(H)));
  for (int64_t n = 0; n < B * T; n++)
    for (int64_t j = 0; j < H; j++) seq[n][j] = wte[idx[n] * H + j];
  for (int64_t k = 0; k < c.n_layer; k++) {
    const auto& w = model.rnn->layer(k);
    std::vector<double> wih = as_double(w.weight_ih), whh = as_double(w.weight_hh), bih = as_double(w.bias_ih),
                        bhh = as_double(w.bias_hh);
    for (int64_t b = 0; b < B; b++) {
      std::vector<double> h(static_cast<size_t>(H), 0.0), cell(static_cast<size_t>(H), 0.0);
      for (int64_t t = 0; t < T; t++) {
        std::vector<double>& x = seq[b * T + t];
        std::vector<double> gates(static_cast<size_t>(4 * H));
        for (int64_t r = 0; r < 4 * H; r++) {
          double acc = bih[r] + bhh[r];
          for (int64_t j = 0; j < H; j++) acc += wih[r * H + j] * x[j] + whh[r * H + j] * h[j];
          gates[r] = acc;
        }
        for (int64_t j = 0; j < H; j++) {
          double i = sigmoid(gates[j]), f = sigmoid(gates[H + j]), g = std::tanh(gates[2 * H + j]),
                 o = sigmoid(gates[3 * H + j]);
          cell[j] = f * cell[j] + i * g;
          h[j] = o * std::tanh(cell[j]);
        }
        x = h;  // this layer's output is the next layer's input
      }
    }
  }
  std::vector<double> head = as_double(model.lm_head->weight), bias = as_double(model.lm_head->bias);
  std::vector<double> logits(static_cast<size_t>(B * T * V));
  for (int64_t n = 0; n < B * T; n++)
    for (int64_t v = 0; v < V; v++) {
      double acc = bias[v];
      for (int64_t j = 0; j < H; j++) acc += head[v * H + j] * seq[n][j];
      logits[n * V + v] = acc;
    }
  return logits;
}

// Float sums of at most K = 2H + 2 = 12 products per gate and H + 1 per logit, with weights and
// states of order 1, carry an error of at most K * 2^-24 * (sum of |terms|) ~ 1e-6 each; through
// the T = 4 steps of 2 layers (sigmoid and tanh are 1-Lipschitz, the recurrence's weights below
// 1/sqrt(H)) it grows by a small factor. 2e-5 is ten times the worst of that.
constexpr double kAgainstDouble = 2e-5;

}  // namespace

// ---- the model ---------------------------------------------------------------------------------

TEST(LstmLanguageModel, ParameterNamesAndShapesArePyTorchs) {
  LSTMLanguageModel model(tiny_lstm(7, 5, 2), 1);
  std::vector<std::pair<std::string, Shape>> want = {
      {"wte.weight", {7, 5}},          {"rnn.weight_ih_l0", {20, 5}}, {"rnn.weight_hh_l0", {20, 5}},
      {"rnn.bias_ih_l0", {20}},        {"rnn.bias_hh_l0", {20}},      {"rnn.weight_ih_l1", {20, 5}},
      {"rnn.weight_hh_l1", {20, 5}},   {"rnn.bias_ih_l1", {20}},      {"rnn.bias_hh_l1", {20}},
      {"lm_head.weight", {7, 5}},      {"lm_head.bias", {7}}};
  NamedTensors got = model.named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < want.size(); k++) {
    EXPECT_EQ(got[k].first, want[k].first);
    EXPECT_EQ(got[k].second.shape(), want[k].second) << want[k].first;
  }
  EXPECT_EQ(model.vocab_size(), 7);
  // 6 FLOPs per weight of every matrix that multiplies: 2 layers x (20x5 + 20x5), and 7x5.
  EXPECT_EQ(model.flops_per_token(), 6.0 * (2 * (100 + 100) + 35));
}

TEST(LstmLanguageModel, InitIsFixedBySeedWithPyTorchsScales) {
  LSTMLanguageModel a(tiny_lstm(50, 16, 1), 7), b(tiny_lstm(50, 16, 1), 7), other(tiny_lstm(50, 16, 1), 8);
  NamedTensors pa = a.named_parameters(), pb = b.named_parameters(), po = other.named_parameters();
  for (size_t k = 0; k < pa.size(); k++) {
    EXPECT_EQ(pa[k].second.to_vector(), pb[k].second.to_vector()) << pa[k].first;
    EXPECT_NE(pa[k].second.to_vector(), po[k].second.to_vector()) << pa[k].first;
  }
  // wte N(0, 1); everything else uniform in +-1/sqrt(H) = +-0.25.
  std::vector<float> wte = a.wte->weight.to_vector();
  double max_abs = 0;
  for (float v : wte) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
  EXPECT_GT(max_abs, 1.0);  // 800 normal draws: one beyond 1 is all but certain
  for (const auto& [name, p] : pa) {
    if (name == "wte.weight") continue;
    for (float v : p.to_vector()) EXPECT_LE(std::fabs(v), 0.25f) << name;
  }
}

TEST(LstmLanguageModel, LogitsMatchADoubleReference) {
  Generator gen(11);
  LSTMLanguageModel model(tiny_lstm(7, 5, 2), 3);
  const int64_t B = 2, T = 4;
  Tensor idx = random_ids(B, T, 7, gen);
  std::vector<float> idx_f = idx.to_vector();
  std::vector<int32_t> ids(idx_f.begin(), idx_f.end());
  expect_close(model.forward(idx).to_vector(), reference_logits(model, ids, B, T), kAgainstDouble, 0.0, "logits");
}

// Every parameter (embedding, both LSTM layers, head) against finite differences through the loss.
TEST(LstmLanguageModel, GradcheckOverEveryParameter) {
  Generator gen(12);
  LSTMLanguageModel model(tiny_lstm(5, 3, 2), 4);
  Tensor idx = random_ids(2, 3, 5, gen), targets = random_ids(2, 3, 5, gen);
  EXPECT_EQ(gradcheck_module(model, [&](const std::vector<Tensor>&) { return model.forward(idx); }, {}), "");
  EXPECT_EQ(gradcheck_module(model, [&](const std::vector<Tensor>&) { return model.loss(model.forward(idx), targets); },
                             {}, {"lm_head.weight", "rnn.weight_hh_l1", "wte.weight"}),
            "");
}

// A sequence fed in pieces with the state carried gives the logits of feeding it whole: what the
// decoder relies on. Same sums in the same order except the input GEMM's row count, so within the
// float bound above.
TEST(LstmLanguageModel, StateCarriesAcrossCalls) {
  Generator gen(13);
  LSTMLanguageModel model(tiny_lstm(7, 5, 2), 5);
  NoGrad no_grad;
  Tensor idx = random_ids(3, 6, 7, gen);
  std::vector<float> whole = model.forward(idx).to_vector();
  LSTMState state;
  Tensor first = model.forward(idx.narrow(1, 0, 4).contiguous(), state);
  EXPECT_EQ(state.h.shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(state.c.shape(), (Shape{2, 3, 5}));
  Tensor second = model.forward(idx.narrow(1, 4, 2).contiguous(), state);
  std::vector<float> a = first.to_vector(), b = second.to_vector();
  for (int64_t bt = 0; bt < 3; bt++)
    for (int64_t t = 0; t < 6; t++)
      for (int64_t v = 0; v < 7; v++) {
        float piece = t < 4 ? a[(bt * 4 + t) * 7 + v] : b[(bt * 2 + t - 4) * 7 + v];
        EXPECT_NEAR(piece, whole[(bt * 6 + t) * 7 + v], kAgainstDouble) << bt << "," << t << "," << v;
      }
}

// The decoders give, token by token, the last position's logits of a forward over the context the
// architecture keeps: all of it for the LSTM, the last block_size ids for the GPT.
TEST(LanguageModelDecoder, LstmAndGptDecodersMatchTheirForward) {
  Generator gen(14);
  NoGrad no_grad;
  LSTMLanguageModel lstm(tiny_lstm(7, 5, 2), 6);
  GPTConfig g;
  g.vocab_size = 7;
  g.block_size = 4;
  g.n_layer = 1;
  g.n_head = 2;
  g.n_embd = 8;
  GPT gpt(g, 6);
  std::vector<int32_t> ids = {1, 4, 2};
  for (int i = 0; i < 4; i++) ids.push_back(static_cast<int32_t>(gen.below(7)));  // 7 ids: past the GPT's block
  for (const LanguageModel* model : {static_cast<const LanguageModel*>(&lstm), static_cast<const LanguageModel*>(&gpt)}) {
    const bool is_gpt = model == &gpt;
    std::unique_ptr<Decoder> decoder = model->decoder();
    for (size_t n = 3; n <= ids.size(); n++) {
      std::vector<int32_t> fed = n == 3 ? std::vector<int32_t>(ids.begin(), ids.begin() + 3)
                                        : std::vector<int32_t>{ids[n - 1]};
      std::vector<float> step = decoder->feed(fed).to_vector();
      size_t start = is_gpt && n > 4 ? n - 4 : 0;
      std::vector<int32_t> context(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.begin() + static_cast<std::ptrdiff_t>(n));
      int64_t T = static_cast<int64_t>(context.size());
      std::vector<float> full = model->forward(Tensor::from_ints(context, {1, T})).select(1, T - 1).contiguous().to_vector();
      ASSERT_EQ(step.size(), 7u);
      for (size_t v = 0; v < step.size(); v++)
        EXPECT_NEAR(step[v], full[v], kAgainstDouble) << (is_gpt ? "gpt" : "lstm") << " after " << n << " ids";
    }
  }
}

TEST(LstmLanguageModel, BadConfigAndInputAreNamed) {
  for (auto [field, edit] : std::vector<std::pair<const char*, std::function<void(LSTMLanguageModelConfig&)>>>{
           {"vocab_size", [](LSTMLanguageModelConfig& c) { c.vocab_size = 0; }},
           {"n_layer", [](LSTMLanguageModelConfig& c) { c.n_layer = -1; }},
           {"n_embd", [](LSTMLanguageModelConfig& c) { c.n_embd = 0; }},
           {"dropout", [](LSTMLanguageModelConfig& c) { c.dropout = 1.0f; }}}) {
    LSTMLanguageModelConfig c = tiny_lstm();
    edit(c);
    EXPECT_ERROR_MENTIONS(LSTMLanguageModel(c, 0), "LSTMLanguageModelConfig", field);
  }
  LSTMLanguageModel model(tiny_lstm(), 0);
  EXPECT_ERROR_MENTIONS(model.forward(Tensor::from_ints({1, 2, 3}, {3})), "LSTMLanguageModel::forward", "(B, T)", "(3)");
  EXPECT_ERROR_MENTIONS(model.forward(Tensor::zeros({1, 3})), "LSTMLanguageModel::forward", "i32", "f32");
  LSTMState wrong{Tensor::zeros({2, 4, 5}), Tensor::zeros({2, 4, 5})};  // batch 4 for a batch of 1
  EXPECT_THROW(model.forward(Tensor::from_ints({1, 2}, {1, 2}), wrong), Error);
}

// ---- ./train --arch lstm ----------------------------------------------------------------------------

namespace {

// Two layers so that dropout between them is exercised; one thread for bit-identical reruns.
const std::string kTinyLstm =
    " --arch lstm --layers 2 --embd 16 --block 8 --batch 4 --eval-batches 2 --sample-tokens 8 --threads 1 --device cpu";

std::string english(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; i++) text += "the quick brown fox jumps over the lazy dog. ";
  return text;
}

// The entropy of the text's character frequencies in nats: the loss of the best model that
// ignores context. A model below it has learned from the context.
double unigram_entropy(const std::string& text) {
  std::map<char, double> counts;
  for (char ch : text) counts[ch] += 1;
  double entropy = 0;
  for (const auto& [ch, n] : counts) entropy -= n / static_cast<double>(text.size()) * std::log(n / static_cast<double>(text.size()));
  return entropy;
}

std::vector<double> val_losses(const std::string& metrics_csv) {
  std::vector<double> val;
  for (const std::string& row : loss_columns(metrics_csv)) {  // step,train,val
    std::string last = row.substr(row.find_last_of(',') + 1);
    if (!last.empty() && last != "val_loss") val.push_back(std::stod(last));
  }
  return val;
}

void edit_metadata(const std::string& path, const std::function<void(std::map<std::string, std::string>&)>& edit) {
  SafetensorsData data = load_safetensors(path);
  edit(data.metadata);
  save_safetensors(path, data.tensors, data.metadata);
}

}  // namespace

TEST(TrainProgramLstm, LearnsBelowTheUnigramEntropyAndGenerates) {
  TempDir dir;
  std::string text = english(60);
  std::string corpus = dir.write("fox.txt", text), out = dir.file("run");
  Result r = run("train", corpus + " --out " + out + kTinyLstm + " --steps 100 --eval-every 50 --lr 1e-2");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find("model: LSTM, 2 layers, 16 wide, block 8"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("---- sample at step 100 ----"), std::string::npos);
  std::vector<double> val = val_losses(read_file(out + "/metrics.csv"));
  ASSERT_EQ(val.size(), 2u);
  EXPECT_LT(val.back(), unigram_entropy(text)) << "unigram entropy " << unigram_entropy(text);

  Checkpoint ckpt = load_checkpoint(out + "/last.safetensors");
  EXPECT_EQ(ckpt.task.architecture, "{\"model\":\"lstm\",\"vocab_size\":28,\"n_layer\":2,\"n_embd\":16}");
  EXPECT_EQ(nlohmann::json::parse(ckpt.config_json).at("arch"), "lstm");

  Result g = run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 30 --seed 3 --threads 1");
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(g.out.substr(0, 9), "the quick");
  EXPECT_EQ(g.out.size(), 9u + 30u + 1u);  // prompt, 30 one-byte characters, the final newline
  EXPECT_EQ(run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 30 --seed 3 --threads 1").out, g.out);
  Result greedy = run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 30 --temperature 0 --threads 1");
  ASSERT_EQ(greedy.status, 0) << greedy.err;
  EXPECT_EQ(run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 30 --temperature 0 --seed 9 --threads 1").out,
            greedy.out);  // greedy decoding draws nothing
  EXPECT_ONE_LINE_ERROR(run("classify", "--ckpt " + out + " x.png"),
                        "is a text-model checkpoint; ./classify classifies images — use ./generate");
}

TEST(TrainProgramLstm, ResumeAfterSigintIsBitIdentical) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(100));
  // Dropout on: between the layers and before the head, so its generator must survive the restart.
  std::string args = corpus + kTinyLstm + " --steps 600 --log-every 1 --eval-every 150 --sample-every 100000 --dropout 0.1";
  ASSERT_EQ(run("train", args + " --out " + dir.file("straight")).status, 0);
  stop_and_resume(args, dir.file("split"), 3);
  std::vector<std::string> a = loss_columns(read_file(dir.file("straight/metrics.csv")));
  ASSERT_EQ(a.size(), 601u);
  EXPECT_EQ(a, loss_columns(read_file(dir.file("split/metrics.csv"))));
}

TEST(TrainProgramLstm, ArchMismatchesAndGptOnlyFlagsAreOneLine) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(30));
  std::string lstm_dir = dir.file("lstm"), gpt_dir = dir.file("gpt");
  std::string steps = " --steps 2 --eval-every 2 --batch 4 --eval-batches 2 --threads 1 --device cpu --block 8";
  ASSERT_EQ(run("train", corpus + " --out " + lstm_dir + kTinyLstm + " --steps 2 --eval-every 2").status, 0);
  ASSERT_EQ(run("train", corpus + " --out " + gpt_dir + " --layers 1 --heads 2 --embd 16" + steps).status, 0);

  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + lstm_dir + " --resume --arch gpt --steps 4"),
                        "--arch gpt differs from the checkpoint's lstm");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + gpt_dir + " --resume --arch lstm --steps 4"),
                        "--arch lstm differs from the checkpoint's gpt");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + lstm_dir + " --resume --heads 2 --steps 4"),
                        "--heads applies to --arch gpt only");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + lstm_dir + " --resume --model tiny --steps 4"),
                        "--model tiny is a GPT preset");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + dir.file("new") + kTinyLstm + " --heads 4"),
                        "--heads applies to --arch gpt only");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + dir.file("new") + " --arch lstm --model small"),
                        "--model small is a GPT preset; with --arch lstm give --layers, --embd and --block");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + dir.file("new") + " --arch rnn"),
                        "--arch 'rnn' is not one of gpt|lstm");
  // The LSTM run resumes without the flags given again: its arch comes from its config.
  EXPECT_EQ(run("train", corpus + " --out " + lstm_dir + " --resume --steps 4").status, 0);

  // A GPT run from before --arch existed (no "arch" in its config) loads and samples as a GPT.
  std::string last = gpt_dir + "/last.safetensors";
  edit_metadata(last, [](std::map<std::string, std::string>& meta) {
    nlohmann::json config = nlohmann::json::parse(meta.at("config"));
    config.erase("arch");
    meta["config"] = config.dump();
  });
  Result g = run("generate", "--ckpt " + last + " --tokens 4 --threads 1");
  EXPECT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(run("train", corpus + " --out " + gpt_dir + " --resume --steps 4").status, 0);
}

TEST(TrainProgramLstm, HelpNamesTheArchitectures) {
  Result r = run("train", "--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("  --arch X"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpt (a transformer), or lstm"), std::string::npos) << r.out;
}

// ---- ./train --arch lstm on the GPU (skipped without one) --------------------------------------------

// bf16 on the GPU (the LSTM cells' CUDA kernels, embedding, head and loss in half precision with
// f32 masters) learns below the unigram entropy as the CPU run does, and ./generate samples from
// the checkpoint on the GPU and on the CPU.
TEST(TrainProgramLstmGpu, Bf16LearnsAndGeneratesOnBothDevices) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU (" << cuda_status() << ")";
  TempDir dir;
  std::string text = english(200);
  std::string corpus = dir.write("fox.txt", text), out = dir.file("run");
  Result r = run("train", corpus + " --out " + out +
                              " --arch lstm --layers 2 --embd 64 --block 32 --batch 8 --steps 150 --eval-every 50 "
                              "--lr 1e-2 --sample-every 100000 --device cuda --dtype bf16");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  std::vector<double> val = val_losses(read_file(out + "/metrics.csv"));
  ASSERT_EQ(val.size(), 3u);
  EXPECT_LT(val.back(), unigram_entropy(text)) << "unigram entropy " << unigram_entropy(text);
  for (const char* device : {"cuda", "cpu"}) {
    Result g = run("generate", "--ckpt " + out + " --prompt 'the' --tokens 20 --device " + device);
    ASSERT_EQ(g.status, 0) << device << ": " << g.err;
    EXPECT_EQ(g.out.size(), 3u + 20u + 1u) << device;
  }
}
