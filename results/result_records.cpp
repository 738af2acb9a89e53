#include "results/result_records.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/common/atomic_output.h"
#include "core/common/error.h"

namespace moelab::results {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path, "cannot open results file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Holds flock(LOCK_EX) on <path>.lock for its lifetime. A separate lock file,
// because the results file itself is replaced by rename while we hold the lock.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    const std::string lock = path + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
    if (fd_ < 0) throw InputError(lock, std::string("cannot create lock file: ") + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      // Some network file systems refuse flock: go on unlocked rather than fail.
      break;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// The non-blank lines of `text` with their 1-based line numbers.
std::vector<std::pair<int64_t, std::string>> lines_of(const std::string& text) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::istringstream in(text);
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n)
    if (line.find_first_not_of(" \t\r") != std::string::npos) out.emplace_back(n, line);
  return out;
}

nlohmann::json parse_line(const std::string& path, int64_t n, const std::string& line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    throw InputError(path, "line " + std::to_string(n) + " is not valid JSON");
  }
  if (!j.is_object()) throw InputError(path, "line " + std::to_string(n) + " is not a JSON object");
  return j;
}

}  // namespace

nlohmann::json to_json(const ResultRecord& r) {
  return {{"format", kResultFormatVersion},
          {"model", r.model},
          {"task", r.task},
          {"kind", to_string(r.kind)},
          {"metrics", r.metrics},
          {"n_items", r.n_items},
          {"n_tokens", r.n_tokens},
          {"settings", r.settings},
          {"details", r.details},
          {"moelab_version", r.moelab_version},
          {"world_size", r.world_size},
          {"timestamp", r.timestamp.empty() ? now_utc() : r.timestamp}};
}

ResultRecord record_from_json(const nlohmann::json& j, const std::string& source) {
  auto need = [&](const char* field, auto check, const char* what) -> const nlohmann::json& {
    if (!j.contains(field) || !check(j[field]))
      throw InputError(source, std::string("field \"") + field + "\" is missing or not " + what);
    return j[field];
  };
  auto is_str = [](const nlohmann::json& v) { return v.is_string(); };
  auto is_int = [](const nlohmann::json& v) { return v.is_number_integer(); };
  auto is_obj = [](const nlohmann::json& v) { return v.is_object(); };
  if (need("format", is_int, "an integer").get<int>() > kResultFormatVersion)
    throw InputError(source, "record format " + j["format"].dump() + " is newer than this moelab reads (" +
                                 std::to_string(kResultFormatVersion) + ")");
  ResultRecord r;
  r.model = need("model", is_str, "a string").get<std::string>();
  r.task = need("task", is_str, "a string").get<std::string>();
  const std::string kind = need("kind", is_str, "a string").get<std::string>();
  const auto known = parse_enum_word(kRecordKindWords, kind);
  if (!known) throw InputError(source, "field \"kind\": " + not_a_word_of(kRecordKindWords, kind));
  r.kind = *known;
  r.metrics = need("metrics", is_obj, "an object");
  r.n_items = need("n_items", is_int, "an integer").get<int64_t>();
  r.n_tokens = need("n_tokens", is_int, "an integer").get<int64_t>();
  r.settings = need("settings", is_obj, "an object");
  r.details = j.contains("details") && j["details"].is_object() ? j["details"] : nlohmann::json::object();
  r.moelab_version = need("moelab_version", is_str, "a string").get<std::string>();
  r.world_size = need("world_size", is_int, "an integer").get<int64_t>();
  r.timestamp = need("timestamp", is_str, "a string").get<std::string>();
  return r;
}

void append_records(const std::string& path, const std::vector<ResultRecord>& records) {
  FileLock lock(path);
  std::string text;
  if (std::filesystem::exists(path)) {
    text = read_text(path);
    // Refuse to extend a file that later readers could not read anyway.
    for (const auto& [n, line] : lines_of(text)) parse_line(path, n, line);
    if (!text.empty() && text.back() != '\n') text += '\n';
  }
  for (const auto& r : records) text += to_json(r).dump() + "\n";
  write_file_atomic(path, text);
}

std::vector<ResultRecord> read_records(const std::string& path) {
  std::vector<ResultRecord> out;
  for (const auto& [n, line] : lines_of(read_text(path)))
    out.push_back(record_from_json(parse_line(path, n, line), path + ": line " + std::to_string(n)));
  return out;
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace moelab::results
