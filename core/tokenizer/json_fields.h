// Reading tokenizer.json fields with errors that name the file and the field.
//
// A JsonField is a JSON value plus its path inside the file ("pre_tokenizer.
// pretokenizers[0].pattern"). Every accessor checks the JSON type and throws
// moelab::InputError(file, "<path> ...") on a mismatch, so no malformed file can
// reach an unchecked nlohmann access (which would throw a less helpful error).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moelab::tok {

class JsonField {
 public:
  JsonField(const nlohmann::json& value, std::string path, const std::string& file)
      : v_(&value), path_(std::move(path)), file_(&file) {}

  const nlohmann::json& json() const { return *v_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }

  bool is_null() const { return v_->is_null(); }
  bool is_object() const { return v_->is_object(); }
  bool is_array() const { return v_->is_array(); }
  bool is_string() const { return v_->is_string(); }

  // Member `key` of an object; throws if this is not an object or the key is missing.
  JsonField at(const std::string& key) const;
  // Member `key`, or nullopt if it is missing or null.
  std::optional<JsonField> find(const std::string& key) const;
  // Element i of an array.
  JsonField at(size_t i) const;
  // The elements of an array (throws if this is not an array).
  std::vector<JsonField> items() const;

  std::string str() const;
  bool boolean() const;
  int64_t integer() const;
  // A string holding exactly one Unicode character (e.g. Metaspace "replacement").
  std::string single_char() const;

  // Optional members with a default when missing or null.
  std::string str_or(const std::string& key, const std::string& dflt) const;
  bool bool_or(const std::string& key, bool dflt) const;
  int64_t int_or(const std::string& key, int64_t dflt) const;

  // The "type" member of a component object (normalizer, pre_tokenizer, ...).
  std::string type() const;

  // Throws InputError(file, "<path> <problem>").
  [[noreturn]] void fail(const std::string& problem) const;
  // Throws InputError(file, "<path>.type \"X\" is not supported (supported: ...)").
  [[noreturn]] void unsupported_type(const std::string& type, const std::string& supported) const;

 private:
  const nlohmann::json* v_;
  std::string path_;
  const std::string* file_;
};

// `s` as a double-quoted string with control characters escaped, for messages.
std::string quote_str(const std::string& s);

}  // namespace moelab::tok
