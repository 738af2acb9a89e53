#include "core/common/atomic_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/common/error.h"

namespace fs = std::filesystem;

namespace moelab {
namespace {
std::string tmp_suffix() { return ".tmp-" + std::to_string(::getpid()); }

// "out/" names the folder "out": without this the temporary name would be "out/.tmp-<pid>",
// inside the output, and commit() would try to move the folder into itself (README
// commands spell outputs "--out pruned/").
fs::path without_trailing_separator(fs::path p) {
  while (!p.empty() && !p.has_filename() && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();
  return p;
}
}  // namespace

AtomicDir::AtomicDir(fs::path final, bool overwrite)
    : final_(without_trailing_separator(std::move(final))), overwrite_(overwrite) {
  if (fs::exists(final_) && !overwrite_)
    throw InputError(final_.string(), "output already exists (pass --overwrite to replace it)");
  tmp_ = final_;
  tmp_ += tmp_suffix();
  fs::remove_all(tmp_);
  fs::create_directories(tmp_);
}

AtomicDir::~AtomicDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void AtomicDir::commit() {
  if (fs::exists(final_)) {
    // Move the old output aside first so that a crash between the two renames still
    // leaves one complete directory under a recognisable name.
    fs::path old = final_;
    old += ".old" + tmp_suffix();
    fs::rename(final_, old);
    fs::rename(tmp_, final_);
    fs::remove_all(old);
  } else {
    fs::rename(tmp_, final_);
  }
  committed_ = true;
}

AtomicFile::AtomicFile(fs::path final) : final_(without_trailing_separator(std::move(final))) {
  tmp_ = final_;
  tmp_ += tmp_suffix();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0) throw InputError(tmp_.string(), std::string("cannot create: ") + std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw InputError(final_.string(), std::string("write failed: ") + std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    throw InputError(final_.string(), std::string("write failed: ") + std::strerror(errno));
  }
  fd_ = -1;
  fs::rename(tmp_, final_);
  committed_ = true;
}

void write_file_atomic(const fs::path& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace moelab
