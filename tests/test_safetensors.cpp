// Safetensors reader and writer: round trips of every dtype and odd shape, the exact byte layout
// of a hand-built file, a fixture written by Python (tests/reference/make_safetensors_fixture.py),
// one test per kind of malformed file (the throw and its message), and light fuzzing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tensor/safetensors.h"

using namespace tg;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("tg_safetensors_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  // Unlink first: rewriting a file in place through truncation makes ext4 flush it on close, which
  // turns the fuzz loops below from milliseconds into seconds.
  fs::remove(path);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; i++) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file with this exact header text (no padding added) and data section.
std::string make_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// The raw bytes of a tensor's elements in row-major order (through contiguous(), which copies
// same-dtype elements bit for bit).
std::string tensor_bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_raw()), c.nbytes());
}

void expect_same_tensor(const Tensor& expected, const Tensor& actual, const std::string& name) {
  ASSERT_TRUE(actual.defined()) << name;
  EXPECT_EQ(actual.dtype(), expected.dtype()) << name;
  EXPECT_EQ(actual.shape(), expected.shape()) << name;
  EXPECT_TRUE(actual.is_contiguous()) << name;
  EXPECT_EQ(tensor_bytes(actual), tensor_bytes(expected)) << name;
}

// Asserts that loading `file` throws tg::Error whose message names the file and contains `needle`.
void expect_load_error(const std::string& file, const std::string& needle) {
  try {
    load_safetensors(file);
    ADD_FAILURE() << "expected load_safetensors(" << file << ") to throw, mentioning: " << needle;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << "message lacks \"" << needle << "\": " << msg;
  }
}

// A valid single-tensor header, for the cases that break one thing at a time.
const char* const kGoodEntry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
const std::string kEightBytes(8, '\x01');

}  // namespace

// ---- round trips ---------------------------------------------------------------------------

TEST_F(Safetensors, RoundTripsEveryDtypeWithOddShapes) {
  Generator gen(11);
  std::vector<float> bytes_as_floats;
  for (int i = 0; i < 3 * 5 * 7; i++) bytes_as_floats.push_back(static_cast<float>(gen.next_u64() % 256));
  std::vector<int32_t> ints;
  for (int i = 0; i < 13 * 3; i++) ints.push_back(static_cast<int32_t>(gen.next_u64()));
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"weight.f32", Tensor::randn({3, 5, 7}, &gen)},
      {"weight.bf16", Tensor::randn({1, 9}, &gen, DType::BF16)},
      {"weight.f16", Tensor::randn({7, 1, 3}, &gen, DType::F16)},
      {"tokens", Tensor::from_ints(ints, {13, 3})},
      {"bytes", Tensor::from_vector(bytes_as_floats, {3, 5, 7}, DType::U8)},
      {"single", Tensor::randn({1}, &gen)},
  };
  save_safetensors(path("a.safetensors"), tensors);
  SafetensorsData loaded = load_safetensors(path("a.safetensors"));
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); i++) {
    EXPECT_EQ(loaded.tensors[i].first, tensors[i].first) << "file order must be the given order";
    expect_same_tensor(tensors[i].second, loaded.tensors[i].second, tensors[i].first);
  }
  EXPECT_TRUE(loaded.metadata.empty());
  EXPECT_EQ(loaded.path, path("a.safetensors"));
}

TEST_F(Safetensors, RoundTripsScalarsAndZeroSizeTensors) {
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"empty_first", Tensor::empty({0}, DType::F32)},
      {"scalar", Tensor::scalar(-1.25f)},
      {"empty_middle", Tensor::empty({3, 0, 2}, DType::BF16)},
      {"scalar_i32", Tensor::from_ints({-7}, {})},
      {"empty_last", Tensor::empty({0, 5}, DType::U8)},
  };
  save_safetensors(path("a.safetensors"), tensors);
  SafetensorsData loaded = load_safetensors(path("a.safetensors"));
  ASSERT_EQ(loaded.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); i++) {
    EXPECT_EQ(loaded.tensors[i].first, tensors[i].first);
    expect_same_tensor(tensors[i].second, loaded.tensors[i].second, tensors[i].first);
  }
  EXPECT_EQ(loaded.at("scalar").dim(), 0);
  EXPECT_EQ(loaded.at("scalar").item(), -1.25f);
  EXPECT_EQ(loaded.at("scalar_i32").to_int_vector(), std::vector<int32_t>{-7});
}

TEST_F(Safetensors, WritesNonContiguousTensorsAsContiguous) {
  Generator gen(5);
  Tensor base = Tensor::randn({4, 6, 5}, &gen);
  Tensor transposed = base.transpose(0, 2);             // (5, 6, 4), permuted strides
  Tensor strided = base.slice(1, 1, 6, 2);              // (4, 3, 5), a step of 2 and an offset
  Tensor expanded = Tensor::randn({3, 1}, &gen).expand({3, 4});  // stride 0
  Tensor half = base.to(DType::F16).permute({1, 0, 2});
  ASSERT_FALSE(transposed.is_contiguous());
  ASSERT_FALSE(strided.is_contiguous());
  ASSERT_FALSE(expanded.is_contiguous());
  save_safetensors(path("a.safetensors"),
                   {{"transposed", transposed}, {"strided", strided}, {"expanded", expanded}, {"half", half}});
  SafetensorsData loaded = load_safetensors(path("a.safetensors"));
  EXPECT_EQ(loaded.at("transposed").to_vector(), transposed.to_vector());
  EXPECT_EQ(loaded.at("strided").to_vector(), strided.to_vector());
  EXPECT_EQ(loaded.at("expanded").to_vector(), expanded.to_vector());
  expect_same_tensor(half, loaded.at("half"), "half");
}

TEST_F(Safetensors, RoundTripsMetadata) {
  std::map<std::string, std::string> metadata = {
      {"step", "1200"}, {"config", R"({"n_layer": 2, "note": "quotes \" and \\ survive"})"}, {"empty", ""}, {"utf8", "caf\xc3\xa9"}};
  save_safetensors(path("a.safetensors"), {{"x", Tensor::ones({2})}}, metadata);
  SafetensorsData loaded = load_safetensors(path("a.safetensors"));
  EXPECT_EQ(loaded.metadata, metadata);
  // Without metadata the key is left out altogether, as the reference writer does.
  save_safetensors(path("b.safetensors"), {{"x", Tensor::ones({2})}});
  EXPECT_EQ(read_bytes(path("b.safetensors")).find("__metadata__"), std::string::npos);
}

// ---- exact format --------------------------------------------------------------------------

TEST_F(Safetensors, WritesTheExactByteLayout) {
  save_safetensors(path("a.safetensors"),
                   {{"a", Tensor::from_vector({1.0f, -2.0f}, {2})}, {"b", Tensor::from_vector({7.0f}, {}, DType::U8)}},
                   {{"k", "v"}});
  // Built by hand from the format description: metadata first, then the tensors in order with
  // fields dtype, shape, data_offsets; compact JSON; spaces pad the header to a multiple of 8.
  std::string json = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})";
  ASSERT_EQ(json.size(), 130u);
  std::string header = json + std::string(6, ' ');  // 130 -> 136 = 0x88
  std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + header +
                         std::string("\x00\x00\x80\x3f", 4) +  // 1.0f little-endian
                         std::string("\x00\x00\x00\xc0", 4) +  // -2.0f
                         std::string("\x07", 1);
  EXPECT_EQ(read_bytes(path("a.safetensors")), expected);
}

TEST_F(Safetensors, ReadsAFileWrittenByPython) {
  const std::string fixture = "tests/reference/safetensors_fixture.safetensors";
  ASSERT_TRUE(fs::exists(fixture)) << fixture << " missing: run the tests from the repository root";
  SafetensorsData data = load_safetensors(fixture);
  std::vector<std::string> names;
  for (const auto& entry : data.tensors) names.push_back(entry.first);
  // The header lists them in reverse; the data order is the one below.
  EXPECT_EQ(names, (std::vector<std::string>{"f32", "bf16", "f16", "empty", "i32", "u8", "scalar"}));
  auto thirds = [](int n) {
    std::vector<float> v;
    for (int i = 0; i < n; i++) v.push_back(static_cast<float>((i - 2.5) / 3.0));
    return v;
  };
  expect_same_tensor(Tensor::from_vector(thirds(6), {2, 3}), data.at("f32"), "f32");
  // torch rounded the bf16 values and numpy the f16 ones, independently of our converters.
  expect_same_tensor(Tensor::from_vector(thirds(6), {3, 1, 2}, DType::BF16), data.at("bf16"), "bf16");
  expect_same_tensor(Tensor::from_vector(thirds(5), {5}, DType::F16), data.at("f16"), "f16");
  EXPECT_EQ(data.at("empty").shape(), (Shape{0, 3}));
  EXPECT_EQ(data.at("i32").to_int_vector(), (std::vector<int32_t>{INT32_MIN, -1, 0, 7, INT32_MAX}));
  EXPECT_EQ(data.at("u8").dtype(), DType::U8);
  EXPECT_EQ(data.at("u8").shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(data.at("u8").to_vector(), (std::vector<float>{0, 1, 127, 128, 200, 254, 255, 3}));
  EXPECT_EQ(data.at("scalar").shape(), Shape{});
  EXPECT_EQ(data.at("scalar").item(), 3.5f);
  EXPECT_EQ(data.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"source", "make_safetensors_fixture.py"}}));
}

// ---- atomic writes and writer errors -------------------------------------------------------

TEST_F(Safetensors, SaveReplacesAtomicallyAndLeavesNoTempFile) {
  std::string file = path("ckpt.safetensors");
  save_safetensors(file, {{"x", Tensor::ones({3})}});
  save_safetensors(file, {{"y", Tensor::zeros({2, 2})}});
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  SafetensorsData loaded = load_safetensors(file);
  ASSERT_EQ(loaded.tensors.size(), 1u);
  EXPECT_EQ(loaded.tensors[0].first, "y");
}

TEST_F(Safetensors, FailedSaveKeepsTheOldFile) {
  std::string file = path("ckpt.safetensors");
  save_safetensors(file, {{"x", Tensor::ones({3})}});
  std::string before = read_bytes(file);
  try {
    save_safetensors(file, {{"x", Tensor::ones({3})}, {"x", Tensor::zeros({3})}});
    ADD_FAILURE() << "duplicate names must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"x\" appears twice"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_FALSE(fs::exists(file + ".tmp"));
}

TEST_F(Safetensors, WriterRejectsBadInput) {
  auto expect_save_error = [&](const std::vector<std::pair<std::string, Tensor>>& tensors, const std::string& file,
                               const std::string& needle) {
    try {
      save_safetensors(file, tensors);
      ADD_FAILURE() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_save_error({{"__metadata__", Tensor::ones({1})}}, path("a"), "reserved for the metadata");
  expect_save_error({{"w", Tensor()}}, path("a"), "\"w\" is undefined");
  expect_save_error({{"w", Tensor::ones({1})}}, path("no/such/dir/a.safetensors"), "cannot create");
  expect_save_error({{"bad\xff", Tensor::ones({1})}}, path("a"), "valid UTF-8");
}

TEST_F(Safetensors, AtNamesTheMissingTensorAndTheFile) {
  save_safetensors(path("a.safetensors"), {{"present", Tensor::ones({1})}});
  SafetensorsData data = load_safetensors(path("a.safetensors"));
  EXPECT_TRUE(data.contains("present"));
  EXPECT_FALSE(data.contains("absent"));
  try {
    data.at("absent");
    ADD_FAILURE() << "at() of a missing name must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"absent\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path("a.safetensors")), std::string::npos) << e.what();
  }
}

// ---- malformed files: each asserts the throw and what the message says -----------------------

TEST_F(Safetensors, RejectsMissingFileAndDirectory) {
  expect_load_error(path("nothing.safetensors"), "no such file");
  expect_load_error(dir_.string(), "is a directory");
}

TEST_F(Safetensors, RejectsFileShorterThanTheLengthField) {
  write_bytes(path("a"), "");
  expect_load_error(path("a"), "file is 0 bytes, shorter than the 8-byte header length");
  write_bytes(path("a"), std::string("\x10\0\0\0\0", 5));
  expect_load_error(path("a"), "file is 5 bytes");
}

TEST_F(Safetensors, RejectsHeaderLengthBeyondTheFile) {
  write_bytes(path("a"), le64(100) + "{}");
  expect_load_error(path("a"), "header length 100 runs past the end of the file (10 bytes");
  write_bytes(path("a"), le64(uint64_t(1) << 60) + "{}");
  expect_load_error(path("a"), "exceeds the 100000000-byte limit");
  write_bytes(path("a"), le64(~uint64_t(0)) + "{}");
  expect_load_error(path("a"), "exceeds the");
  write_bytes(path("a"), le64(0));
  expect_load_error(path("a"), "header length 0 is too small");
}

TEST_F(Safetensors, RejectsBadJson) {
  write_bytes(path("a"), make_file(R"({"a": {"dtype": "F32",)", kEightBytes));
  expect_load_error(path("a"), "header is not valid JSON");
  write_bytes(path("a"), make_file("not json", ""));
  expect_load_error(path("a"), "header is not valid JSON");
}

TEST_F(Safetensors, RejectsHeaderThatIsNotAnObject) {
  write_bytes(path("a"), make_file("[1, 2, 3]", ""));
  expect_load_error(path("a"), "header is a JSON array, expected an object");
  write_bytes(path("a"), make_file("42", ""));
  expect_load_error(path("a"), "header is a JSON number, expected an object");
}

TEST_F(Safetensors, RejectsMissingFields) {
  write_bytes(path("a"), make_file(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"w\": missing field \"dtype\"");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"w\": missing field \"shape\"");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"w\": missing field \"data_offsets\"");
}

TEST_F(Safetensors, RejectsWronglyTypedFields) {
  write_bytes(path("a"), make_file(R"({"w": [0, 8]})", kEightBytes));
  expect_load_error(path("a"), "tensor \"w\": entry is a JSON array, expected an object");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": 5, "shape": [2], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "\"dtype\" is a JSON number, expected a string");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "\"shape\" is a JSON string, expected an array");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [null], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "shape[0] is a JSON null");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8]}})", kEightBytes));
  expect_load_error(path("a"), "\"data_offsets\" must be an array of two integers");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": {"b": 0}}})", kEightBytes));
  expect_load_error(path("a"), "\"data_offsets\" must be an array of two integers");
  // Nested 200,000 deep: described, not dumped (dump() recurses per level and overflowed the stack).
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": )" + deep + "}}", ""));
  expect_load_error(path("a"), "\"data_offsets\" must be an array of two integers [begin, end], found a JSON array of 1 entry");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", 8]}})", kEightBytes));
  expect_load_error(path("a"), "data_offsets begin is a JSON string");
}

TEST_F(Safetensors, RejectsUnknownDtype) {
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"w\": dtype \"F64\" is not supported");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "dtype \"f32\" is not supported");
}

TEST_F(Safetensors, RejectsNegativeNonIntegerAndHugeShapes) {
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"w\": shape[0] is negative (-2)");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [1, 2.0], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "shape[1] is not an integer (2.0)");
  // 2^62 * 2^62 * 4 bytes wraps around 64 bits to 0, which would "match" an empty range.
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904],)"
                                   R"( "data_offsets": [0, 0]}})", ""));
  expect_load_error(path("a"), "is too large: its nonzero sizes multiply past 2^63 bytes");
  // Empty (a zero size), but its strides would be 2^40 * 2^40: refused as well, since the strides
  // of an accepted tensor are int64 products of its sizes (UBSan reports the overflow otherwise).
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "U8", "shape": [0, 1099511627776, 1099511627776],)"
                                   R"( "data_offsets": [0, 0]}})", ""));
  expect_load_error(path("a"), "tensor \"w\": shape (0, 1099511627776, 1099511627776) is too large");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", ""));
  expect_load_error(path("a"), "shape[0] 18446744073709551615 is too large");
}

TEST_F(Safetensors, RejectsOffsetsOutOfRange) {
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "1234"));
  expect_load_error(path("a"), "data_offsets end 8 is beyond the data section (4 bytes");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", kEightBytes));
  expect_load_error(path("a"), "data_offsets begin 8 is after end 0");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}})", kEightBytes));
  expect_load_error(path("a"), "data_offsets end is negative");
}

TEST_F(Safetensors, RejectsSizeMismatch) {
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "data_offsets [0, 8) span 8 bytes but dtype F32 and shape (3) need 12");
  write_bytes(path("a"), make_file(R"({"w": {"dtype": "BF16", "shape": [], "data_offsets": [0, 8]}})", kEightBytes));
  expect_load_error(path("a"), "need 2");
}

TEST_F(Safetensors, RejectsOverlapsGapsAndTrailingBytes) {
  write_bytes(path("a"), make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                   R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"b\" (bytes 4..8) overlaps tensor \"a\" (bytes 0..8)");
  // A zero-size tensor inside another one is an overlap too, as the reference reader says.
  write_bytes(path("a"), make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                   R"( "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})", kEightBytes));
  expect_load_error(path("a"), "tensor \"z\" (bytes 4..4) overlaps tensor \"a\"");
  write_bytes(path("a"), make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                                   R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}})", kEightBytes));
  expect_load_error(path("a"), "bytes 4..6 of the data section belong to no tensor (a gap before \"b\")");
  write_bytes(path("a"), make_file(R"({"b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}})", kEightBytes));
  expect_load_error(path("a"), "bytes 0..6 of the data section belong to no tensor");
  write_bytes(path("a"), make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", kEightBytes));
  expect_load_error(path("a"), "the data section has 8 bytes but the tensors cover only 4 (trailing bytes)");
  write_bytes(path("a"), make_file("{}", "x"));
  expect_load_error(path("a"), "has 1 bytes but the tensors cover only 0");
}

TEST_F(Safetensors, RejectsDuplicateNames) {
  write_bytes(path("a"), make_file(std::string("{\"w\": ") + kGoodEntry + ", \"w\": " + kGoodEntry + "}", kEightBytes));
  expect_load_error(path("a"), "key \"w\" appears twice in the header");
  write_bytes(path("a"), make_file(R"({"__metadata__": {"k": "a", "k": "b"}})", ""));
  expect_load_error(path("a"), "key \"k\" appears twice");
}

TEST_F(Safetensors, RejectsBadMetadata) {
  write_bytes(path("a"), make_file(R"({"__metadata__": {"step": 5}})", ""));
  expect_load_error(path("a"), "metadata value \"step\" is a JSON number, expected a string");
  write_bytes(path("a"), make_file(R"({"__metadata__": {"nested": {"a": "b"}}})", ""));
  expect_load_error(path("a"), "metadata value \"nested\" is a JSON object");
  write_bytes(path("a"), make_file(R"({"__metadata__": ["a"]})", ""));
  expect_load_error(path("a"), "\"__metadata__\" is a JSON array, expected an object of strings");
}

TEST_F(Safetensors, AcceptsAnEmptyFileOfTensors) {
  write_bytes(path("a"), make_file("{}      ", ""));
  SafetensorsData data = load_safetensors(path("a"));
  EXPECT_TRUE(data.tensors.empty());
  EXPECT_TRUE(data.metadata.empty());
}

// ---- fuzzing -------------------------------------------------------------------------------

TEST_F(Safetensors, EveryTruncationThrows) {
  std::string file = path("full.safetensors");
  save_safetensors(file, {{"a", Tensor::from_vector({1, 2, 3}, {3})},
                          {"b", Tensor::from_vector({1, 2}, {2, 1}, DType::BF16)},
                          {"c", Tensor::from_ints({9}, {})}},
                   {{"k", "v"}});
  std::string bytes = read_bytes(file);
  ASSERT_GT(bytes.size(), 100u);
  // Every prefix is missing some bytes the header promises, so every one must be refused.
  for (size_t n = 0; n < bytes.size(); n++) {
    write_bytes(path("cut"), bytes.substr(0, n));
    EXPECT_THROW(load_safetensors(path("cut")), Error) << "truncated to " << n << " of " << bytes.size() << " bytes";
  }
}

TEST_F(Safetensors, RandomHeaderCorruptionThrowsOrLoads) {
  std::string file = path("full.safetensors");
  save_safetensors(file, {{"a", Tensor::from_vector({1, 2, 3}, {3})},
                          {"bb", Tensor::from_vector({1, 2}, {2, 1}, DType::F16)},
                          {"c", Tensor::empty({0, 2}, DType::U8)}},
                   {{"k", "v"}});
  std::string bytes = read_bytes(file);
  uint64_t header_end = 0;
  std::memcpy(&header_end, bytes.data(), 8);
  header_end += 8;
  // Printable characters that matter to JSON and to our fields, plus arbitrary bytes.
  const std::string alphabet = "{}[]\",:0123456789-.e \\ufFIUB8";
  Generator gen(99);
  int loaded = 0, refused = 0;
  for (int trial = 0; trial < 3000; trial++) {
    std::string corrupt = bytes;
    int flips = 1 + static_cast<int>(gen.next_u64() % 3);
    for (int f = 0; f < flips; f++) {
      size_t at = static_cast<size_t>(gen.next_u64() % header_end);
      uint64_t r = gen.next_u64();
      corrupt[at] = (r & 1) ? alphabet[(r >> 1) % alphabet.size()] : static_cast<char>(r >> 8);
    }
    write_bytes(path("corrupt"), corrupt);
    try {
      SafetensorsData data = load_safetensors(path("corrupt"));
      loaded++;
      for (const auto& entry : data.tensors) EXPECT_LE(entry.second.nbytes(), bytes.size());
    } catch (const Error&) {
      refused++;
    }
  }
  // Most corruptions must be refused; some (a changed name or metadata value) legitimately load.
  EXPECT_GT(refused, 1500);
  EXPECT_GT(loaded, 0);
}
