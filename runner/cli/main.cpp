// The moelab command-line tool: one subcommand per job, each in its own cmd_*.cpp.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "cluster/communicator.h"
#include "cluster/launcher.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "runner/cli/commands.h"
#include "runner/cli/yaml_config.h"

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "0.1.0"
#endif

int main(int argc, char** argv) {
  CLI::App app{
      "moelab: which experts of a Mixture-of-Experts model can you remove, and what does it cost?\n\n"
      "Loads Hugging Face MoE checkpoints (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2, DeepSeek-V3,\n"
      "gpt-oss, GLM-4.5, GLM-4.7-Flash, MiniMax-M2, ERNIE-4.5, Phi-3.5-MoE, Llama-4, Qwen3-Next,\n"
      "Qwen3.5-MoE), runs them as transformers does (expert parallel over MPI ranks), collects\n"
      "calibration statistics, scores experts with many criteria, removes, merges or compresses experts,\n"
      "fine-tunes, evaluates, generates, and runs whole grids of such jobs (sweeps) here or on Slurm.\n"
      "Every subcommand has its own --help.\n\n"
      "Examples (on the shipped default model, from the repository's root):\n"
      "  moelab inspect models/debian-moe\n"
      "  moelab forward models/debian-moe --text 'The quick brown fox' --top 5\n"
      "  moelab prune models/debian-moe --drop 0:1,5 --drop 1:2 --out pruned/\n"
      "  moelab tokenize --tokenizer models/debian-moe --input README.md --output ids.json\n"
      "  moelab --ranks 2 forward models/debian-moe --ids-json ids.json --out logits.safetensors\n"
      "  moelab sweep run configs/quickstart.yaml --results results/quickstart && moelab report results/quickstart\n\n"
      "Options can come from a YAML file (--config FILE) and from key=value overrides:\n"
      "  moelab prune --config configs/options/prune.yaml out=pruned/",
      "moelab"};
  app.set_version_flag("--version", MOELAB_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  auto yaml_config = std::make_shared<moelab::cli::YamlConfig>();
  yaml_config->root_options = {"log-level"};
  app.config_formatter(yaml_config);
  app.set_config("--config", "", "YAML file with option values (command-line values win)");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  app.parse_complete_callback([&] {
    // Under mpirun every log line carries its rank; rank 0 speaks for the job.
    if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK")) {
      auto comm = moelab::cluster::world("auto");
      moelab::log::init(comm->rank(), comm->size(), log_level);
    } else {
      moelab::log::init(0, 1, log_level);
    }
  });

  moelab::cli::add_inspect_command(app);
  moelab::cli::add_forward_command(app);
  moelab::cli::add_prune_command(app);
  moelab::cli::add_tokenize_command(app);
  moelab::cli::add_calibrate_command(app);
  moelab::cli::add_score_command(app);
  moelab::cli::add_eval_command(app);
  moelab::cli::add_generate_command(app);
  moelab::cli::add_lm_eval_command(app);
  moelab::cli::add_merge_command(app);
  moelab::cli::add_set_skipping_command(app);
  moelab::cli::add_compress_command(app);
  moelab::cli::add_finetune_command(app);
  moelab::cli::add_train_command(app);
  moelab::cli::add_sweep_command(app);
  moelab::cli::add_submit_command(app);
  moelab::cli::add_status_command(app);
  moelab::cli::add_report_command(app);
  moelab::cli::add_plan_resources_command(app);

  moelab::cluster::prefer_native_pmix_security();
  std::vector<std::string> args(argv + 1, argv + argc);
  int ranks = 1;  // handled before parsing (relaunch under mpirun); listed for --help
  app.add_option("--ranks", ranks,
                 "run on P MPI ranks: relaunches as `mpirun -np P moelab ...` (experts split over ranks, "
                 "batches over ranks, rank 0 writes outputs)");
  // plan-resources takes --ranks as the rank count it plans for, lm-eval as the ranks of the
  // moelab processes its backend starts; neither relaunches.
  std::string command;
  for (const auto& a : args)
    if (!app.get_subcommands([&](const CLI::App* s) { return s->get_name() == a; }).empty()) {
      command = a;
      break;
    }
  try {
    args = moelab::cli::rewrite_overrides(args);
    if (command != "plan-resources" && command != "lm-eval")
      args = moelab::cluster::relaunch_under_mpirun_if_asked(args);
  } catch (const moelab::InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  for (const auto& a : args) {
    auto subs = app.get_subcommands([&](const CLI::App* s) { return s->get_name() == a; });
    if (!subs.empty()) {
      yaml_config->command = a;
      break;
    }
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other error (CLI11 would add a second "Run with --help").
    std::string msg = e.what();
    if (msg.empty()) msg = "bad command line (see moelab --help)";
    std::cerr << "error: " << msg.substr(0, msg.find('\n')) << "\n";
    return 2;
  } catch (const moelab::InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    // Library errors (torch, yaml-cpp, filesystem): keep the first line only.
    std::string msg = e.what();
    std::cerr << "error: " << msg.substr(0, msg.find('\n')) << "\n";
    return 1;
  }
  return 0;
}
