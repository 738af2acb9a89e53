#include "runner/cli/common_options.h"

#include <filesystem>

#include "core/common/error.h"

namespace moelab::cli {

void add_output_options(CLI::App* cmd, std::string* out, bool* overwrite, const std::string& out_help, bool required) {
  CLI::Option* o = cmd->add_option("--out", *out, out_help);
  if (required) o->required();
  cmd->add_flag("--overwrite", *overwrite, "replace --out if it exists");
}

void refuse_existing_output(const std::string& path, bool overwrite) {
  if (!path.empty() && std::filesystem::exists(path) && !overwrite)
    throw InputError(path, "output already exists (pass --overwrite to replace it)");
}

CLI::Option* add_comm_option(CLI::App* cmd, std::string* comm, const std::string& help) {
  return cmd->add_option("--comm", *comm, help)->check(CLI::IsMember({"auto", "local", "mpi", "nccl"}));
}

CLI::Option* add_batch_size_option(CLI::App* cmd, int64_t* batch_size, const std::string& help) {
  return cmd->add_option("--batch-size", *batch_size, help)->check(CLI::PositiveNumber);
}

void add_calibration_data_options(CLI::App* cmd, jobs::CalibrationSpec* data, const std::string& for_whom,
                                  bool required) {
  auto* files = cmd->add_option("--data", data->files, for_whom + "calibration files (.txt, .jsonl, .json token ids); repeatable");
  if (required) files->required();
  cmd->add_option("--seq-len", data->seq_len, for_whom + "tokens per calibration sequence")->check(CLI::PositiveNumber);
  cmd->add_option("--num-samples", data->num_samples, for_whom + "calibration sequences to draw (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", data->seed, for_whom + "seed for drawing the sequences");
  cmd->add_option("--text-field", data->text_field, for_whom + "JSONL field holding the text");
}

}  // namespace moelab::cli
