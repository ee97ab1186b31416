// data/image_folder.h, data/image_file.h and the folder side of data/image_dataset.h: tiny PNG,
// BMP and JPEG files written here with stb_image_write, then every layout and bad input.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "data/image_dataset.h"
#include "data/image_file.h"
#include "data/image_folder.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

struct Image {
  int h, w, c;
  std::vector<uint8_t> pixels;
};

// Random bytes in [1, 255]: no pixel is 0, so a test can tell padding and erasing apart.
Image random_image(Generator& gen, int h, int w, int c) {
  Image image{h, w, c, std::vector<uint8_t>(h * w * c)};
  for (uint8_t& p : image.pixels) p = static_cast<uint8_t>(1 + gen.below(255));
  return image;
}

Image flat_image(int h, int w, int c, uint8_t value) { return {h, w, c, std::vector<uint8_t>(h * w * c, value)}; }

// Writes `image` under `dir/relative`, creating the folders on the way; the extension picks the
// format (PNG and BMP are lossless, JPEG at quality 100).
std::string write_image(const TempDir& dir, const std::string& relative, const Image& image) {
  std::string path = dir.file(relative);
  std::system(("mkdir -p '" + path.substr(0, path.rfind('/')) + "'").c_str());
  std::string ext = path.substr(path.rfind('.') + 1);
  int ok = 0;
  if (ext == "png") ok = stbi_write_png(path.c_str(), image.w, image.h, image.c, image.pixels.data(), 0);
  if (ext == "bmp") ok = stbi_write_bmp(path.c_str(), image.w, image.h, image.c, image.pixels.data());
  if (ext == "jpg") ok = stbi_write_jpg(path.c_str(), image.w, image.h, image.c, image.pixels.data(), 100);
  EXPECT_TRUE(ok) << "could not write " << path;
  return path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> image_of(const ImageSet& set, int64_t i) {
  return std::vector<uint8_t>(set.image(i), set.image(i) + set.image_bytes());
}

ImageDataOptions no_validation() {
  ImageDataOptions options;
  options.val_fraction = 0;
  return options;
}

}  // namespace

TEST(ImageFolder, ClassesSortedLabelsAndPixelsExact) {
  Generator gen(21);
  TempDir dir;
  // Written out of order; classes sort to ant, moose, zebra and files by name within each.
  Image z0 = random_image(gen, 5, 7, 3), a1 = random_image(gen, 5, 7, 3), a0 = random_image(gen, 5, 7, 3);
  Image m0 = random_image(gen, 5, 7, 3);
  write_image(dir, "pets/zebra/0.png", z0);
  write_image(dir, "pets/ant/b.bmp", a1);
  write_image(dir, "pets/ant/a.png", a0);
  write_image(dir, "pets/moose/sub/x.bmp", m0);  // any depth below the class folder
  dir.write("pets/.DS_Store", "junk");
  dir.write("pets/ant/.hidden", "junk");
  dir.write("pets/README", "files beside the class folders are not images of a class");
  EXPECT_TRUE(is_image_data(dir.file("pets")));
  ImageData data = load_image_data(dir.file("pets"), no_validation());
  EXPECT_EQ(data.kind, "folder");
  EXPECT_EQ(data.class_names, (std::vector<std::string>{"ant", "moose", "zebra"}));
  ASSERT_EQ(data.train.size(), 4);
  EXPECT_EQ(data.train.labels, (std::vector<int32_t>{0, 0, 1, 2}));
  EXPECT_EQ(data.train.channels, 3);
  EXPECT_EQ(data.train.height, 5);
  EXPECT_EQ(data.train.width, 7);
  EXPECT_EQ(image_of(data.train, 0), a0.pixels);
  EXPECT_EQ(image_of(data.train, 1), a1.pixels);
  EXPECT_EQ(image_of(data.train, 2), m0.pixels);
  EXPECT_EQ(image_of(data.train, 3), z0.pixels);
  EXPECT_EQ(data.test.size(), 0);
  EXPECT_NE(data.describe().find("no test set"), std::string::npos) << data.describe();
}

TEST(ImageFolder, GreyUnlessAnyImageIsColour) {
  Generator gen(22);
  TempDir dir;
  Image g0 = random_image(gen, 4, 3, 1), g1 = random_image(gen, 4, 3, 1);
  write_image(dir, "d/a/0.png", g0);
  write_image(dir, "d/b/0.bmp", g1);  // stb writes BMP as 24-bit; stbi_info reports 3 channels
  write_image(dir, "g/a/0.png", g0);
  write_image(dir, "g/b/0.png", g1);
  ImageData grey = load_image_data(dir.file("g"), no_validation());
  EXPECT_EQ(grey.train.channels, 1);
  EXPECT_EQ(image_of(grey.train, 0), g0.pixels);
  Image colour = random_image(gen, 4, 3, 3);
  write_image(dir, "g/c/0.png", colour);
  ImageData mixed = load_image_data(dir.file("g"), no_validation());
  EXPECT_EQ(mixed.train.channels, 3);
  std::vector<uint8_t> replicated;
  for (uint8_t v : g0.pixels) replicated.insert(replicated.end(), {v, v, v});
  EXPECT_EQ(image_of(mixed.train, 0), replicated);
  EXPECT_EQ(image_of(mixed.train, 2), colour.pixels);
  ImageDataOptions one = no_validation();
  one.channels = 1;  // colour to grey with stb's weights (77 R + 150 G + 29 B) >> 8
  ImageData forced = load_image_data(dir.file("g"), one);
  EXPECT_EQ(forced.train.channels, 1);
  const uint8_t* rgb = colour.pixels.data();
  EXPECT_EQ(forced.train.image(2)[0], (77 * rgb[0] + 150 * rgb[1] + 29 * rgb[2]) >> 8);
}

TEST(ImageFolder, JpegDecodesCloseToTheOriginal) {
  TempDir dir;
  write_image(dir, "d/a/0.jpg", flat_image(8, 8, 3, 100));
  write_image(dir, "d/b/0.jpg", flat_image(8, 8, 3, 200));
  ImageData data = load_image_data(dir.file("d"), no_validation());
  // A flat 8x8 block at quality 100 keeps only its DC coefficient; YCbCr rounding moves it at most 1.
  for (int64_t p = 0; p < data.train.image_bytes(); p++) {
    EXPECT_NEAR(data.train.image(0)[p], 100, 1);
    EXPECT_NEAR(data.train.image(1)[p], 200, 1);
  }
}

TEST(ImageFolder, ImageSizeResizesAndWithoutItSizesMustAgree) {
  TempDir dir;
  write_image(dir, "d/a/0.png", flat_image(5, 7, 3, 90));
  write_image(dir, "d/b/0.png", flat_image(9, 4, 3, 180));
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("d"), no_validation()), "'" + dir.file("d/b/0.png") + "' is 4x9",
                        "'" + dir.file("d/a/0.png") + "' is 7x5", "image_size");
  ImageDataOptions options = no_validation();
  options.image_size = 6;
  ImageData data = load_image_data(dir.file("d"), options);
  EXPECT_EQ(data.train.height, 6);
  EXPECT_EQ(data.train.width, 6);
  // A flat image stays flat: every stb filter's weights sum to one.
  for (int64_t p = 0; p < data.train.image_bytes(); p++) {
    EXPECT_EQ(data.train.image(0)[p], 90);
    EXPECT_EQ(data.train.image(1)[p], 180);
  }
}

TEST(ImageFolder, TrainAndTestSubfoldersKeepTheTestApart) {
  Generator gen(23);
  TempDir dir;
  for (int i = 0; i < 10; i++) {
    write_image(dir, "d/train/cat/" + std::to_string(i) + ".png", flat_image(3, 3, 1, 10 + i));
    write_image(dir, "d/train/dog/" + std::to_string(i) + ".png", flat_image(3, 3, 1, 50 + i));
  }
  Image test_dog = random_image(gen, 3, 3, 1);
  write_image(dir, "d/test/dog/0.png", test_dog);  // a test set may hold only some classes
  ImageDataOptions options;
  options.val_fraction = 0.2;
  ImageData data = load_image_data(dir.file("d"), options);
  EXPECT_EQ(data.class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(data.train.size(), 16);
  EXPECT_EQ(data.val.size(), 4);
  ASSERT_EQ(data.test.size(), 1);
  EXPECT_EQ(data.test.labels[0], 1);
  EXPECT_EQ(image_of(data.test, 0), test_dog.pixels);
  // val/ alone is the test set; beside test/ it is the validation set and nothing is carved.
  write_image(dir, "e/train/cat/0.png", flat_image(3, 3, 1, 1));
  write_image(dir, "e/train/dog/0.png", flat_image(3, 3, 1, 2));
  write_image(dir, "e/val/cat/0.png", flat_image(3, 3, 1, 3));
  ImageData val_as_test = load_image_data(dir.file("e"), no_validation());
  EXPECT_EQ(val_as_test.test.size(), 1);
  EXPECT_EQ(val_as_test.test.image(0)[0], 3);
  write_image(dir, "e/test/dog/0.png", flat_image(3, 3, 1, 4));
  ImageData three = load_image_data(dir.file("e"), options);
  EXPECT_EQ(three.train.size(), 2);
  ASSERT_EQ(three.val.size(), 1);
  EXPECT_EQ(three.val.image(0)[0], 3);
  ASSERT_EQ(three.test.size(), 1);
  EXPECT_EQ(three.test.image(0)[0], 4);
  write_image(dir, "e/test/zebra/0.png", flat_image(3, 3, 1, 5));
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("e"), options), "'" + dir.file("e/test") + "' has class 'zebra'",
                        "'" + dir.file("e/train") + "' lacks");
}

TEST(ImageFolder, ValidationSplitIsStratifiedSeededAndDisjoint) {
  TempDir dir;
  // Every image is one flat value, its identity: 12 of class a, 8 of class b.
  for (int i = 0; i < 20; i++)
    write_image(dir, std::string("d/") + (i < 12 ? "a/" : "b/") + std::to_string(100 + i) + ".png",
                flat_image(2, 2, 1, static_cast<uint8_t>(i + 1)));
  ImageDataOptions options;
  options.val_fraction = 0.25;
  auto identities = [](const ImageSet& set) {
    std::vector<int> ids;
    for (int64_t i = 0; i < set.size(); i++) ids.push_back(set.image(i)[0]);
    return ids;
  };
  ImageData first = load_image_data(dir.file("d"), options);
  EXPECT_EQ(std::count(first.val.labels.begin(), first.val.labels.end(), 0), 3);
  EXPECT_EQ(std::count(first.val.labels.begin(), first.val.labels.end(), 1), 2);
  std::vector<int> train = identities(first.train), val = identities(first.val);
  EXPECT_TRUE(std::is_sorted(train.begin(), train.end()));  // both keep the folder's order
  EXPECT_TRUE(std::is_sorted(val.begin(), val.end()));
  std::set<int> all(train.begin(), train.end());
  all.insert(val.begin(), val.end());
  EXPECT_EQ(all.size(), 20u);
  EXPECT_EQ(identities(load_image_data(dir.file("d"), options).val), val);
  std::set<std::vector<int>> seen = {val};
  for (uint64_t seed = 1; seed <= 5; seed++) {
    options.seed = seed;
    seen.insert(identities(load_image_data(dir.file("d"), options).val));
  }
  EXPECT_GT(seen.size(), 3u);  // C(12,3) * C(8,2) = 6160 possible splits
}

TEST(ImageFolder, BadFilesAreNamedOrSkippedAndCounted) {
  Generator gen(24);
  TempDir dir;
  Image image = random_image(gen, 6, 5, 3);
  write_image(dir, "d/a/0.png", image);
  write_image(dir, "d/b/0.png", image);
  std::string notes = dir.write("d/a/notes.txt", "not an image");
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("d"), no_validation()), "'" + notes + "' is not a PNG, JPEG, BMP or PGM/PPM",
                        "skip_bad");
  ImageDataOptions skip = no_validation();
  skip.skip_bad = true;
  ImageData skipped = load_image_data(dir.file("d"), skip);
  EXPECT_EQ(skipped.skipped_files, 1);
  EXPECT_EQ(skipped.train.size(), 2);
  EXPECT_NE(skipped.describe().find("1 unreadable files skipped"), std::string::npos);
  std::remove(notes.c_str());

  for (const char* ext : {"png", "bmp", "jpg"}) {
    std::string path = write_image(dir, std::string("d/b/1.") + ext, image);
    std::string bytes = read_bytes(path);
    dir.write(std::string("d/b/1.") + ext, bytes.substr(0, bytes.size() * 3 / 4));
    SCOPED_TRACE(ext);
    EXPECT_ERROR_MENTIONS(load_image_data(dir.file("d"), no_validation()), "'" + path + "'");
    ImageData data = load_image_data(dir.file("d"), skip);
    EXPECT_EQ(data.skipped_files, 1);
    std::remove(path.c_str());
  }
}

TEST(ImageFolder, BadFoldersNameThePath) {
  TempDir dir;
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("missing"), ImageDataOptions()), "'" + dir.file("missing") + "' does not exist");
  std::string file = dir.write("file.txt", "text");
  EXPECT_ERROR_MENTIONS(load_image_data(file, ImageDataOptions()), "'" + file + "' is a file");
  mkdir(dir.file("empty").c_str(), 0755);
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("empty"), ImageDataOptions()), "'" + dir.file("empty") + "' is neither");
  EXPECT_FALSE(is_image_data(dir.file("empty")));
  EXPECT_FALSE(is_image_data(file));
  std::system(("mkdir -p '" + dir.file("hollow/a") + "' '" + dir.file("hollow/b") + "'").c_str());
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("hollow"), ImageDataOptions()), "'" + dir.file("hollow") + "' holds no images");
  dir.write("hollow/a/notes.txt", "a folder of text files is not image data");
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("hollow"), ImageDataOptions()), "'" + dir.file("hollow") + "' holds no images",
                        "none of the files in its 2 subfolders");
  write_image(dir, "one/only/0.png", flat_image(2, 2, 1, 1));
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("one"), ImageDataOptions()), "'" + dir.file("one") + "' holds one class ('only')");
  write_image(dir, "gap/a/0.png", flat_image(2, 2, 1, 1));
  std::system(("mkdir -p '" + dir.file("gap/b") + "'").c_str());
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("gap"), ImageDataOptions()), "class folder '" + dir.file("gap/b") + "' holds no images");
  ImageDataOptions bad;
  bad.val_fraction = 1.0;
  EXPECT_ERROR_MENTIONS(load_image_data(dir.file("gap"), bad), "val_fraction", "found 1");
}

TEST(ImageFolder, LoadImageFileResizesAndConverts) {
  Generator gen(25);
  TempDir dir;
  Image image = random_image(gen, 5, 4, 3);
  std::string path = write_image(dir, "x.png", image);
  ImageSet same = load_image_file(path, 0, 0, 0);
  EXPECT_EQ(same.height, 5);
  EXPECT_EQ(same.width, 4);
  EXPECT_EQ(same.pixels, image.pixels);
  ImageSet resized = load_image_file(path, 8, 9, 1);
  EXPECT_EQ(resized.height, 8);
  EXPECT_EQ(resized.width, 9);
  EXPECT_EQ(resized.channels, 1);
  EXPECT_EQ(resized.pixels.size(), 72u);
  EXPECT_ERROR_MENTIONS(load_image_file(dir.write("y.png", "no"), 0, 0, 0), "y.png' is not a PNG, JPEG, BMP or PGM/PPM");
}

// Binary PGM/PPM: 8-bit files decode exactly (comments and all, as stb reads the header); 16-bit
// ones are refused, because stb_image 2.27 over-reads its own buffer when it converts their
// channel count (the committed input is fuzz_image's crash: "P5 45x437455, maxval 4374" decoded at
// 3 channels); cut-off pixels are refused instead of decoding uninitialised memory; and bytes of
// none of the supported formats never reach stb's other decoders.
TEST(ImageFolder, PgmAndPpmDecodeExactlyAndMalformedOnesAreNamed) {
  TempDir dir;
  std::string grey = "P5\n# made by hand\n3 2\n255\n";
  for (int i = 0; i < 6; i++) grey += static_cast<char>(40 * i);
  DecodedImage image = decode_image_file(dir.write("g.pgm", grey), 0);
  EXPECT_EQ(image.height, 2);
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.channels, 1);
  EXPECT_EQ(image.pixels, (std::vector<uint8_t>{0, 40, 80, 120, 160, 200}));
  DecodedImage rgb = decode_image_file(dir.file("g.pgm"), 3);
  EXPECT_EQ(rgb.pixels, grey_to_rgb(image).pixels);

  std::ifstream in("tests/fuzz/regressions/image_pgm16_convert_overread.pgm", std::ios::binary);
  ASSERT_TRUE(in.good()) << "run from the repository root";
  std::vector<uint8_t> crash((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (int64_t channels : {0, 1, 3})
    EXPECT_ERROR_MENTIONS(decode_image_bytes(crash.data(), crash.size(), "crash.pgm", channels),
                          "'crash.pgm' is a 16-bit PGM/PPM (maxval 4374), which is not supported");
  EXPECT_ERROR_MENTIONS(decode_image_file(dir.write("cut.ppm", "P6 4 4 255\n" + std::string(47, 'x')), 0),
                        "cut.ppm' is truncated: its PGM/PPM header says 4x4, which needs 59 bytes, found 58");
  EXPECT_ERROR_MENTIONS(decode_image_file(dir.write("huge.pgm", "P5 99999999 1 255\n"), 0),
                        "huge.pgm': its PGM/PPM width is above 2^24");
  // A TGA (no signature: stb would try it on any bytes) and a GIF are not among the formats.
  std::string tga = std::string("\0\0\2\0\0\0\0\0\0\0\0\0\1\0\1\0\x18\0", 18) + "abc";
  EXPECT_THROW_WITH(decode_image_file(dir.write("t.tga", tga), 0), "t.tga' is not a PNG, JPEG, BMP or PGM/PPM image");
  EXPECT_THROW_WITH(decode_image_file(dir.write("g.gif", "GIF89a"), 0), "none of their signatures");
}

// Headers that claim far more pixels than the file holds are refused before stb allocates for
// them. The committed BMP is fuzz_image's hang: 102 bytes saying 65285 x 6391 (at 0 bits per pixel
// with an unknown compression, so no row length to check), for which stb allocated and filled
// 1.25 GB.
TEST(ImageFolder, HeadersClaimingMorePixelsThanTheFileHoldsAreRefused) {
  std::ifstream in("tests/fuzz/regressions/image_bmp_huge_header.bmp", std::ios::binary);
  ASSERT_TRUE(in.good()) << "run from the repository root";
  std::vector<uint8_t> bmp((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TempDir dir;
  EXPECT_ERROR_MENTIONS(decode_image_bytes(bmp.data(), bmp.size(), "huge.bmp", 0),
                        "'huge.bmp' says it is 65285x6391, more pixels than 102 bytes can encode");
  // A valid 2x2 PNG whose IHDR is patched to 10000 x 10000 (stb does not check the CRC).
  std::vector<uint8_t> pixels(12, 7);
  ASSERT_TRUE(stbi_write_png(dir.file("p.png").c_str(), 2, 2, 3, pixels.data(), 0));
  std::ifstream png_in(dir.file("p.png"), std::ios::binary);
  std::vector<uint8_t> png((std::istreambuf_iterator<char>(png_in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(decode_image_bytes(png.data(), png.size(), "p.png", 3).pixels, pixels);  // unpatched: decodes
  for (int at : {16, 20}) png[at] = 0, png[at + 1] = 0, png[at + 2] = 0x27, png[at + 3] = 0x10;  // 10000, big-endian
  EXPECT_ERROR_MENTIONS(decode_image_bytes(png.data(), png.size(), "p.png", 3),
                        "'p.png' says it is 10000x10000, more pixels than " + std::to_string(png.size()) +
                            " bytes can encode");
}

TEST(ImageFolder, ChannelMeanStdOfAKnownSet) {
  ImageSet set;
  set.height = 1, set.width = 2, set.channels = 2;
  // Channel 0: 0, 255, 0, 255 -> mean 0.5, std 0.5; channel 1: 51 everywhere -> mean 0.2, std 0.
  set.pixels = {0, 51, 255, 51, 0, 51, 255, 51};
  set.labels = {0, 1};
  std::vector<float> mean, std;
  channel_mean_std(set, mean, std);
  expect_close(mean, {0.5, 0.2}, 0, 1e-7, "mean");  // rounded once from double: half an ulp of f32
  expect_close(std, {0.5, 0.0}, 1e-7, 1e-7, "std");
}

// A JPEG that does not end with its end-of-image marker is refused as truncated, naming the file
// (stb 2.27 refuses these too, but as "expected marker" after decoding what it has); one padded
// after the marker with zero or 0xFF fill bytes, as some writers leave it, decodes to the same
// pixels.
TEST(ImageFolder, TruncatedJpegIsRefusedAndPaddedOneDecodes) {
  Generator gen(61);
  TempDir dir;
  std::string whole = read_bytes(write_image(dir, "whole.jpg", random_image(gen, 24, 24, 3)));
  ASSERT_GT(whole.size(), 100u);
  const std::vector<uint8_t> pixels = decode_image_file(dir.file("whole.jpg"), 3).pixels;
  DecodedImage padded = decode_image_file(dir.write("padded.jpg", whole + std::string("\0\0\xFF\0", 4)), 3);
  EXPECT_EQ(padded.pixels, pixels);
  EXPECT_ERROR_MENTIONS(decode_image_file(dir.write("half.jpg", whole.substr(0, whole.size() / 2)), 3),
                        "image file '" + dir.file("half.jpg") + "' is truncated", "end-of-image marker (FF D9)");
  EXPECT_ERROR_MENTIONS(decode_image_file(dir.write("no_eoi.jpg", whole.substr(0, whole.size() - 2)), 3),
                        "no_eoi.jpg' is truncated");
  EXPECT_ERROR_MENTIONS(decode_image_file(dir.write("header.jpg", whole.substr(0, 4)), 0), "header.jpg'");
}
