// Typed access to JSON fields with errors that name the file and the field, e.g.
//   config.json: field "hidden_size" must be a positive integer (got "abc")
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace moelab::hf {

class JsonFields {
 public:
  JsonFields(const nlohmann::json& obj, std::string file) : obj_(obj), file_(std::move(file)) {}

  bool has(const std::string& key) const { return obj_.contains(key) && !obj_[key].is_null(); }
  int64_t positive_int(const std::string& key) const;
  std::optional<int64_t> opt_int(const std::string& key) const;
  double number(const std::string& key, double fallback) const;
  std::optional<double> opt_number(const std::string& key) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key, const std::string& fallback) const;
  [[noreturn]] void fail(const std::string& key, const std::string& problem) const;
  const std::string& file() const { return file_; }

 private:
  const nlohmann::json& obj_;
  std::string file_;
};

}  // namespace moelab::hf
