#include "core/tokenizer/json_fields.h"

#include "core/common/error.h"
#include "core/tokenizer/utf8.h"

namespace moelab::tok {
namespace {

const char* type_name(const nlohmann::json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

}  // namespace

std::string quote_str(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  size_t pos = 0, chars = 0;
  while (pos < s.size()) {
    if (++chars > 200) {
      out += "...";
      break;
    }
    size_t start = pos;
    int32_t cp = decode_utf8(s, pos);
    auto c = static_cast<unsigned char>(s[start]);
    if (cp < 0 || cp < 0x20 || cp == 0x7f) {  // invalid UTF-8 or a control character
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else if (cp == '"' || cp == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else {
      out.append(s, start, pos - start);
    }
  }
  out += '"';
  return out;
}

void JsonField::fail(const std::string& problem) const {
  throw InputError(*file_, (path_.empty() ? std::string("top level") : path_) + " " + problem);
}

void JsonField::unsupported_type(const std::string& type, const std::string& supported) const {
  throw InputError(*file_, join_path(path_, "type") + " " + quote_str(type) +
                               " is not supported (supported: " + supported + ")");
}

JsonField JsonField::at(const std::string& key) const {
  if (!v_->is_object()) fail("must be an object, not " + std::string(type_name(*v_)));
  auto it = v_->find(key);
  if (it == v_->end()) throw InputError(*file_, join_path(path_, key) + " is missing");
  return JsonField(*it, join_path(path_, key), *file_);
}

std::optional<JsonField> JsonField::find(const std::string& key) const {
  if (!v_->is_object()) fail("must be an object, not " + std::string(type_name(*v_)));
  auto it = v_->find(key);
  if (it == v_->end() || it->is_null()) return std::nullopt;
  return JsonField(*it, join_path(path_, key), *file_);
}

JsonField JsonField::at(size_t i) const {
  if (!v_->is_array()) fail("must be an array, not " + std::string(type_name(*v_)));
  if (i >= v_->size()) fail("has no element " + std::to_string(i));
  return JsonField((*v_)[i], path_ + "[" + std::to_string(i) + "]", *file_);
}

std::vector<JsonField> JsonField::items() const {
  if (!v_->is_array()) fail("must be an array, not " + std::string(type_name(*v_)));
  std::vector<JsonField> out;
  out.reserve(v_->size());
  for (size_t i = 0; i < v_->size(); ++i)
    out.emplace_back((*v_)[i], path_ + "[" + std::to_string(i) + "]", *file_);
  return out;
}

std::string JsonField::str() const {
  if (!v_->is_string()) fail("must be a string, not " + std::string(type_name(*v_)));
  return v_->get<std::string>();
}

bool JsonField::boolean() const {
  if (!v_->is_boolean()) fail("must be true or false, not " + std::string(type_name(*v_)));
  return v_->get<bool>();
}

int64_t JsonField::integer() const {
  if (v_->is_number_unsigned()) {
    auto u = v_->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) fail("is too large");
    return static_cast<int64_t>(u);
  }
  if (!v_->is_number_integer()) fail("must be an integer, not " + std::string(type_name(*v_)));
  return v_->get<int64_t>();
}

std::string JsonField::single_char() const {
  std::string s = str();
  size_t pos = 0;
  if (s.empty() || decode_utf8(s, pos) < 0 || pos != s.size())
    fail("must be a single character, not " + quote_str(s));
  return s;
}

std::string JsonField::str_or(const std::string& key, const std::string& dflt) const {
  auto f = find(key);
  return f ? f->str() : dflt;
}

bool JsonField::bool_or(const std::string& key, bool dflt) const {
  auto f = find(key);
  return f ? f->boolean() : dflt;
}

int64_t JsonField::int_or(const std::string& key, int64_t dflt) const {
  auto f = find(key);
  return f ? f->integer() : dflt;
}

std::string JsonField::type() const { return at("type").str(); }

}  // namespace moelab::tok
