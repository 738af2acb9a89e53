// YAML run configs for every subcommand, read through CLI11's config mechanism,
// and `key=value` overrides on the command line.
//
//   # run.yaml: top-level keys are options of the command, or sections per command
//   model: models/tiny
//   dtype: float32
//   prune:
//     drop: ["0:1,5", "1:2"]
//
//   moelab prune --config run.yaml out=pruned dtype=bfloat16
//
// Precedence: command-line options and key=value overrides > the YAML file > defaults.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace moelab::cli {

class YamlConfig : public CLI::Config {
 public:
  // Top-level keys that are not options of the main app go to this subcommand
  // (the one being run), so a YAML file can be written per job without sections.
  std::string command;
  std::vector<std::string> root_options;

  std::string to_config(const CLI::App* app, bool default_also, bool write_description,
                        std::string prefix) const override;
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override;
};

// Rewrites bare `key=value` arguments (key: letters, digits, '_', '-', '.') into
// `--key=value` (underscores become dashes; a leading "<command>." is dropped).
std::vector<std::string> rewrite_overrides(const std::vector<std::string>& args);

}  // namespace moelab::cli
