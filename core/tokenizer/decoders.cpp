#include "core/tokenizer/decoders.h"

#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/pattern.h"
#include "core/tokenizer/utf8.h"

namespace moelab::tok {
namespace {

const char* const kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Maps byte-level characters back to bytes over the whole sequence, then decodes
// the bytes lossily (invalid UTF-8 becomes U+FFFD).
class ByteLevel : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens)
      if (!unicode_to_bytes(t, bytes)) bytes += t;
    tokens.assign(1, utf8_lossy(bytes));
  }
};

// Runs of "<0xXX>" tokens become the text of their bytes, or one U+FFFD per byte
// if the run is not valid UTF-8.
class ByteFallback : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (find_invalid_utf8(run) == std::string::npos) {
        out.push_back(run);
      } else {
        for (size_t i = 0; i < run_len; ++i) out.emplace_back(kReplacementChar);
      }
      run.clear();
      run_len = 0;
    };
    for (auto& t : tokens) {
      int byte = parse_byte_token(t);
      if (byte >= 0) {
        run += static_cast<char>(byte);
        ++run_len;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }

 private:
  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  // "<0xXX>" -> the byte, else -1 (u8::from_str_radix also accepts a '+' sign).
  static int parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
    if (t[3] == '+') return hex(t[4]);
    int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
  }
};

class Fuse : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of `content` per token.
class Strip : public Decoder {
 public:
  Strip(std::string content, int64_t start, int64_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      size_t begin = 0, end = t.size();
      for (int64_t i = 0; i < start_ && t.compare(begin, content_.size(), content_) == 0 &&
                          begin + content_.size() <= end;
           ++i)
        begin += content_.size();
      for (int64_t i = 0; i < stop_ && end >= begin + content_.size() &&
                          t.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i)
        end -= content_.size();
      t = t.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  int64_t start_, stop_;
};

class Replace : public Decoder {
 public:
  Replace(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::string out;
      for (const auto& seg : pattern_.find_matches(t)) {
        if (seg.is_match) out += content_;
        else out.append(t, seg.start, seg.end - seg.start);
      }
      t = std::move(out);
    }
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// The replacement character becomes a space, except in the first token when a
// prefix was prepended at encoding time (there it is dropped).
class Metaspace : public Decoder {
 public:
  Metaspace(std::string replacement, bool drop_in_first)
      : replacement_(std::move(replacement)), drop_in_first_(drop_in_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& t = tokens[i];
      std::string out;
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement_.size(), replacement_) == 0) {
          if (!(i == 0 && drop_in_first_)) out += ' ';
          pos += replacement_.size();
        } else {
          size_t n = utf8_len(static_cast<unsigned char>(t[pos]));
          out.append(t, pos, n);
          pos += n;
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool drop_in_first_;
};

class Sequence : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

bool metaspace_prepends(const JsonField& j) {
  std::string scheme = j.str_or("prepend_scheme", "always");
  if (scheme != "always" && scheme != "first" && scheme != "never")
    j.at("prepend_scheme").fail(quote_str(scheme) + " is not one of \"always\", \"first\", \"never\"");
  if (!j.bool_or("add_prefix_space", true)) scheme = "never";
  return scheme != "never";
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const JsonField& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    int64_t start = j.at("start").integer(), stop = j.at("stop").integer();
    if (start < 0 || stop < 0) j.fail("start and stop must not be negative");
    return std::make_unique<Strip>(j.at("content").single_char(), start, stop);
  }
  if (type == "Replace")
    return std::make_unique<Replace>(make_pattern(j.at("pattern")), j.at("content").str());
  if (type == "Metaspace")
    return std::make_unique<Metaspace>(j.at("replacement").single_char(), metaspace_prepends(j));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const auto& item : j.at("decoders").items()) {
      auto d = make_decoder(item);
      if (d) parts.push_back(std::move(d));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  j.unsupported_type(type, "ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence");
}

}  // namespace moelab::tok
