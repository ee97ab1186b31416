// Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/: a few small valid
// files of each format, written by the library's own writers (safetensors, checkpoints,
// tokenizers), zlib (IDX .gz) and stb_image_write (PNG, JPEG, BMP), plus PGM/PPM by hand.
// Build and run from the repository root: make fuzz-corpus
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "data/bpe_tokenizer.h"
#include "data/char_tokenizer.h"
#include "programs/lib/checkpoint.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

using namespace tg;

namespace {

const std::string kRoot = "tests/fuzz/corpus/";

std::string folder(const std::string& target) {
  mkdir(kRoot.c_str(), 0755);
  std::string dir = kRoot + target;
  mkdir(dir.c_str(), 0755);
  return dir + "/";
}

void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

Tensor ramp(const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); i++) p[i] = 0.25f * static_cast<float>(i) - 1.0f;
  return t.to(dtype);
}

std::string gzip(const std::string& bytes) {
  std::string out(compressBound(bytes.size()) + 64, '\0');
  z_stream stream{};
  deflateInit2(&stream, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // 15 + 16: gzip wrapper
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  stream.avail_in = static_cast<uInt>(bytes.size());
  stream.next_out = reinterpret_cast<Bytef*>(&out[0]);
  stream.avail_out = static_cast<uInt>(out.size());
  deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

std::string idx(uint32_t magic, const std::vector<uint32_t>& dims, uint32_t seed) {
  auto be = [](uint32_t v) { return std::string{char(v >> 24), char((v >> 16) & 255), char((v >> 8) & 255), char(v & 255)}; };
  std::string bytes = be(magic);
  size_t body = 1;
  for (uint32_t d : dims) bytes += be(d), body *= d;
  Generator gen(seed);
  for (size_t i = 0; i < body; i++) bytes += static_cast<char>(gen.below(magic == 0x801 ? 10 : 256));
  return bytes;
}

void write_safetensors() {
  const std::string dir = folder("fuzz_safetensors");
  save_safetensors(dir + "dtypes.safetensors", {{"f32", ramp({2, 3}, DType::F32)},
                                               {"bf16", ramp({3}, DType::BF16)},
                                               {"f16", ramp({1, 2, 2}, DType::F16)},
                                               {"i32", ramp({2}, DType::I32)},
                                               {"u8", ramp({5}, DType::U8)}});
  save_safetensors(dir + "scalar_and_empty.safetensors", {{"scalar", ramp({}, DType::F32)},
                                                         {"empty", ramp({0, 3}, DType::F32)}},
                   {{"note", "a scalar and a zero-size tensor"}});
  save_safetensors(dir + "metadata_only.safetensors", {}, {{"format", "pt"}});
}

void write_checkpoints_and_tokenizers() {
  const std::string text = "In the beginning God created the heaven and the earth. 1:2 And the earth was without form.";
  const std::string char_json = CharTokenizer::train(text).to_json();
  const std::string bpe_json = BpeTokenizer::train(text + text + " the the earth earth", 280).to_json();
  const std::string invalid_json = CharTokenizer::train("caf\xc3\xa9 \xff\xfe\n").to_json();  // invalid bytes too

  const std::string tok = folder("fuzz_tokenizer");
  put(tok + "char.json", char_json);
  put(tok + "bpe.json", bpe_json);
  put(tok + "char_invalid_bytes.json", invalid_json);

  const std::string dir = folder("fuzz_checkpoint");
  TrainState state;
  state.step = 7, state.total_steps = 100, state.best_val_loss = 2.5, state.best_step = 5;
  state.elapsed_seconds = 1.25, state.dropout_rng = {1, 2, 3, 4};
  TaskCheckpoint text_task{"text", R"({"layers":1,"heads":1,"embd":4})", {{"tokenizer", bpe_json}}, {}};
  save_checkpoint(dir + "text.safetensors", {{"wte.weight", ramp({5, 4}, DType::F32)}, {"ln.bias", ramp({4}, DType::F32)}},
                  {{"adamw.step", ramp({1}, DType::I32)}, {"adamw.exp_avg.0", ramp({5, 4}, DType::F32)}}, state,
                  R"({"lr":0.001})", text_task);
  state.best_val_loss = std::numeric_limits<double>::infinity(), state.best_step = -1;
  TaskCheckpoint image_task{"image", R"({"model":"cnn","channels":1,"classes":3})", {{"classes", "a\nb\nc"}},
                            {{"mean", ramp({1}, DType::F32)}}};
  save_checkpoint(dir + "image.safetensors", {{"0.weight", ramp({2, 1, 3, 3}, DType::BF16)}}, {}, state, "{}", image_task);
}

void write_idx() {
  const std::string plain = folder("fuzz_idx"), packed = folder("fuzz_idx_gzip");
  const std::string images = idx(0x803, {3, 4, 5}, 1), labels = idx(0x801, {3}, 2), one = idx(0x803, {1, 2, 2}, 3);
  for (const std::string& dir : {plain, packed}) {
    put(dir + "images-idx3-ubyte", images);
    put(dir + "labels-idx1-ubyte", labels);
    put(dir + "one-idx3-ubyte", one);
  }
  put(plain + "images-idx3-ubyte.gz", gzip(images));
  put(plain + "labels-idx1-ubyte.gz", gzip(labels));
}

void write_images() {
  const std::string dir = folder("fuzz_image");
  std::vector<uint8_t> pixels(8 * 8 * 4);
  for (size_t i = 0; i < pixels.size(); i++) pixels[i] = static_cast<uint8_t>(i * 37 + (i >> 3) * 11);
  stbi_write_png((dir + "grey_5x3.png").c_str(), 5, 3, 1, pixels.data(), 0);
  stbi_write_png((dir + "grey_alpha_3x2.png").c_str(), 3, 2, 2, pixels.data(), 0);
  stbi_write_png((dir + "rgb_4x4.png").c_str(), 4, 4, 3, pixels.data(), 0);
  stbi_write_png((dir + "rgba_3x5.png").c_str(), 3, 5, 4, pixels.data(), 0);
  stbi_write_jpg((dir + "rgb_8x8.jpg").c_str(), 8, 8, 3, pixels.data(), 90);
  stbi_write_jpg((dir + "grey_7x5.jpg").c_str(), 7, 5, 1, pixels.data(), 50);
  stbi_write_bmp((dir + "rgb_5x3.bmp").c_str(), 5, 3, 3, pixels.data());
  stbi_write_bmp((dir + "rgba_2x2.bmp").c_str(), 2, 2, 4, pixels.data());
  put(dir + "grey_4x3.pgm", "P5\n4 3\n255\n" + std::string(pixels.begin(), pixels.begin() + 12));
  put(dir + "rgb_2x2.ppm", "P6\n# a comment\n2 2\n255\n" + std::string(pixels.begin(), pixels.begin() + 12));
}

}  // namespace

int main() {
  write_safetensors();
  write_checkpoints_and_tokenizers();
  write_idx();
  write_images();
  std::printf("wrote the seed corpora under %s\n", kRoot.c_str());
  return 0;
}
