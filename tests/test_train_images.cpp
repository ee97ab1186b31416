// ./train on image data and ./classify, end to end: the programs run on small synthetic datasets
// written by the tests (IDX files and PNG class folders of 8x8 images whose class is where the
// bright patch sits, which a CNN learns in a few dozen steps), and the tests check the run folder,
// the test-set report, exact resume after SIGINT, ./classify's lines, and every bad input named.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "programs/lib/checkpoint.h"
#include "tests/image_data_test_util.h"
#include "tests/program_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

// <class>/<n>.png class folders (grey PNGs) of `per_class` images each.
void write_image_folders(const std::string& folder, const std::vector<std::string>& classes, int per_class) {
  std::mt19937 rng(11);
  for (size_t c = 0; c < classes.size(); c++) {
    std::filesystem::create_directories(folder + "/" + classes[c]);
    for (int i = 0; i < per_class; i++) {
      std::vector<uint8_t> pixels = synthetic_image(static_cast<int>(c), rng);
      std::string path = folder + "/" + classes[c] + "/" + std::to_string(i) + ".png";
      ASSERT_NE(stbi_write_png(path.c_str(), kSide, kSide, 1, pixels.data(), kSide), 0) << path;
    }
  }
}

// cnn-ref on 8x8 images (two 2x2 pools leave 2x2, then global pooling), one thread, the CPU.
const std::string kSmall = " --model cnn-ref --batch 16 --threads 1 --device cpu --sample-every 100000";

}  // namespace

TEST(ImageProgram, TrainsOnIdxFilesAndReportsTheTestSet) {
  TempDir dir;
  write_idx_dataset(dir.file("data"), 300, 60);
  Result r = run("train", dir.file("data") + kSmall + " --epochs 3 --lr 0.05 --out " + dir.file("run"));
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("(idx): 270 train, 30 val, 60 test; 8x8x1, 3 classes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("img/s"), std::string::npos);
  EXPECT_NE(r.out.find("val accuracy"), std::string::npos);
  EXPECT_NE(r.out.find("test set: 60 images"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("test accuracy "), std::string::npos);
  EXPECT_NE(r.out.find("confusion matrix"), std::string::npos);
  EXPECT_NE(r.out.find("./classify --ckpt " + dir.file("run")), std::string::npos);
  // 16 steps an epoch (270 / 16, the partial batch dropped), evaluated once an epoch.
  EXPECT_NE(r.out.find("step 48/48"), std::string::npos) << r.out;

  std::string csv = read_file(dir.file("run/metrics.csv"));
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "step,time_s,train_loss,val_loss,lr,images_per_s,val_accuracy,test_loss,test_accuracy");
  // The last row is the test evaluation: its accuracy is high on this easy data.
  std::string last = csv.substr(csv.rfind('\n', csv.size() - 2) + 1);
  double test_accuracy = std::stod(last.substr(last.rfind(',') + 1));
  EXPECT_GT(test_accuracy, 90.0) << last;
  std::string confusion = read_file(dir.file("run/confusion.csv"));
  EXPECT_EQ(confusion.substr(0, confusion.find('\n')), "true\\predicted,0,1,2");
  EXPECT_TRUE(exists(dir.file("run/best.safetensors")));

  Checkpoint ckpt = load_checkpoint(dir.file("run/last.safetensors"));
  EXPECT_EQ(ckpt.task.kind, "image");
  // PyTorch's names and weight order: "0.weight" is conv 1 -> 32, 3x3, (out, in, kh, kw).
  EXPECT_EQ(ckpt.model.at("0.weight").shape(), (Shape{32, 1, 3, 3}));
  EXPECT_TRUE(ckpt.model.contains("1.running_var"));
  EXPECT_EQ(ckpt.model.at("13.weight").shape(), (Shape{3, 128}));
}

TEST(ImageProgram, ResumeAfterSigintIsBitIdentical) {
  TempDir dir;
  write_idx_dataset(dir.file("data"), 300, 30);
  std::string args = dir.file("data") + kSmall + " --epochs 3 --log-every 1 --erase 0.5";
  Result straight = run("train", args + " --out " + dir.file("straight"));
  ASSERT_EQ(straight.status, 0) << straight.err;
  // Stopped mid-epoch, so the loader's position inside an epoch's order must be restored.
  ASSERT_NO_FATAL_FAILURE(stop_and_resume(args, dir.file("split"), 5));
  std::vector<std::string> a = loss_columns(read_file(dir.file("straight/metrics.csv")));
  std::vector<std::string> b = loss_columns(read_file(dir.file("split/metrics.csv")));
  ASSERT_GT(a.size(), 48u);
  EXPECT_EQ(a, b);
}

TEST(ImageProgram, ImageFoldersTrainAndClassifyNamesTheClasses) {
  TempDir dir;
  write_image_folders(dir.file("shapes"), {"top", "bottom", "middle"}, 40);
  Result r = run("train", dir.file("shapes") + kSmall + " --steps 30 --val-fraction 0.25 --out " + dir.file("run"));
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("(folder): 90 train, 30 val, no test set"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no test set in"), std::string::npos);

  // Class names are the sorted folder names; the top-3 line lists every class once, most probable first.
  Result c = run("classify", "--ckpt " + dir.file("run") + " --threads 1 " + dir.file("shapes/top/0.png") + " " +
                                 dir.file("shapes/middle/1.png"));
  ASSERT_EQ(c.status, 0) << c.err;
  std::istringstream lines(c.out);
  std::string line;
  int printed = 0;
  while (std::getline(lines, line)) {
    printed++;
    EXPECT_EQ(line.rfind(dir.file("shapes/"), 0), 0u) << line;
    for (const char* name : {"top (", "bottom (", "middle ("}) EXPECT_NE(line.find(name), std::string::npos) << line;
  }
  EXPECT_EQ(printed, 2);
  EXPECT_NE(c.out.find("top/0.png: top ("), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("middle/1.png: middle ("), std::string::npos) << c.out;
}

TEST(ImageProgram, ClassifyReadsIdxImagesAndRefusesOtherCheckpoints) {
  TempDir dir;
  write_idx_dataset(dir.file("data"), 120, 12);
  ASSERT_EQ(run("train", dir.file("data") + kSmall + " --steps 5 --out " + dir.file("run")).status, 0);
  Result c = run("classify", "--ckpt " + dir.file("run") + " --idx " + dir.file("data/t10k-images-idx3-ubyte") +
                                 " --index 4 --top 2");
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("t10k-images-idx3-ubyte[4]: "), std::string::npos) << c.out;
  EXPECT_EQ(std::count(c.out.begin(), c.out.end(), '%'), 2) << c.out;

  EXPECT_ONE_LINE_ERROR(run("classify", "--ckpt " + dir.file("run") + " --idx " +
                                            dir.file("data/t10k-images-idx3-ubyte") + " --index 12"),
                        "--index 12 is past the last image");
  EXPECT_ONE_LINE_ERROR(run("classify", "--ckpt " + dir.file("run")), "no image given");
  EXPECT_ONE_LINE_ERROR(run("classify", "--ckpt " + dir.file("run") + " " + dir.file("missing.png")), "missing.png");
  EXPECT_ONE_LINE_ERROR(run("classify", dir.file("x.png")), "--ckpt is required");
  // A GPT checkpoint to ./classify, an image checkpoint to ./generate.
  std::string corpus = dir.write("fox.txt", std::string(2000, 'a') + "the quick brown fox");
  ASSERT_EQ(run("train", corpus + " --layers 1 --heads 2 --embd 16 --block 8 --batch 4 --steps 2 --threads 1 "
                               "--device cpu --out " + dir.file("text")).status, 0);
  EXPECT_ONE_LINE_ERROR(run("classify", "--ckpt " + dir.file("text") + " " + dir.file("x.png")),
                        "checkpoint; ./classify classifies images — use ./generate");
  EXPECT_ONE_LINE_ERROR(run("generate", "--ckpt " + dir.file("run")),
                        "is an image-classifier checkpoint; ./generate samples text models — use ./classify");
}

TEST(ImageProgram, BadInputGetsOneLineNamingIt) {
  TempDir dir;
  std::string out = " --out " + dir.file("run");
  std::filesystem::create_directories(dir.file("empty"));
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("empty") + kSmall + out), "empty");
  write_image_folders(dir.file("one"), {"only"}, 4);
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("one") + kSmall + out), "one class");

  write_image_folders(dir.file("bad"), {"a", "b"}, 20);
  dir.write("bad/b/notes.png", "this is not a PNG");
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("bad") + kSmall + out), "notes.png");
  Result skipped = run("train", dir.file("bad") + kSmall + " --skip-bad --steps 2" + out);
  EXPECT_EQ(skipped.status, 0) << skipped.err;
  EXPECT_NE(skipped.err.find("skipped 1 files"), std::string::npos) << skipped.err;
  std::filesystem::remove_all(dir.file("run"));

  write_image_folders(dir.file("sizes"), {"a", "b"}, 20);
  std::vector<uint8_t> big(16 * 16, 100);
  ASSERT_NE(stbi_write_png(dir.file("sizes/a/big.png").c_str(), 16, 16, 1, big.data(), 16), 0);
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("sizes") + kSmall + out), "big.png");
  Result resized = run("train", dir.file("sizes") + kSmall + " --image-size 8 --steps 2" + out);
  EXPECT_EQ(resized.status, 0) << resized.err;
  std::filesystem::remove_all(dir.file("run"));

  write_idx_dataset(dir.file("idx"), 60, 6);
  std::string images = read_file(dir.file("idx/train-images-idx3-ubyte"));
  dir.write("idx/train-images-idx3-ubyte", "XXXX" + images.substr(4));
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("idx") + kSmall + out), "magic");
  dir.write("idx/train-images-idx3-ubyte", images.substr(0, images.size() - 10));
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("idx") + kSmall + out), "train-images-idx3-ubyte");
  write_idx_dataset(dir.file("idx"), 60, 6);
  std::string labels = read_file(dir.file("idx/train-labels-idx1-ubyte"));
  dir.write("idx/train-labels-idx1-ubyte", big_endian(2049) + big_endian(59) + labels.substr(8, 59));
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("idx") + kSmall + out), "holds 60 images but");

  write_idx_dataset(dir.file("ok"), 60, 6);
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("ok") + kSmall + " --epochs 2 --steps 5" + out),
                        "--epochs and --steps both set the length of the run");
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("ok") + kSmall + " --model tiny" + out), "--model 'tiny' is not an image model");
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("ok") + kSmall + " --tokenizer bpe" + out),
                        "--tokenizer applies to text data (a FILE) only");
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("ok") + kSmall + " --batch 100" + out), "--batch 100 is larger than the 54 training images");
  // Image runs take --device cuda now; without a GPU the one line names the reason.
  if (!cuda_available())
    EXPECT_ONE_LINE_ERROR(run("train", dir.file("ok") + " --device cuda" + out), "--device cuda: no CUDA GPU is available (");
  std::string corpus = dir.write("fox.txt", std::string(2000, 'a'));
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --epochs 3" + out), "--epochs applies to image data (a folder) only");
  EXPECT_FALSE(exists(dir.file("run")));  // nothing was created by any of these

  // --resume across tasks or models.
  ASSERT_EQ(run("train", dir.file("ok") + kSmall + " --steps 3" + out).status, 0);
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("ok") + kSmall + " --model resnet --resume" + out),
                        "--model resnet differs from the checkpoint's cnn-ref");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --resume" + out), "is an image-classifier checkpoint, but");
}

// ---- on a GPU (skipped without one) -----------------------------------------------------------

#define REQUIRE_GPU_PROGRAM()                                                                  \
  do {                                                                                         \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU (" << cuda_status() << ")";           \
  } while (0)

// cnn-ref trains on the GPU in f32 (SGD) and in bf16 and fp16 (AdamW, f32 master weights), each
// checkpoint resumes on the CPU (f32), and ./classify reads one on the GPU.
TEST(ImageProgramGpu, TrainsInEveryDtypeAndResumesOnTheCpu) {
  REQUIRE_GPU_PROGRAM();
  TempDir dir;
  write_idx_dataset(dir.file("data"), 300, 30);
  const std::vector<std::string> dtypes = {" --dtype fp32", " --dtype bf16 --optimizer adamw",
                                           " --dtype fp16 --optimizer adamw"};
  for (size_t i = 0; i < dtypes.size(); i++) {
    const std::string out = " --out " + dir.file("run" + std::to_string(i));
    const std::string args = dir.file("data") + " --model cnn-ref --batch 16 --sample-every 100000 --eval-every 2";
    Result gpu = run("train", args + " --device cuda --steps 4" + dtypes[i] + out);
    ASSERT_EQ(gpu.status, 0) << dtypes[i] << gpu.out << gpu.err;
    Result cpu = run("train", args + " --device cpu --threads 1 --steps 6 --resume" + out);
    ASSERT_EQ(cpu.status, 0) << dtypes[i] << cpu.out << cpu.err;
    EXPECT_NE(cpu.out.find("resuming"), std::string::npos) << cpu.out;
    std::vector<std::string> losses = loss_columns(read_file(dir.file("run" + std::to_string(i) + "/metrics.csv")));
    EXPECT_FALSE(losses.empty());
    for (const std::string& loss : losses) EXPECT_EQ(loss.find("nan"), std::string::npos) << dtypes[i];
  }
  // ./classify runs the GPU-trained (bf16) checkpoint on the GPU, in f32.
  Result c = run("classify", "--ckpt " + dir.file("run1") + " --device cuda --idx " +
                                 dir.file("data/t10k-images-idx3-ubyte") + " --index 3 --top 2");
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.out.find("t10k-images-idx3-ubyte[3]: "), std::string::npos) << c.out;
}

// The same command twice on the GPU gives the same losses, bit for bit (no float atomics in the
// CNN kernels).
TEST(ImageProgramGpu, SameSeedGivesTheSameLosses) {
  REQUIRE_GPU_PROGRAM();
  TempDir dir;
  write_idx_dataset(dir.file("data"), 300, 30);
  const std::string args = dir.file("data") + " --model resnet --batch 16 --device cuda --steps 12 --log-every 1 "
                           "--eval-every 6 --sample-every 100000";
  ASSERT_EQ(run("train", args + " --out " + dir.file("a")).status, 0);
  ASSERT_EQ(run("train", args + " --out " + dir.file("b")).status, 0);
  std::vector<std::string> a = loss_columns(read_file(dir.file("a/metrics.csv")));
  std::vector<std::string> b = loss_columns(read_file(dir.file("b/metrics.csv")));
  ASSERT_GE(a.size(), 12u);
  EXPECT_EQ(a, b);
}
