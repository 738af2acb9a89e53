// Options and steps shared by the commands that run the training loop
// (jobs::finetune): `moelab finetune` (from a checkpoint) and `moelab train` (from
// random init). One registration, so that both commands take the same options.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/model_writer.h"
#include "core/models/moe_model.h"
#include "runner/jobs/data/training_data.h"
#include "runner/jobs/train/finetune.h"

namespace moelab::cli {

struct TrainingArgs {
  jobs::CalibrationSpec data;  // --data, --seq-len, --text-field; the command sets the tokenizer
  std::string sft, prompt_field = "prompt", answer_field = "answer";
  jobs::FinetuneOptions opts;  // --params is the finetune command's own option
  std::string out, comm = "auto", save_dtype = "auto";
  bool overwrite = false;

  // Data, schedule, checkpoint, output and communicator options. min_steps: the
  // smallest --steps accepted (train takes 0: write the initial weights).
  void add_to(CLI::App* cmd, int64_t min_steps = 1);
  // Checks that need no model, before anything is loaded: --out, --data xor --sft
  // (neither is fine unless data_required), --resume. `command` names the command.
  void check(const std::string& command, bool data_required) const;
  // The training examples (none when neither --data nor --sft is given).
  std::vector<jobs::TrainingExample> load_examples() const;
  // Throws InputError naming the data file for a token id >= vocab_size.
  void check_vocab(const std::vector<jobs::TrainingExample>& examples, int64_t vocab_size) const;
  models::SaveOptions save_options() const;
  // Trains `model` (not at all with --steps 0), gathers every expert on rank 0, and
  // rank 0 calls write(model); every rank returns once it is written.
  void train_and_write(models::MoeModel& model, cluster::Communicator& comm,
                       const std::vector<jobs::TrainingExample>& examples,
                       const std::function<void(const models::MoeModel&)>& write) const;
};

}  // namespace moelab::cli
