#include "core/hf/json_fields.h"

#include "core/common/error.h"

namespace moelab::hf {

void JsonFields::fail(const std::string& key, const std::string& problem) const {
  throw InputError(file_, "field \"" + key + "\" " + problem);
}

int64_t JsonFields::positive_int(const std::string& key) const {
  if (!has(key)) fail(key, "is missing");
  const auto& v = obj_[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0) fail(key, "must be a positive integer (got " + v.dump() + ")");
  return v.get<int64_t>();
}

std::optional<int64_t> JsonFields::opt_int(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const auto& v = obj_[key];
  if (!v.is_number_integer()) fail(key, "must be an integer (got " + v.dump() + ")");
  return v.get<int64_t>();
}

double JsonFields::number(const std::string& key, double fallback) const {
  return opt_number(key).value_or(fallback);
}

std::optional<double> JsonFields::opt_number(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  const auto& v = obj_[key];
  if (!v.is_number()) fail(key, "must be a number (got " + v.dump() + ")");
  return v.get<double>();
}

bool JsonFields::boolean(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = obj_[key];
  if (!v.is_boolean()) fail(key, "must be true or false (got " + v.dump() + ")");
  return v.get<bool>();
}

std::string JsonFields::string(const std::string& key, const std::string& fallback) const {
  if (!has(key)) return fallback;
  const auto& v = obj_[key];
  if (!v.is_string()) fail(key, "must be a string (got " + v.dump() + ")");
  return v.get<std::string>();
}

}  // namespace moelab::hf
