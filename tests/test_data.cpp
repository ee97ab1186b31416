// data/: reading corpora, UTF-8 checks, the char and byte-level BPE tokenizers, the
// train/validation split and the background batch loader.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "data/bpe_tokenizer.h"
#include "data/char_tokenizer.h"
#include "data/loader.h"
#include "data/text_dataset.h"
#include "data/text_file.h"
#include "data/tokenizer.h"
#include "tests/test_util.h"

using namespace tg;


namespace {


std::string random_bytes(Generator& gen, size_t n) {
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(gen.below(256));
  return bytes;
}

}  // namespace

// ---- reading files --------------------------------------------------------------------------

TEST(TextFile, ReadsEveryByte) {
  TempDir dir;
  std::string bytes("a\0b\xff\n", 5);
  EXPECT_EQ(read_text_file(dir.write("x.bin", bytes)), bytes);
}

TEST(TextFile, BadPathsNameTheFile) {
  TempDir dir;
  EXPECT_THROW_WITH(read_text_file(dir.path + "/missing.txt"), "missing.txt' cannot be opened: No such file");
  EXPECT_THROW_WITH(read_text_file(dir.path), "is a directory");
  EXPECT_THROW_WITH(read_text_file(dir.write("empty.txt", "")), "empty.txt' is empty");
  EXPECT_THROW_WITH(read_text_file("/dev/null"), "is not a regular file");
}

// Root reads files whatever their permissions (and CI runs as root), so as root the check runs
// with the effective uid of `nobody`, restored afterwards.
struct RunAsNobodyIfRoot {
  bool switched = false;
  RunAsNobodyIfRoot() {
    if (geteuid() == 0) switched = seteuid(65534) == 0;
  }
  ~RunAsNobodyIfRoot() {
    if (switched && seteuid(0) != 0) std::abort();  // the rest of the suite must not run as nobody
  }
};

TEST(TextFile, UnreadableFileNamesTheFile) {
  TempDir dir;
  chmod(dir.path.c_str(), 0755);  // traversable, so the error is the file's, not the folder's
  std::string file = dir.write("locked.txt", "text");
  chmod(file.c_str(), 0);
  RunAsNobodyIfRoot nobody;
  if (geteuid() == 0) GTEST_SKIP() << "running as root and could not switch to an unprivileged uid";
  EXPECT_THROW_WITH(read_text_file(file), "locked.txt' cannot be read: Permission denied");
}

TEST(Utf8, AcceptsValidAndFindsTheFirstInvalidByte) {
  EXPECT_EQ(first_invalid_utf8("plain ascii\n"), -1);
  EXPECT_EQ(first_invalid_utf8("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), -1);  // é € 😀
  EXPECT_EQ(first_invalid_utf8("ab\xff"), 2);                                  // never a UTF-8 byte
  EXPECT_EQ(first_invalid_utf8("a\xc0\x80"), 1);                               // overlong NUL
  EXPECT_EQ(first_invalid_utf8("a\xed\xa0\x80"), 1);                           // UTF-16 surrogate
  EXPECT_EQ(first_invalid_utf8("\xf4\x90\x80\x80"), 0);                        // past U+10FFFF
  EXPECT_EQ(first_invalid_utf8("ok\xe2\x82"), 2);                              // truncated at the end
  EXPECT_EQ(first_invalid_utf8("\x80"), 0);                                    // lone continuation
}

// ---- char tokenizer -------------------------------------------------------------------------

TEST(CharTokenizer, VocabularyIsTheSortedDistinctCharacters) {
  CharTokenizer tok = CharTokenizer::train("h\xc3\xa9llo w\xc3\xb6rld");  // "héllo wörld"
  std::vector<uint32_t> expected = {' ', 'd', 'h', 'l', 'o', 'r', 'w', 0xE9, 0xF6};
  EXPECT_EQ(tok.symbols(), expected);
  std::vector<int32_t> ids = tok.encode("h\xc3\xa9l");
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 7, 3}));
  EXPECT_EQ(tok.decode(ids), "h\xc3\xa9l");
}

TEST(CharTokenizer, InvalidBytesRoundTrip) {
  Generator gen(3);
  std::string bytes = random_bytes(gen, 5000);
  CharTokenizer tok = CharTokenizer::train(bytes);
  EXPECT_EQ(tok.decode(tok.encode(bytes)), bytes);
}

TEST(CharTokenizer, UnknownCharacterIsNamed) {
  CharTokenizer tok = CharTokenizer::train("abc");
  EXPECT_THROW_WITH(tok.encode("abz"), "character 'z' at byte 2 is not in the tokenizer's vocabulary");
  EXPECT_THROW_WITH(tok.token_bytes(3), "token id 3 is outside");
}

TEST(CharTokenizer, JsonRoundTripAndMalformedJson) {
  CharTokenizer tok = CharTokenizer::train("so\xc3\xb6\xff");
  std::unique_ptr<Tokenizer> back = load_tokenizer(tok.to_json(), "t.json");
  EXPECT_EQ(back->type(), "char");
  EXPECT_EQ(static_cast<CharTokenizer&>(*back).symbols(), tok.symbols());
  EXPECT_THROW_WITH(load_tokenizer("{\"type\": \"char\"}", "t.json"), "char tokenizer in 't.json' is malformed");
  EXPECT_THROW_WITH(load_tokenizer("[1, 2", "t.json"), "'t.json' is not valid tokenizer JSON");
  EXPECT_THROW_WITH(load_tokenizer("{\"type\": \"wordpiece\"}", "t.json"), "unknown type 'wordpiece'");
}

// ---- byte-level BPE -------------------------------------------------------------------------

TEST(Bpe, PretokenizeFollowsGpt2Chunks) {
  std::vector<std::string> expected = {"Hello", " world", " ", " foo", "\n\n", "bar", " 123", "!!", " \xc3\xa9t\xc3\xa9"};
  EXPECT_EQ(pretokenize("Hello world  foo\n\nbar 123!! \xc3\xa9t\xc3\xa9"), expected);
}

TEST(Bpe, LearnsTheWikipediaExampleInOrder) {
  // en.wikipedia.org/wiki/Byte_pair_encoding: "aaabdaaabac" merges aa -> Z, ab -> Y (a tie with
  // Za, both twice; the smaller pair wins), ZY -> X, leaving "XdXac".
  BpeTokenizer tok = BpeTokenizer::train("aaabdaaabac", 300);
  std::vector<BpeTokenizer::Merge> expected = {{'a', 'a'}, {'a', 'b'}, {256, 257}};
  EXPECT_EQ(tok.merges(), expected);  // then no pair occurs twice: training stops early
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(tok.encode("aaabdaaabac"), (std::vector<int32_t>{258, 'd', 258, 'a', 'c'}));
  EXPECT_EQ(tok.token_bytes(258), "aaab");
}

// The same training, written the slow obvious way: recount every pair of every chunk per merge.
static std::vector<BpeTokenizer::Merge> naive_bpe_merges(const std::string& text, int64_t vocab_size) {
  std::map<std::string, int64_t> counts;
  for (const auto& chunk : pretokenize(text)) counts[chunk]++;
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [chunk, count] : counts) {
    std::vector<int32_t> symbols;
    for (unsigned char c : chunk) symbols.push_back(c);
    words.emplace_back(symbols, count);
  }
  std::vector<BpeTokenizer::Merge> merges;
  while (256 + static_cast<int64_t>(merges.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;  // ordered: ties go to the smallest pair
    for (const auto& [symbols, count] : words)
      for (size_t i = 0; i + 1 < symbols.size(); i++) pairs[{symbols[i], symbols[i + 1]}] += count;
    std::pair<int32_t, int32_t> best{};
    int64_t best_count = 0;
    for (const auto& [pair, count] : pairs)
      if (count > best_count) { best = pair; best_count = count; }
    if (best_count < 2) break;
    int32_t id = 256 + static_cast<int32_t>(merges.size());
    merges.push_back(best);
    for (auto& [symbols, count] : words) {
      std::vector<int32_t> merged;
      for (size_t i = 0; i < symbols.size(); i++) {
        if (i + 1 < symbols.size() && symbols[i] == best.first && symbols[i + 1] == best.second) { merged.push_back(id); i++; }
        else merged.push_back(symbols[i]);
      }
      symbols = merged;
    }
  }
  return merges;
}

TEST(Bpe, IncrementalCountsMatchRecountingEveryMerge) {
  // Text with repeats at several scales (letters, words, runs like "aaaa" that overlap with
  // themselves), so merges build on merges and counts change in every word they touch.
  Generator gen(11);
  const char* words[] = {"the", "theme", "there", "aaaa", "abab", "lord", "said", "unto", "\xc3\xa9t\xc3\xa9", "1234"};
  std::string text;
  for (int i = 0; i < 3000; i++) {
    text += words[gen.below(10)];
    text += gen.below(8) == 0 ? ",\n" : " ";
  }
  BpeTokenizer tok = BpeTokenizer::train(text, 400);
  std::vector<BpeTokenizer::Merge> naive = naive_bpe_merges(text, 400);
  ASSERT_GT(naive.size(), 20u);
  EXPECT_EQ(tok.merges(), naive);
  // Deterministic: a second training learns the same merges.
  EXPECT_EQ(BpeTokenizer::train(text, 400).merges(), tok.merges());
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  EXPECT_LT(tok.encode(text).size(), text.size() / 2);  // the merges do compress the text they came from
}

TEST(Bpe, ArbitraryBytesRoundTrip) {
  Generator gen(5);
  std::string training = random_bytes(gen, 3000) + std::string(2000, 'x') + "hello hello hello";
  BpeTokenizer tok = BpeTokenizer::train(training, 300);
  for (int trial = 0; trial < 20; trial++) {
    std::string bytes = random_bytes(gen, 1 + gen.below(500));
    EXPECT_EQ(tok.decode(tok.encode(bytes)), bytes);
  }
  EXPECT_EQ(tok.decode(tok.encode(training)), training);
}

TEST(Bpe, JsonRoundTripEncodesTheSame) {
  std::string text = "and the lord said unto moses, and the people said amen. ";
  for (int i = 0; i < 4; i++) text += text;
  BpeTokenizer tok = BpeTokenizer::train(text, 320);
  std::unique_ptr<Tokenizer> back = load_tokenizer(tok.to_json(), "tokenizer.json");
  EXPECT_EQ(back->type(), "bpe");
  EXPECT_EQ(back->vocab_size(), tok.vocab_size());
  EXPECT_EQ(back->encode(text), tok.encode(text));
  EXPECT_THROW_WITH(load_tokenizer("{\"type\": \"bpe\", \"merges\": [[1, 999]]}", "t.json"),
                    "refers to a token not defined before it");
  EXPECT_THROW_WITH(load_tokenizer("{\"type\": \"bpe\", \"merges\": [[1]]}", "t.json"), "malformed merge");
  EXPECT_THROW_WITH(tok.token_bytes(-1), "outside the BPE vocabulary");
}

// Each merge of the last token with itself doubles its length: 41 merges of a few bytes each
// would spell a 2^41-byte token. The reader refuses them before building anything.
TEST(Bpe, MergesThatSpellAnAbsurdVocabularyAreRefused) {
  std::string merges = "[32, 32]";
  for (int id = 256; id < 296; id++) merges += ", [" + std::to_string(id) + ", " + std::to_string(id) + "]";
  EXPECT_ERROR_MENTIONS(load_tokenizer("{\"type\": \"bpe\", \"merges\": [" + merges + "]}", "doubling.json"),
                        "BPE tokenizer in 'doubling.json'", "bytes of tokens, more than the limit of 268435456");
  // The limit counts every token: many distinct long tokens are refused as well. Merge 18 is a
  // token of 2^19 bytes; 512 tokens of 2^19 + 1 bytes each pass 2^28 in all.
  merges = "[32, 32]";
  for (int id = 256; id < 274; id++) merges += ", [" + std::to_string(id) + ", " + std::to_string(id) + "]";
  for (int i = 0; i < 512; i++) merges += ", [274, " + std::to_string(i) + "]";
  EXPECT_THROW_WITH(load_tokenizer("{\"type\": \"bpe\", \"merges\": [" + merges + "]}", "wide.json"),
                    "more than the limit of 268435456");
  EXPECT_THROW_WITH(BpeTokenizer({{32, 32}, {256, 256}, {300, 1}}), "merge 2 (300, 1) refers to a token not defined before it");
}

// A value nested 200,000 deep (a 400 KB file) is described in the message, not dumped: nlohmann's
// dump() recurses per level and overflowed the stack.
TEST(Tokenizer, DeeplyNestedEntriesAreDescribedNotDumped) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_ERROR_MENTIONS(load_tokenizer("{\"type\": \"bpe\", \"merges\": [" + deep + "]}", "deep.json"),
                        "BPE tokenizer in 'deep.json' has a malformed merge a JSON array of 1 entry");
  EXPECT_ERROR_MENTIONS(load_tokenizer("{\"type\": \"char\", \"symbols\": [" + deep + "]}", "deep.json"),
                        "char tokenizer in 'deep.json' has an invalid symbol a JSON array of 1 entry");
  // Flat values are still quoted as they are.
  EXPECT_THROW_WITH(load_tokenizer("{\"type\": \"bpe\", \"merges\": [[1, 2, 3]]}", "t.json"), "malformed merge [1,2,3]");
}

// ---- split and loader -----------------------------------------------------------------------

static std::vector<int32_t> iota_tokens(int32_t n) {
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; i++) tokens[i] = i;
  return tokens;
}

TEST(TextDataset, SplitsTheTailForValidation) {
  TextDataset data = split_tokens(iota_tokens(100), 0.1, 8, "c.txt");
  ASSERT_EQ(data.train->size(), 90u);
  ASSERT_EQ(data.val->size(), 10u);
  EXPECT_EQ(data.train->back(), 89);
  EXPECT_EQ(data.val->front(), 90);
}

TEST(TextDataset, TooShortNamesTheCountsAndTheBlock) {
  // 100 tokens at 10% leave 10 for validation; block 9 needs 10 in each split, block 10 needs 11.
  EXPECT_NO_THROW(split_tokens(iota_tokens(100), 0.1, 9, "c.txt"));
  EXPECT_THROW_WITH(split_tokens(iota_tokens(100), 0.1, 10, "c.txt"),
                    "corpus 'c.txt' is too short: its 100 tokens split into 90 for training and 10 for validation, "
                    "and --block 10 needs at least 11 in each");
}

TEST(Loader, WindowsAreShiftedSlicesOfTheTokens) {
  auto tokens = std::make_shared<const std::vector<int32_t>>(iota_tokens(50));
  BatchLoader loader(tokens, 4, 7, 1);
  std::vector<int64_t> seen_starts;
  for (int i = 0; i < 30; i++) {
    Batch batch = loader.next();
    ASSERT_EQ(batch.inputs.shape(), (Shape{4, 7}));
    ASSERT_EQ(batch.targets.shape(), (Shape{4, 7}));
    std::vector<int32_t> x = batch.inputs.to_int_vector(), y = batch.targets.to_int_vector();
    for (int b = 0; b < 4; b++) {
      int32_t start = x[b * 7];
      ASSERT_GE(start, 0);
      ASSERT_LE(start, 50 - 8);  // the last window ends at the last token
      seen_starts.push_back(start);
      for (int t = 0; t < 7; t++) {
        ASSERT_EQ(x[b * 7 + t], start + t);
        ASSERT_EQ(y[b * 7 + t], start + t + 1);
      }
    }
  }
  // 120 draws over 43 starts: both ends appear (a window that can never start at the edges would
  // never train on the first or last tokens). P(missing one end) = (42/43)^120 < 6%, so seed 1 was
  // checked once and the test is deterministic.
  EXPECT_NE(std::find(seen_starts.begin(), seen_starts.end(), 0), seen_starts.end());
  EXPECT_NE(std::find(seen_starts.begin(), seen_starts.end(), 42), seen_starts.end());
}

TEST(Loader, PrefetchingDoesNotChangeTheStream) {
  // The background thread must hand out exactly what drawing synchronously from Generator(seed) gives.
  auto tokens = std::make_shared<const std::vector<int32_t>>(iota_tokens(1000));
  BatchLoader loader(tokens, 3, 5, 42, /*prefetch=*/4);
  Generator gen(42);
  for (int i = 0; i < 20; i++) {
    Batch a = loader.next(), b = sample_batch(*tokens, 3, 5, gen);
    ASSERT_EQ(a.inputs.to_int_vector(), b.inputs.to_int_vector()) << "batch " << i;
  }
}

TEST(Loader, PositionRestoresTheExactStream) {
  auto tokens = std::make_shared<const std::vector<int32_t>>(iota_tokens(1000));
  BatchLoader loader(tokens, 2, 6, 9);
  for (int i = 0; i < 3; i++) loader.next();
  LoaderPosition position = loader.position();
  EXPECT_EQ(position.batches, 3);
  std::vector<std::vector<int32_t>> ahead;
  for (int i = 0; i < 4; i++) ahead.push_back(loader.next().inputs.to_int_vector());

  // The same loader rewound, and a fresh one (as after a restart), both continue identically.
  loader.restore(position);
  BatchLoader fresh(tokens, 2, 6, /*seed=*/12345);
  fresh.restore(position);
  for (int i = 0; i < 4; i++) {
    EXPECT_EQ(loader.next().inputs.to_int_vector(), ahead[i]);
    EXPECT_EQ(fresh.next().inputs.to_int_vector(), ahead[i]);
  }
  EXPECT_EQ(fresh.position().batches, 7);
}

// The prefetch thread stopped and restarted hundreds of times at random points: restores to
// earlier and later positions while it is building a batch, loaders replaced mid-prefetch, and
// loaders destroyed right after they start. Every batch handed out must still be the
// uninterrupted stream's. This is the start/stop stress that `make TSAN=1 test` runs (README).
TEST(Loader, StoppingAndRestartingAtRandomPointsKeepsTheStream) {
  auto tokens = std::make_shared<const std::vector<int32_t>>(iota_tokens(500));
  const int64_t B = 2, T = 4, kBatches = 24;
  const uint64_t seed = 77;
  std::vector<std::vector<int32_t>> reference;
  std::vector<LoaderPosition> positions;  // positions[k]: the stream after k batches
  Generator gen(seed);
  for (int64_t k = 0; k <= kBatches; k++) {
    positions.push_back({gen.state(), k});
    reference.push_back(sample_batch(*tokens, B, T, gen).inputs.to_int_vector());
  }
  Generator chaos(5);
  auto depth = [&] { return 1 + static_cast<int>(chaos.below(4)); };
  auto loader = std::make_unique<BatchLoader>(tokens, B, T, seed, depth());
  int64_t at = 0;
  for (int step = 0; step < 400; step++) {
    switch (chaos.below(4)) {
      case 0:
      case 1:
        if (at < kBatches) {
          ASSERT_EQ(loader->next().inputs.to_int_vector(), reference[at]) << "step " << step;
          at++;
        }
        break;
      case 2:
        at = static_cast<int64_t>(chaos.below(kBatches + 1));
        loader->restore(positions[at]);
        break;
      default:
        { BatchLoader doomed(tokens, B, T, seed + step, depth()); }  // destroyed while its thread starts
        loader = std::make_unique<BatchLoader>(tokens, B, T, seed + 1 + step, depth());
        at = static_cast<int64_t>(chaos.below(kBatches + 1));
        loader->restore(positions[at]);
    }
    ASSERT_EQ(loader->position().batches, at) << "step " << step;
    ASSERT_EQ(loader->position().rng, positions[at].rng) << "step " << step;
  }
}

TEST(Loader, RejectsACorpusShorterThanOneWindow) {
  auto tokens = std::make_shared<const std::vector<int32_t>>(iota_tokens(8));
  EXPECT_THROW_WITH(BatchLoader(tokens, 1, 8, 0), "8 tokens cannot fill one window of 9");
}
