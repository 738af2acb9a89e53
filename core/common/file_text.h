// Whole-file reads with the one-line error every command gives.
#pragma once

#include <string>

namespace moelab {

// The file's bytes; InputError(path, "cannot open <what>") when it cannot be read.
std::string read_file_text(const std::string& path, const std::string& what);

bool has_suffix(const std::string& s, const std::string& suffix);

}  // namespace moelab
