// moelab tokenize: a text file -> token ids with a Hugging Face tokenizer.json,
// the same ids as the Python `tokenizers` library gives.
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/cli/commands.h"

namespace moelab::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string input;
  std::string output;
  bool no_special_tokens = false;
};

std::string read_input(const std::string& path) {
  if (path == "-") {
    std::ostringstream s;
    s << std::cin.rdbuf();
    return s.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, std::string("cannot read the input text: ") + std::strerror(errno));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string ids_json(const std::vector<int64_t>& ids) {
  std::string out = "{\"ids\": [";
  out.reserve(out.size() + ids.size() * 7 + 4);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(ids[i]);
  }
  out += "]}\n";
  return out;
}

void run_tokenize(const TokenizeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  Tokenizer tok = Tokenizer::from_file(o.tokenizer);
  const std::string text = read_input(o.input);
  std::vector<int64_t> ids;
  try {
    ids = tok.encode(text, !o.no_special_tokens);
  } catch (const InputError& e) {
    // encode() names "input text"; name the file instead.
    std::string msg = e.what();
    const std::string generic = "input text: ";
    if (msg.rfind(generic, 0) == 0) msg = msg.substr(generic.size());
    throw InputError(o.input == "-" ? "<stdin>" : o.input, msg);
  }
  const std::string json = ids_json(ids);
  if (o.output == "-") std::cout << json << std::flush;
  else write_file_atomic(o.output, json);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("tokenize: {} bytes -> {} tokens with {} ({:.2f} s)", text.size(), ids.size(),
               tok.source(), secs);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenize",
      "Turn a text file into token ids with a Hugging Face tokenizer.json.\n"
      "Gives the ids that the Python `tokenizers` library gives for\n"
      "Tokenizer.from_file(tokenizer.json).encode(text).ids, for byte-level BPE (Qwen2/Qwen3,\n"
      "GPT-2, Llama-3) and SentencePiece-style BPE with byte fallback (Llama-2, Mistral,\n"
      "Mixtral). The whole file is one sequence: special tokens written in the text (e.g.\n"
      "<|im_start|>) become their ids, and the tokenizer's template adds e.g. <s> in front\n"
      "unless --no-special-tokens is given. truncation/padding settings in the file are ignored.\n"
      "Writes {\"ids\": [...]} as JSON; a tokenizer.json this tool cannot reproduce exactly\n"
      "(WordPiece, Unigram, unknown normalizers...) is an error naming the field.\n\n"
      "Examples:\n"
      "  moelab tokenize --tokenizer models/debian-moe --input README.md --output ids.json\n"
      "  cat README.md | moelab tokenize --tokenizer models/debian-moe/tokenizer.json --input - --output - "
      "--no-special-tokens");
  auto o = std::make_shared<TokenizeOptions>();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json, or a model directory that contains one")
      ->required();
  cmd->add_option("--input", o->input, "UTF-8 text file to encode (\"-\": standard input)")->required();
  cmd->add_option("--output", o->output,
                  "JSON file to write {\"ids\": [...]} to, replaced atomically (\"-\": standard output)")
      ->required();
  cmd->add_flag("--no-special-tokens", o->no_special_tokens,
                "do not add the post-processor's special tokens (e.g. <s>); special tokens written "
                "in the text are still recognised");
  cmd->callback([o] { run_tokenize(*o); });
}

}  // namespace moelab::cli
