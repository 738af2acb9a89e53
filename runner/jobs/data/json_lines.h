// JSON-lines input files (task items, lm-eval requests): one JSON object per non-blank line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <sstream>
#include <string>

#include "core/common/error.h"
#include "core/common/file_text.h"

namespace moelab::jobs {

// Calls fn(object, "path: line N", N) for every non-blank line of a JSON-lines file; a line
// that is not a JSON object is an InputError naming it. `what` names the file in errors
// when it cannot be read ("task file", "requests file").
template <typename Fn>
void for_each_json_line(const std::string& path, const std::string& what, Fn fn) {
  std::istringstream in(read_file_text(path, what));
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ": line " + std::to_string(n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw InputError(where, "not valid JSON");
    }
    if (!j.is_object()) throw InputError(where, "not a JSON object");
    fn(j, where, n);
  }
}

}  // namespace moelab::jobs
