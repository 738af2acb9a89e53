// moelab::Tokenizer against the Python `tokenizers` library: every id of every
// case in the fixtures built by tests/fixtures/make_tokenizers.py ($MOELAB_FIXTURES),
// plus the errors for malformed or unsupported tokenizer.json files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/common/error.h"
#include "core/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using moelab::InputError;
using moelab::Tokenizer;
using nlohmann::json;

namespace {

fs::path tokenizers_dir() {
  const char* env = std::getenv("MOELAB_FIXTURES");
  return fs::path(env ? env : "") / "tokenizers";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

// A scratch directory for the files one test writes, removed afterwards.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name)
      : path(fs::temp_directory_path() / ("moelab_tok_test_" + std::to_string(::getpid()) + "_" + name)) {
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct Fixture {
  Tokenizer tok;
  json expected;
  std::string text;
};

// Skips the test (rather than failing every assertion) when the fixtures were not built.
#define LOAD_OR_SKIP(var, name)                                                       \
  if (!fs::exists(tokenizers_dir() / name / "expected_ids.json"))                     \
    GTEST_SKIP() << "fixtures missing: run tests/fixtures/make_fixtures.py (MOELAB_FIXTURES)"; \
  Fixture var = load(name)

Fixture load(const std::string& name) {
  fs::path d = tokenizers_dir() / name;
  return Fixture{Tokenizer::from_file((d / "tokenizer.json").string()),
                 json::parse(read_file(d / "expected_ids.json")),
                 read_file(tokenizers_dir() / "multilingual.txt")};
}

std::string show(const std::string& s) { return json(s).dump(); }

// Compares ids for the whole multilingual file and every case, with and without
// special tokens. Returns the number of ids compared.
size_t expect_same_ids(const Fixture& f) {
  size_t compared = 0;
  auto check = [&](const std::string& text, const json& exp, bool special) {
    std::vector<int64_t> want = exp.get<std::vector<int64_t>>();
    std::vector<int64_t> got = f.tok.encode(text, special);
    compared += want.size();
    ASSERT_EQ(got.size(), want.size()) << "text " << show(text) << " special=" << special;
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << "id " << i << " of " << show(text) << " special=" << special;
  };
  check(f.text, f.expected["file"]["ids"], true);
  check(f.text, f.expected["file"]["ids_no_special"], false);
  EXPECT_GT(f.expected["cases"].size(), 30u);
  for (const auto& c : f.expected["cases"]) {
    check(c["text"], c["ids"], true);
    check(c["text"], c["ids_no_special"], false);
  }
  return compared;
}

void expect_same_decoding(const Fixture& f) {
  auto check = [&](const json& entry, const std::string& what) {
    auto ids = entry["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(f.tok.decode(ids, false), entry["decoded"].get<std::string>()) << what;
    EXPECT_EQ(f.tok.decode(ids, true), entry["decoded_skip_special"].get<std::string>()) << what;
  };
  check(f.expected["file"], "multilingual.txt");
  for (const auto& c : f.expected["cases"]) check(c, show(c["text"]));
}

bool contains(const std::vector<int64_t>& ids, int64_t lo, int64_t hi) {
  for (auto id : ids)
    if (id >= lo && id <= hi) return true;
  return false;
}

// The message of the InputError thrown by `fn`, or "" if none was thrown.
template <typename Fn>
std::string input_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TokenizerParity, ByteLevelQwenStyleMatchesTokenizersLibrary) {
  LOAD_OR_SKIP(f, "bytelevel");
  EXPECT_GT(expect_same_ids(f), 2000u);
  EXPECT_EQ(f.tok.vocab_size(), f.expected["vocab_size"].get<int64_t>());
}

TEST(TokenizerParity, Gpt2StyleMatchesTokenizersLibrary) {
  LOAD_OR_SKIP(f, "gpt2style");
  EXPECT_GT(expect_same_ids(f), 2000u);
  EXPECT_EQ(f.tok.vocab_size(), f.expected["vocab_size"].get<int64_t>());
}

TEST(TokenizerParity, LlamaByteFallbackMatchesTokenizersLibrary) {
  LOAD_OR_SKIP(f, "llama");
  EXPECT_GT(expect_same_ids(f), 2000u);
  EXPECT_EQ(f.tok.vocab_size(), f.expected["vocab_size"].get<int64_t>());
  // The fixture really exercises byte fallback (<0x00>..<0xFF> are ids 3..258) and BOS.
  auto ids = f.tok.encode(f.text);
  EXPECT_TRUE(contains(ids, 3, 258));
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(f.tok.encode("").size(), 1u);  // just <s>
}

TEST(TokenizerParity, MetaspaceMatchesTokenizersLibrary) {
  LOAD_OR_SKIP(f, "metaspace");
  EXPECT_GT(expect_same_ids(f), 2000u);
  EXPECT_EQ(f.tok.vocab_size(), f.expected["vocab_size"].get<int64_t>());
  EXPECT_TRUE(contains(f.tok.encode(f.text), 3, 258));
}

TEST(TokenizerParity, AssortedComponentsMatchTokenizersLibrary) {
  LOAD_OR_SKIP(f, "assorted");
  EXPECT_GT(expect_same_ids(f), 1000u);
  EXPECT_EQ(f.tok.vocab_size(), f.expected["vocab_size"].get<int64_t>());
}

TEST(TokenizerParity, DecodeMatchesTokenizersLibrary) {
  for (const char* name : {"bytelevel", "gpt2style", "llama", "metaspace", "assorted"}) {
    SCOPED_TRACE(name);
    LOAD_OR_SKIP(f, name);
    expect_same_decoding(f);
  }
}

TEST(TokenizerParity, DecodeRoundTripsByteLevelText) {
  // Byte-level BPE without a normalizer is lossless: decode(encode(text)) == text,
  // except for the whitespace that the lstrip/rstrip added tokens <mask>/[RS] absorb.
  LOAD_OR_SKIP(f, "gpt2style");
  auto absorbs_space = [](const std::string& t) {
    return t.find("<mask>") != std::string::npos || t.find("[RS]") != std::string::npos;
  };
  std::string text = f.text;
  for (size_t at; (at = text.find(" <mask>")) != std::string::npos;) text.erase(at, 1);
  EXPECT_EQ(f.tok.decode(f.tok.encode(text)), text);
  int checked = 0;
  for (const auto& c : f.expected["cases"]) {
    std::string t = c["text"];
    if (absorbs_space(t)) continue;
    EXPECT_EQ(f.tok.decode(f.tok.encode(t)), t) << show(t);
    ++checked;
  }
  EXPECT_GT(checked, 30);
}

TEST(TokenizerParity, DecodeRoundTripsLlamaTextWithoutBos) {
  LOAD_OR_SKIP(f, "llama");
  // Characters outside the vocabulary come back through their <0xXX> bytes.
  for (std::string text : {"你好，世界！", "👨‍👩‍👧‍👦 family 👍🏽", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱", "Zürich Straße"})
    EXPECT_EQ(f.tok.decode(f.tok.encode(text), true), text) << show(text);
}

TEST(TokenizerApi, LoadsFromModelDirectory) {
  LOAD_OR_SKIP(f, "bytelevel");
  Tokenizer t = Tokenizer::from_file((tokenizers_dir() / "bytelevel").string());
  EXPECT_EQ(t.encode("Hello world"), f.tok.encode("Hello world"));
  EXPECT_EQ(fs::path(t.source()).filename(), "tokenizer.json");
}

TEST(TokenizerApi, SpecialTokensMapToTheirIds) {
  LOAD_OR_SKIP(f, "bytelevel");
  auto id = f.tok.token_to_id("<|im_start|>");
  ASSERT_TRUE(id.has_value());
  EXPECT_TRUE(f.tok.is_special(*id));
  EXPECT_EQ(f.tok.id_to_token(*id).value_or(""), "<|im_start|>");
  EXPECT_EQ(f.tok.encode("<|im_start|>", false), std::vector<int64_t>{*id});
  auto think = f.tok.token_to_id("<think>");
  ASSERT_TRUE(think.has_value());
  EXPECT_FALSE(f.tok.is_special(*think));
  EXPECT_FALSE(f.tok.token_to_id("no such token at all").has_value());
  EXPECT_EQ(f.tok.decode({*id, 999999999, -5}), "<|im_start|>");  // unknown ids are skipped
}

TEST(TokenizerApi, ConcurrentEncodingGivesTheSameIds) {
  LOAD_OR_SKIP(f, "bytelevel");
  auto want = f.expected["file"]["ids"].get<std::vector<int64_t>>();
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back([&] { g = f.tok.encode(f.text); });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(TokenizerErrors, UnsupportedModelTypeNamesFileAndField) {
  fs::path file = tokenizers_dir() / "wordpiece" / "tokenizer.json";
  if (!fs::exists(file)) GTEST_SKIP() << "fixtures missing";
  std::string msg = input_error_of([&] { Tokenizer::from_file(file.string()); });
  EXPECT_NE(msg.find(file.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.type \"WordPiece\" is not supported"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(TokenizerErrors, UnsupportedComponentsNameTheField) {
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0}, "merges": []})";
  struct Case {
    std::string json, expect;
  };
  std::vector<Case> cases = {
      {R"({"pre_tokenizer": {"type": "Whitespace"}, )" + model + "}",
       "tok.json: pre_tokenizer.type \"Whitespace\" is not supported (supported: ByteLevel, Split, "
       "Metaspace, Sequence, Digits)"},
      {R"({"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]}, )" +
           model + "}",
       "normalizer.normalizers[1].type \"Precompiled\" is not supported"},
      {R"({"decoder": {"type": "WordPiece"}, )" + model + "}", "decoder.type \"WordPiece\" is not supported"},
      {R"({"post_processor": {"type": "Nope"}, )" + model + "}", "post_processor.type \"Nope\" is not supported"},
      {R"({"model": {"type": "Unigram", "vocab": []}})", "model.type \"Unigram\" is not supported"},
      {R"({"model": {"type": "BPE", "merges": []}})", "model.vocab is missing"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", "model.merges is missing"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})",
       "model.merges[0] names token \"ab\", which is not in model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "zz"]]}})",
       "model.merges[0] names token \"zz\", which is not in model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]}})",
       "model.merges[0] must be two tokens separated by one space"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})",
       "model.vocab[\"a\"] must be an integer, not a string"},
      {R"({"model": {"type": "BPE", "vocab": [], "merges": []}})", "model.vocab must be an object"},
      {R"({"model": {"type": "BPE", "dropout": 0.1, "vocab": {"a": 0}, "merges": []}})",
       "model.dropout is 0.1: BPE dropout is not supported"},
      {R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}, )" +
           model + "}",
       "pre_tokenizer.pattern.Regex is not a valid regular expression"},
      {R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways", "invert": false}, )" +
           model + "}",
       "pre_tokenizer.behavior \"Sideways\" is not supported"},
      {R"({"pre_tokenizer": {"type": "Metaspace", "replacement": "ab"}, )" + model + "}",
       "pre_tokenizer.replacement must be a single character"},
      {R"({"version": "2.0", )" + model + "}", "version \"2.0\" is not supported"},
      {R"({"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "special_tokens": {}}, )" +
           model + "}",
       "post_processor.single[0].SpecialToken.id \"<s>\" is not defined in post_processor.special_tokens"},
      {R"({"added_tokens": [{"id": 5}], )" + model + "}", "added_tokens[0].content is missing"},
      {R"([1, 2, 3])", "top level must be a JSON object"},
      {R"({})", "model is missing"},
  };
  for (const auto& c : cases) {
    std::string msg = input_error_of([&] { Tokenizer::from_json(c.json, "tok.json"); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "got: " << msg << "\nfor: " << c.json;
    EXPECT_EQ(msg.rfind("tok.json: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(TokenizerErrors, MalformedJsonIsOneLineError) {
  ScratchDir scratch("malformed");
  const fs::path& d = scratch.path;
  for (std::string bad : {std::string("{\"model\": {\"type\": \"BPE\",\n\n  \"vocab\": {\"a\": 0,}}}"),
                          std::string("not json at all\n"), std::string(""), std::string("\xff\xfe{}"),
                          std::string("{\"model\": \"\xc3\x28\"}"),
                          std::string("{\"model\": 1E400}")}) {  // a number no double holds (found by fuzzing)
    write_file(d / "tokenizer.json", bad);
    std::string msg = input_error_of([&] { Tokenizer::from_file((d / "tokenizer.json").string()); });
    EXPECT_EQ(msg.rfind((d / "tokenizer.json").string() + ": is not valid JSON", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(TokenizerErrors, TruncatedFileDoesNotCrash) {
  fs::path src = tokenizers_dir() / "llama" / "tokenizer.json";
  if (!fs::exists(src)) GTEST_SKIP() << "fixtures missing";
  const std::string full = read_file(src);
  ScratchDir scratch("truncated");
  const fs::path& d = scratch.path;
  // Cut the file at many places, including inside the vocab, the merges and the
  // multi-byte "▁" characters.
  int tried = 0;
  for (size_t cut = 0; cut < full.size(); cut += 1 + full.size() / 97) {
    for (size_t delta : {0, 1, 2}) {
      if (cut + delta >= full.size()) continue;
      write_file(d / "tokenizer.json", full.substr(0, cut + delta));
      std::string msg = input_error_of([&] { Tokenizer::from_file((d / "tokenizer.json").string()); });
      EXPECT_FALSE(msg.empty()) << "no error for a file cut at byte " << cut + delta;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      ++tried;
    }
  }
  EXPECT_GT(tried, 250);
}

TEST(TokenizerErrors, MissingFileAndDirectoryWithoutTokenizerJson) {
  ScratchDir scratch("empty_model_dir");
  const fs::path& d = scratch.path;
  std::string msg = input_error_of([&] { Tokenizer::from_file(d.string()); });
  EXPECT_NE(msg.find("directory has no tokenizer.json"), std::string::npos) << msg;
  msg = input_error_of([&] { Tokenizer::from_file((d / "nope.json").string()); });
  EXPECT_NE(msg.find("nope.json: cannot read"), std::string::npos) << msg;
}

TEST(TokenizerErrors, InvalidUtf8InputIsRejected) {
  LOAD_OR_SKIP(f, "bytelevel");
  std::string msg = input_error_of([&] { f.tok.encode("ok \xc3\x28 bad"); });
  EXPECT_NE(msg.find("input text: not valid UTF-8 (first bad byte at offset 3)"), std::string::npos) << msg;
  msg = input_error_of([&] { f.tok.encode("\xed\xa0\x80"); });  // an encoded surrogate
  EXPECT_FALSE(msg.empty());
}
