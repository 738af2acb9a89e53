#include "core/common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace moelab::log {
namespace {
int g_rank = 0;
}

void init(int rank, int world_size, const std::string& level) {
  g_rank = rank;
  auto logger = spdlog::stderr_color_mt("moelab-" + std::to_string(rank));
  std::string pattern = "[%H:%M:%S.%e] [%^%l%$] ";
  if (world_size > 1) pattern += "[rank " + std::to_string(rank) + "] ";
  logger->set_pattern(pattern + "%v");
  auto lvl = spdlog::level::from_str(level);
  // Non-zero ranks stay quiet unless something goes wrong or the user asked for debug.
  if (rank != 0 && lvl == spdlog::level::info) lvl = spdlog::level::warn;
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

int rank() { return g_rank; }

}  // namespace moelab::log
