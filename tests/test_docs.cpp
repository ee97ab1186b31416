// The guides show real files: every docs/examples/ file appears in docs/EXTENDING.md as one C++
// code block, byte for byte, and every code block that names an example file is that file. The
// examples themselves are compiled and tested in tests/test_extending_guide.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The bodies of the ```cpp blocks of a Markdown file, each ending with its last newline.
std::vector<std::string> cpp_blocks(const std::string& markdown) {
  std::vector<std::string> blocks;
  const std::string open = "```cpp\n", close = "```";
  size_t at = 0;
  while ((at = markdown.find(open, at)) != std::string::npos) {
    size_t begin = at + open.size();
    size_t end = markdown.find("\n" + close, begin);
    if (end == std::string::npos) break;
    blocks.push_back(markdown.substr(begin, end + 1 - begin));
    at = end + 1 + close.size();
  }
  return blocks;
}

}  // namespace

TEST(Docs, ExtendingGuideShowsEveryExampleAsItIs) {
  const std::string guide = read_file("docs/EXTENDING.md");
  ASSERT_FALSE(guide.empty()) << "docs/EXTENDING.md not found (tests run from the repository root)";
  std::vector<std::string> blocks = cpp_blocks(guide);
  int examples = 0;
  for (const auto& entry : std::filesystem::directory_iterator("docs/examples")) {
    const std::string path = "docs/examples/" + entry.path().filename().string();
    const std::string text = read_file(path);
    examples++;
    int shown = 0;
    for (const std::string& block : blocks) shown += block == text;
    EXPECT_EQ(shown, 1) << path << " must appear exactly once in docs/EXTENDING.md, as it is in the file";
  }
  EXPECT_GE(examples, 5);
  // A block that names an example file but differs from it is a stale copy.
  for (const std::string& block : blocks) {
    if (block.rfind("// docs/examples/", 0) != 0) continue;
    const std::string path = block.substr(3, block.find_first_of(" \n", 3) - 3);
    EXPECT_EQ(block, read_file(path)) << "docs/EXTENDING.md shows a stale copy of " << path;
  }
}
