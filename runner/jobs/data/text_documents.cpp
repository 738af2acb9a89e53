#include "runner/jobs/data/text_documents.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "core/common/error.h"
#include "core/common/file_text.h"

namespace moelab::jobs {

std::vector<std::string> read_documents(const std::string& path, const std::string& field, const std::string& what) {
  std::string text = read_file_text(path, what);
  if (!has_suffix(path, ".jsonl")) return {std::move(text)};
  std::vector<std::string> docs;
  std::istringstream in(text);
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw InputError(path, "line " + std::to_string(n) + " is not valid JSON");
    }
    if (!j.is_object() || !j.contains(field) || !j[field].is_string())
      throw InputError(path, "line " + std::to_string(n) + ": field \"" + field + "\" is missing or not a string");
    docs.push_back(j[field].get<std::string>());
  }
  return docs;
}

}  // namespace moelab::jobs
