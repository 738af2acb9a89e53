#include "runner/cli/common_options.h"
#include "runner/cli/training_options.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/log.h"
#include "runner/cli/model_options.h"
#include "runner/jobs/calibrate/stop_signal.h"
#include "runner/jobs/eval/task_format.h"

namespace moelab::cli {

void TrainingArgs::add_to(CLI::App* cmd, int64_t min_steps) {
  cmd->add_option("--data", data.files, "text, JSONL (--text-field) or token-id files (next-token loss)");
  cmd->add_option("--text-field", data.text_field, "JSONL field holding the text");
  cmd->add_option("--sft", sft, "JSONL of prompt/answer pairs, or a multiple-choice task file (its contexts and right answers); loss on answers only");
  cmd->add_option("--prompt-field", prompt_field, "SFT prompt field");
  cmd->add_option("--answer-field", answer_field, "SFT answer field");
  cmd->add_option("--seq-len", data.seq_len, "tokens per sequence (text windows; SFT examples are cut to it)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", opts.steps, min_steps > 0 ? "optimizer steps" : "optimizer steps (0: save the init only)")
      ->check(CLI::Range(min_steps, int64_t(1) << 40));
  add_batch_size_option(cmd, &opts.batch_size, "examples per optimizer step (over all ranks)");
  cmd->add_option("--micro-batch", opts.micro_batch, "sequences per forward (default: --batch-size)");
  cmd->add_option("--lr", opts.lr, "peak learning rate");
  cmd->add_option("--min-lr", opts.min_lr, "learning rate at the end of the cosine");
  cmd->add_option("--warmup", opts.warmup, "steps of linear warmup");
  cmd->add_option("--weight-decay", opts.weight_decay, "AdamW decoupled weight decay");
  cmd->add_option("--clip", opts.clip, "global gradient-norm clip (0: none)");
  cmd->add_option("--seed", opts.seed, "seed of the data order");
  cmd->add_option("--checkpoint-dir", opts.checkpoint_dir, "where checkpoints go");
  cmd->add_option("--checkpoint-every", opts.checkpoint_every, "steps between checkpoints (0: at the end)");
  cmd->add_flag("--resume", opts.resume, "continue from --checkpoint-dir");
  cmd->add_flag("--auto-resume", opts.auto_resume,
                "continue from --checkpoint-dir if it holds a checkpoint, else start (for requeued batch jobs)");
  cmd->add_option("--log-file", opts.log_file, "loss curve as JSON lines");
  cmd->add_option("--save-grads", opts.grads_file, "diagnostics: write step 1's gradients (safetensors)");
  add_output_options(cmd, &out, &overwrite, "output model directory (written atomically)");
  cmd->add_option("--save-dtype", save_dtype, "auto, float32, bfloat16, float16")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}));
  add_comm_option(cmd, &comm, "communicator under mpirun: auto, mpi, nccl");
}

void TrainingArgs::check(const std::string& command, bool data_required) const {
  if (out.empty()) throw InputError("--out", "give the output model directory");
  refuse_existing_output(out, overwrite);
  const bool none = data.files.empty() && sft.empty(), both = !data.files.empty() && !sft.empty();
  if (both || (none && data_required)) throw InputError(command, "give --data (text) or --sft (prompt/answer JSONL)");
  if (opts.resume && !std::filesystem::exists(opts.checkpoint_dir + "/state.json"))
    throw InputError(opts.checkpoint_dir.empty() ? "--resume" : opts.checkpoint_dir + "/state.json",
                     "no checkpoint to resume from (give --checkpoint-dir of a run that saved one)");
}

namespace {

// Whether an --sft file is a multiple-choice task (configs/tasks/README.md): its first
// item has the format's choices field and no prompt field.
bool is_task_file(const std::string& path, const std::string& prompt_field, const std::string& choices_field) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) break;
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && !j.contains(prompt_field) && j.contains(choices_field);
}

}  // namespace

std::vector<jobs::TrainingExample> TrainingArgs::load_examples() const {
  if (!sft.empty()) {
    // A task file: train on each item's context and right answer, as the task scores them.
    if (const jobs::McFormat f = jobs::read_task_format(sft); is_task_file(sft, prompt_field, f.choices_field))
      return jobs::sft_examples_from_task(jobs::read_mc_task(sft, f), data.tokenizer, data.seq_len);
    return jobs::load_sft_examples(sft, data.tokenizer, prompt_field, answer_field, data.seq_len);
  }
  if (!data.files.empty()) return jobs::load_text_examples(data);
  return {};
}

void TrainingArgs::check_vocab(const std::vector<jobs::TrainingExample>& examples, int64_t vocab_size) const {
  for (const auto& ex : examples)
    for (int64_t id : ex.ids)
      if (id >= vocab_size)
        throw InputError(sft.empty() ? data.files[0] : sft, "token id " + std::to_string(id) +
                                                                " is outside the model's vocabulary (vocab_size " +
                                                                std::to_string(vocab_size) + ")");
}

models::SaveOptions TrainingArgs::save_options() const {
  models::SaveOptions so;
  so.overwrite = overwrite;
  if (save_dtype != "auto") so.dtype = parse_dtype(save_dtype);
  return so;
}

void TrainingArgs::train_and_write(models::MoeModel& m, cluster::Communicator& comm,
                                   const std::vector<jobs::TrainingExample>& examples,
                                   const std::function<void(const models::MoeModel&)>& write) const {
  if (opts.steps > 0) {
    try {
      jobs::finetune(m, comm, examples, opts);
    } catch (const jobs::TrainingInterrupted& e) {
      // SIGUSR1 (a batch job near its time limit): the checkpoint is saved; exit 75
      // (EX_TEMPFAIL) so that the caller knows to run it again with --resume.
      spdlog::warn("{} in {}; run again with --resume (or --auto-resume) to continue", e.what(), opts.checkpoint_dir);
      comm.barrier();
      std::exit(jobs::kExitResumable);
    }
  }
  jobs::gather_experts_to_all(m, comm);
  if (comm.rank() == 0) {
    write(m);
    spdlog::info("wrote {}", out);
  }
  comm.barrier();
}

}  // namespace moelab::cli
