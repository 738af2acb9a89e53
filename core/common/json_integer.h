// Reading integers out of JSON we did not write ourselves (plans, records, states).
//
// nlohmann's get<int64_t>() on a floating-point value is a bare static_cast, which is
// undefined behaviour for values outside int64_t (fuzzing found 4e126 in a plan's
// num_experts). These accept JSON integers only and throw JsonIntegerError, naming the
// field, for anything else; read_json_file turns that into one InputError line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace moelab {

class JsonIntegerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// v must be a JSON integer that fits int64_t (an unsigned one above INT64_MAX does not).
inline int64_t json_integer(const nlohmann::json& v, const std::string& field) {
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
    throw JsonIntegerError("field \"" + field + "\" is out of range (got " + v.dump() + ")");
  if (!v.is_number_integer()) throw JsonIntegerError("field \"" + field + "\" must be an integer (got " + v.dump() + ")");
  return v.get<int64_t>();
}

// obj[key] when present and not null, else fallback.
inline int64_t json_integer_or(const nlohmann::json& obj, const std::string& key, int64_t fallback) {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) return fallback;
  return json_integer(obj[key], key);
}

inline std::vector<int64_t> json_integer_list(const nlohmann::json& v, const std::string& field) {
  if (!v.is_array()) throw JsonIntegerError("field \"" + field + "\" must be a list of integers (got " + v.dump() + ")");
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (const auto& x : v) out.push_back(json_integer(x, field));
  return out;
}

}  // namespace moelab
