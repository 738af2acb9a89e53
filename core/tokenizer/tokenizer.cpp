#include "core/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/common/error.h"
#include "core/tokenizer/added_tokens.h"
#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/decoders.h"
#include "core/tokenizer/json_fields.h"
#include "core/tokenizer/normalizers.h"
#include "core/tokenizer/pieces.h"
#include "core/tokenizer/post_processors.h"
#include "core/tokenizer/pre_tokenizers.h"
#include "core/tokenizer/utf8.h"

namespace fs = std::filesystem;

namespace moelab {

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::BpeModel> model;
  tok::AddedVocabulary added;
  std::unique_ptr<tok::PostProcessor> post_processor;
  std::unique_ptr<tok::Decoder> decoder;
};

namespace {

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

tok::JsonField member_or_null(const tok::JsonField& root, const std::string& key) {
  static const nlohmann::json null_value;
  auto f = root.find(key);
  return f ? *f : tok::JsonField(null_value, key, root.file());
}

void build(Tokenizer::Impl& impl, const nlohmann::json& doc) {
  const tok::JsonField root(doc, "", impl.source);
  if (!root.is_object()) root.fail("must be a JSON object (a Hugging Face tokenizer.json)");
  if (auto v = root.find("version")) {
    if (v->str() != "1.0") v->fail(tok::quote_str(v->str()) + " is not supported (supported: \"1.0\")");
  }
  // The model first: an unsupported model type (WordPiece, Unigram) is the error
  // that matters, whatever else the file holds.
  const tok::JsonField model = root.at("model");
  if (!model.is_object()) model.fail("must be an object");
  std::string type;
  if (auto t = model.find("type")) type = t->str();
  else if (model.find("merges")) type = "BPE";  // untagged files from old versions
  else model.fail("has no \"type\"");
  if (type != "BPE") model.unsupported_type(type, "BPE");
  impl.model = std::make_unique<tok::BpeModel>(model);

  impl.normalizer = tok::make_normalizer(member_or_null(root, "normalizer"));
  impl.pre_tokenizer = tok::make_pre_tokenizer(member_or_null(root, "pre_tokenizer"));
  impl.added = tok::AddedVocabulary(member_or_null(root, "added_tokens"), *impl.model,
                                    impl.normalizer.get());
  impl.post_processor = tok::make_post_processor(member_or_null(root, "post_processor"));
  impl.decoder = tok::make_decoder(member_or_null(root, "decoder"));
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::string file = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    file = (fs::path(path) / "tokenizer.json").string();
    if (!fs::exists(file, ec)) throw InputError(path, "directory has no tokenizer.json");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(file, std::string("cannot read: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(file, "read failed");
  return from_json(text.str(), file);
}

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& source) {
  auto impl = std::make_shared<Impl>();
  impl->source = source;
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for 1e400
    std::string what = e.what();
    size_t close = what.find("] ");
    if (what.rfind("[json.exception", 0) == 0 && close != std::string::npos) what = what.substr(close + 2);
    throw InputError(source, one_line("is not valid JSON: " + what));
  }
  try {
    build(*impl, doc);
  } catch (const InputError& e) {
    throw InputError(one_line(e.what()));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(source, one_line(std::string("unexpected JSON structure: ") + e.what()));
  }
  return Tokenizer(std::move(impl));
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  size_t bad = tok::find_invalid_utf8(text);
  if (bad != std::string::npos)
    throw InputError("input text", "not valid UTF-8 (first bad byte at offset " + std::to_string(bad) + ")");

  std::vector<tok::Piece> pieces;
  if (!text.empty()) pieces.push_back({text, -1, true});
  m.added.split_raw(pieces);
  if (m.normalizer) {
    std::vector<tok::Piece> kept;
    kept.reserve(pieces.size());
    for (auto& p : pieces) {
      if (!p.is_token()) m.normalizer->normalize(p.text);
      if (p.is_token() || !p.text.empty()) kept.push_back(std::move(p));
    }
    pieces = std::move(kept);
  }
  m.added.split_normalized(pieces);
  if (m.pre_tokenizer) m.pre_tokenizer->pre_tokenize(pieces);

  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 8);
  for (const auto& p : pieces) {
    if (p.is_token()) ids.push_back(p.id);
    else m.model->encode_word(p.text, ids);
  }
  if (m.post_processor) m.post_processor->process(ids, add_special_tokens);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    const std::string* s = m.added.decode_form(id);
    if (!s) s = m.model->id_to_token(id);
    if (!s) continue;
    if (skip_special_tokens && m.added.is_special_content(*s)) continue;
    tokens.push_back(*s);
  }
  if (m.decoder) m.decoder->decode_chain(tokens);
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0 && !m.decoder) out += ' ';
    out += tokens[i];
  }
  return out;
}

int64_t Tokenizer::vocab_size() const {
  const Impl& m = *impl_;
  int64_t n = static_cast<int64_t>(m.model->vocab_size());
  for (const auto& [content, id] : m.added.contents())
    if (!m.model->token_to_id(content)) ++n;
  return n;
}

std::optional<int64_t> Tokenizer::token_to_id(const std::string& token) const {
  if (auto id = impl_->added.token_to_id(token)) return id;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int64_t id) const {
  const std::string* s = impl_->added.decode_form(id);
  if (!s) s = impl_->model->id_to_token(id);
  if (!s) return std::nullopt;
  return *s;
}

bool Tokenizer::is_special(int64_t id) const { return impl_->added.is_special_id(id); }

const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace moelab
