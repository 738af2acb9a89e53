#include "core/common/file_text.h"

#include <fstream>
#include <sstream>

#include "core/common/error.h"

namespace moelab {

std::string read_file_text(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot open " + what);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace moelab
