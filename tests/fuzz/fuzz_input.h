// Shared by every fuzz target: the parsers under test read files, so each input is
// written to one scratch file per process (a private directory, removed at exit) and
// the parser is called on its path. Any exception other than moelab::InputError
// escapes the target, and libFuzzer reports it as a crash.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace moelab::fuzz {

// Private scratch directory (mkdtemp), so that parallel fuzzers never share files.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "moelab-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    std::filesystem::path p(tmpl);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch_dir(), ec); });
    return p;
  }();
  return dir;
}

// Writes `data` to `<scratch>/<name>` (replacing it) and returns the path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) std::abort();  // the scratch disk, not the parser: stop loudly
  return path.string();
}

}  // namespace moelab::fuzz
