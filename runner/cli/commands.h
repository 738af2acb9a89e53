// One function per `moelab` subcommand; each adds its subcommand to the app and
// sets the callback. main.cpp calls them all. A command reports user errors by
// throwing moelab::InputError (printed as one line, exit status 2).
#pragma once

#include <CLI/CLI.hpp>

namespace moelab::cli {

void add_inspect_command(CLI::App& app);
void add_forward_command(CLI::App& app);
void add_prune_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_score_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_lm_eval_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_set_skipping_command(CLI::App& app);
void add_finetune_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_sweep_command(CLI::App& app);
void add_submit_command(CLI::App& app);
void add_status_command(CLI::App& app);
void add_compress_command(CLI::App& app);
void add_report_command(CLI::App& app);
void add_plan_resources_command(CLI::App& app);

}  // namespace moelab::cli
