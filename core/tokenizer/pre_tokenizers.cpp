#include "core/tokenizer/pre_tokenizers.h"

#include <stdexcept>

#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/pattern.h"
#include "core/tokenizer/utf8.h"

namespace moelab::tok {
namespace {

// Calls fn(piece, out) for every text piece; added-token pieces are copied as is.
template <typename Fn>
void split_each(std::vector<Piece>& pieces, Fn&& fn) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    if (p.is_token()) out.push_back(std::move(p));
    else fn(p, out);
  }
  pieces = std::move(out);
}

// Pattern::find_matches for a per-character predicate (Rust's `impl Pattern for Fn(char)`).
template <typename Pred>
std::vector<Segment> char_matches(const std::string& s, Pred&& pred) {
  if (s.empty()) return {{0, 0, false}};
  std::vector<Segment> out;
  size_t last = 0, pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    int32_t cp = decode_utf8(s, pos);
    if (pred(cp)) {
      if (last < start) out.push_back({last, start, false});
      out.push_back({start, pos, true});
      last = pos;
    }
  }
  if (pos > last) out.push_back({last, pos, false});
  return out;
}

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    static const Pattern gpt2 = Pattern::regex(kGpt2Regex);
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      if (add_prefix_space_ && !p.text.empty() && p.text[0] != ' ') p.text.insert(0, " ");
      size_t first = out.size();
      if (use_regex_) {
        push_sub_pieces(p, apply_split_behavior(gpt2.find_matches(p.text), SplitBehavior::Isolated), out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
      for (size_t i = first; i < out.size(); ++i) out[i].text = bytes_to_unicode(out[i].text);
    });
  }

 private:
  bool add_prefix_space_, use_regex_;
};

class Split : public PreTokenizer {
 public:
  Split(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      auto segments = pattern_.find_matches(p.text);
      if (invert_)
        for (auto& s : segments) s.is_match = !s.is_match;
      push_sub_pieces(p, apply_split_behavior(segments, behavior_), out);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

enum class PrependScheme { Always, First, Never };

class Metaspace : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split),
        delimiter_(Pattern::literal(replacement_)) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      std::string text;
      text.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') text += replacement_;
        else text += c;
      }
      bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      // Like NormalizedString::prepend, nothing is prepended to an empty piece.
      if (!text.empty() && !starts &&
          (scheme_ == PrependScheme::Always || (scheme_ == PrependScheme::First && p.at_origin)))
        text.insert(0, replacement_);
      p.text = std::move(text);
      if (split_) {
        push_sub_pieces(p, apply_split_behavior(delimiter_.find_matches(p.text), SplitBehavior::MergedWithNext), out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Pattern delimiter_;
};

class Digits : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_each(pieces, [&](Piece& p, std::vector<Piece>& out) {
      auto segments = char_matches(p.text, is_numeric);
      push_sub_pieces(p, apply_split_behavior(segments, individual_ ? SplitBehavior::Isolated
                                                                    : SplitBehavior::Contiguous),
                      out);
    });
  }

 private:
  bool individual_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

PrependScheme metaspace_scheme(const JsonField& j) {
  auto scheme = j.find("prepend_scheme");
  auto legacy = j.find("add_prefix_space");
  PrependScheme out = PrependScheme::Always;
  if (scheme) {
    std::string s = scheme->str();
    if (s == "always") out = PrependScheme::Always;
    else if (s == "first") out = PrependScheme::First;
    else if (s == "never") out = PrependScheme::Never;
    else scheme->fail(quote_str(s) + " is not one of \"always\", \"first\", \"never\"");
  }
  if (legacy && !legacy->boolean()) {
    if (scheme && out != PrependScheme::Never)
      legacy->fail("is false but prepend_scheme is not \"never\"");
    out = PrependScheme::Never;
  }
  return out;
}

}  // namespace

SplitBehavior parse_split_behavior(const JsonField& j) {
  std::string s = j.str();
  if (s == "Removed") return SplitBehavior::Removed;
  if (s == "Isolated") return SplitBehavior::Isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (s == "Contiguous") return SplitBehavior::Contiguous;
  j.fail(quote_str(s) +
         " is not supported (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonField& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  if (type == "ByteLevel")
    return std::make_unique<ByteLevel>(j.bool_or("add_prefix_space", true), j.bool_or("use_regex", true));
  if (type == "Split")
    return std::make_unique<Split>(make_pattern(j.at("pattern")), parse_split_behavior(j.at("behavior")),
                                   j.bool_or("invert", false));
  if (type == "Metaspace")
    return std::make_unique<Metaspace>(j.at("replacement").single_char(), metaspace_scheme(j),
                                       j.bool_or("split", true));
  if (type == "Digits") return std::make_unique<Digits>(j.bool_or("individual_digits", false));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& item : j.at("pretokenizers").items()) {
      auto p = make_pre_tokenizer(item);
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  j.unsupported_type(type, "ByteLevel, Split, Metaspace, Sequence, Digits");
}

}  // namespace moelab::tok
