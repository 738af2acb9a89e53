// Options shared by the commands that load a model: the model directory, the
// compute dtype and the device.
#pragma once

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <string>

#include "core/models/moe_model.h"
#include "runner/jobs/memory/memory_guard.h"

namespace moelab::cli {

struct ModelOptions {
  std::string model_dir;
  std::string dtype = "auto";  // auto: float32 on CPU, bfloat16 on CUDA
  std::string device = "cpu";
  bool memory_check = true;  // --no-memory-check clears it

  void add_to(CLI::App* cmd);
  // --dtype and --device only (commands that build a model instead of reading one).
  void add_compute_options(CLI::App* cmd);
  models::LoadOptions load_options() const;
  // Before a whole model is loaded on the CPU: refuses in one line when its planned
  // peak (runner/jobs/memory/memory_guard.h) exceeds what the process may use. Fills the query's
  // dtype and ranks; `check.query` otherwise describes the run (default: holding the
  // model and one token's forward).
  void check_memory(jobs::MemoryCheck check, int ranks) const;
};

// The same for commands with options of their own (compress): model directory, dtype
// name ("auto" = float32), ranks.
void check_model_memory(const std::string& model_dir, const std::string& dtype, jobs::MemoryCheck check, int ranks);
// Adds --no-memory-check (clears *enabled).
void add_memory_check_flag(CLI::App* cmd, bool* enabled);

at::ScalarType parse_dtype(const std::string& s);

}  // namespace moelab::cli
