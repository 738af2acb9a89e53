// Options shared by the commands that load a model: the model directory, the
// compute dtype and the device.
#pragma once

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <string>

#include "models/moe_model.h"

namespace moelab::cli {

struct ModelOptions {
  std::string model_dir;
  std::string dtype = "auto";  // auto: float32 on CPU, bfloat16 on CUDA
  std::string device = "cpu";

  void add_to(CLI::App* cmd);
  // --dtype and --device only (commands that build a model instead of reading one).
  void add_compute_options(CLI::App* cmd);
  models::LoadOptions load_options() const;
};

at::ScalarType parse_dtype(const std::string& s);

}  // namespace moelab::cli
