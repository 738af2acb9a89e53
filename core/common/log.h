// Logging through spdlog. Messages carry a "[rank N]" prefix; only rank 0 logs at
// info level by default (other ranks log warnings and errors), so a multi-rank run
// reads like a single-process one.
//
// This header does not include torch (torch ships its own fmt); targets that include
// both go through moelab_link_torch() in CMake, which puts Debian's fmt first.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace moelab::log {

// Sets the rank prefix and the level ("trace".."off"). Call once at start-up.
void init(int rank, int world_size, const std::string& level = "info");

int rank();

}  // namespace moelab::log
