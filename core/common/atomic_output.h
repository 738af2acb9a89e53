// "Nothing written half": every output goes to a temporary name beside its final
// name and is renamed into place only once complete. A crash leaves at most a
// ".tmp-*" entry, never a file or directory that looks finished.
#pragma once

#include <filesystem>
#include <string>

namespace moelab {

// A directory being built at `<final>.tmp-<pid>`; commit() renames it to `final`.
// Destroying an uncommitted AtomicDir removes the temporary directory.
class AtomicDir {
 public:
  // Throws InputError if `final` exists and `overwrite` is false.
  AtomicDir(std::filesystem::path final, bool overwrite);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::filesystem::path& path() const { return tmp_; }
  void commit();

 private:
  std::filesystem::path final_, tmp_;
  bool overwrite_ = false, committed_ = false;
};

// A file being written at `<final>.tmp-<pid>`: write() appends, commit() fsyncs and
// renames it to `final`. Destroying an uncommitted AtomicFile deletes the temporary.
// Errors (disk full, ...) throw InputError naming the file.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path final);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void commit();

 private:
  std::filesystem::path final_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Writes `bytes` to `path` through an AtomicFile.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

}  // namespace moelab
