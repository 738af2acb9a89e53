// Reading a JSON artefact (plans, scores): the file is parsed and handed to `read`;
// any JSON error (missing key, wrong type) or non-integer key becomes one InputError
// naming the file and what it should have been.
#pragma once

#include <nlohmann/json.hpp>

#include <fstream>
#include <stdexcept>
#include <string>

#include "core/common/error.h"
#include "core/common/json_integer.h"

namespace moelab {

// The file parsed as JSON; InputError naming it ("cannot read the <what>", "the <what> is
// not valid JSON") otherwise. For readers that check fields themselves, naming each one.
inline nlohmann::json parse_json_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot read the " + what);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path, "the " + what + " is not valid JSON");
  }
}

template <typename Read>
auto read_json_file(const std::string& path, const std::string& what, Read&& read) {
  std::ifstream in(path);
  if (!in) throw InputError(path, "cannot read the " + what);
  try {
    return read(nlohmann::json::parse(in));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path, "malformed " + what + ": " + e.what());
  } catch (const JsonIntegerError& e) {
    throw InputError(path, "malformed " + what + ": " + e.what());
  } catch (const std::invalid_argument&) {
    throw InputError(path, "malformed " + what + ": a layer key is not an integer");
  } catch (const std::out_of_range&) {  // std::stoll of "99999999999999999999" (fuzzing)
    throw InputError(path, "malformed " + what + ": a layer key is out of range");
  }
}

}  // namespace moelab
