// Options several commands share, each defined once: the allowed values, the checks and
// the messages are the same wherever the option appears (as ModelOptions is for the model
// directory, dtype and device; LayerwiseArgs for layer-by-layer runs).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "runner/jobs/data/calibration_data.h"

namespace moelab::cli {

// --out (help says what is written) and --overwrite ("replace --out if it exists").
void add_output_options(CLI::App* cmd, std::string* out, bool* overwrite, const std::string& out_help,
                        bool required = false);
// InputError(path, "output already exists (pass --overwrite to replace it)") when `path` is
// given, exists and --overwrite was not; nothing is read or written before this check.
void refuse_existing_output(const std::string& path, bool overwrite);

// --comm: the communicator under mpirun, one of auto (MPI when launched by mpirun), mpi,
// nccl (GPU tensors), local.
CLI::Option* add_comm_option(CLI::App* cmd, std::string* comm,
                             const std::string& help = "communicator under mpirun: auto, mpi, nccl, local");

// --batch-size: a positive count (sequences per forward pass unless the help says otherwise).
CLI::Option* add_batch_size_option(CLI::App* cmd, int64_t* batch_size,
                                   const std::string& help = "sequences per forward pass");

// The calibration data: --data (repeatable), --seq-len, --num-samples, --seed and
// --text-field into `data`; `for_whom` prefixes each help line ("iterative: " where only
// one mode of the command reads data). --data is required when `required`.
void add_calibration_data_options(CLI::App* cmd, jobs::CalibrationSpec* data, const std::string& for_whom = "",
                                  bool required = false);

}  // namespace moelab::cli
