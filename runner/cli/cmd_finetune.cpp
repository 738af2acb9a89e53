// moelab finetune: recovery fine-tuning of a (pruned) checkpoint in C++ (libtorch
// autograd), over ranks with expert + data parallelism; writes a Hugging Face model
// directory.
#include "cli/commands.h"
#include "cli/model_options.h"
#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "common/error.h"
#include "common/log.h"
#include "jobs/finetune.h"
#include "jobs/training_data.h"
#include "models/model_writer.h"

namespace moelab::cli {
namespace {

struct FinetuneArgs {
  ModelOptions model;
  jobs::CalibrationSpec data;
  std::string sft, prompt_field = "prompt", answer_field = "answer", out, comm = "auto", save_dtype = "auto";
  jobs::FinetuneOptions opts;
  bool overwrite = false;
};

void run_finetune(FinetuneArgs a) {
  auto comm = cluster::world(a.comm);
  if (a.out.empty()) throw InputError("--out", "give the output model directory");
  if (std::filesystem::exists(a.out) && !a.overwrite)
    throw InputError(a.out, "output already exists (pass --overwrite to replace it)");
  if (a.data.files.empty() == a.sft.empty()) throw InputError("moelab finetune", "give --data (text) or --sft (prompt/answer JSONL)");
  if (a.opts.resume && !std::filesystem::exists(a.opts.checkpoint_dir + "/state.json"))
    throw InputError(a.opts.checkpoint_dir.empty() ? "--resume" : a.opts.checkpoint_dir + "/state.json",
                     "no checkpoint to resume from (give --checkpoint-dir of a run that saved one)");
  if (a.data.tokenizer.empty()) a.data.tokenizer = a.model.model_dir;
  const auto examples = a.sft.empty() ? jobs::load_text_examples(a.data)
                                      : jobs::load_sft_examples(a.sft, a.data.tokenizer, a.prompt_field,
                                                                a.answer_field, a.data.seq_len);
  models::MoeModel m = comm->size() > 1
                           ? cluster::load_expert_parallel(a.model.model_dir, comm, a.model.load_options())
                           : models::load_model(a.model.model_dir, a.model.load_options());
  for (const auto& ex : examples)
    for (int64_t id : ex.ids)
      if (id >= m.config.vocab_size)
        throw InputError(a.sft.empty() ? a.data.files[0] : a.sft,
                         "token id " + std::to_string(id) + " is outside the model's vocabulary");
  if (a.opts.params == "compressed") (void)jobs::trainable_tensors(m, a.opts.params);  // checks the model before any log
  spdlog::info("fine-tuning {} ({} parameters) on {} examples: {} steps of {} examples, lr {:.3g}, {} rank(s)",
               a.model.model_dir, a.opts.params, examples.size(), a.opts.steps, a.opts.batch_size, a.opts.lr,
               comm->size());
  jobs::finetune(m, *comm, examples, a.opts);
  jobs::gather_experts_to_all(m, *comm);
  if (comm->rank() == 0) {
    models::SaveOptions so;
    so.overwrite = a.overwrite;
    if (a.save_dtype != "auto") so.dtype = parse_dtype(a.save_dtype);
    models::save_model(m, a.out, so);
    spdlog::info("wrote {}", a.out);
  }
  comm->barrier();
}

}  // namespace

void add_finetune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "finetune",
      "Fine-tune a checkpoint (e.g. after pruning) with the next-token loss and write a model directory.\n"
      "Data: --data text/JSONL/token-id files cut into --seq-len windows (every token a target), or --sft\n"
      "a JSONL of {\"prompt\": ..., \"answer\": ...} (loss on the answer's tokens only).\n"
      "Parameters: --params full | router | experts | compressed (the theta vectors of a model from\n"
      "moelab compress; full trains them too). AdamW (torch::optim) with --warmup steps of linear\n"
      "warmup then a cosine decay to --min-lr; --batch-size examples per step over all ranks, run in\n"
      "--micro-batch sequences per forward (gradient accumulation); --clip on the global gradient norm.\n"
      "Under mpirun (or --ranks P) experts are spread over ranks and micro-batches over ranks; the\n"
      "gradients equal one rank's. --checkpoint-dir/--checkpoint-every save weights and optimizer state;\n"
      "--resume continues a stopped run exactly. The loss curve goes to the log and to --log-file.\n\n"
      "Examples:\n"
      "  moelab finetune pruned/ --data c4.jsonl --seq-len 512 --steps 200 --lr 1e-5 --out tuned/\n"
      "  moelab --ranks 2 finetune pruned/ --sft task.jsonl --params router --steps 50 --out tuned/\n"
      "  moelab finetune pruned/ --data c4.jsonl --steps 1000 --checkpoint-dir ck/ --checkpoint-every 100 --resume --out tuned/");
  auto a = std::make_shared<FinetuneArgs>();
  a->model.add_to(cmd);
  cmd->add_option("--data", a->data.files, "text, JSONL (--text-field) or token-id files (next-token loss)");
  cmd->add_option("--text-field", a->data.text_field, "JSONL field holding the text");
  cmd->add_option("--sft", a->sft, "JSONL of prompt/answer pairs (loss on answers only)");
  cmd->add_option("--prompt-field", a->prompt_field, "SFT prompt field");
  cmd->add_option("--answer-field", a->answer_field, "SFT answer field");
  cmd->add_option("--seq-len", a->data.seq_len, "tokens per sequence (text windows; SFT examples are cut to it)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--params", a->opts.params, "full, router, experts or compressed (theta only)")
      ->check(CLI::IsMember({"full", "router", "experts", "compressed"}));
  cmd->add_option("--steps", a->opts.steps, "optimizer steps")->check(CLI::PositiveNumber);
  cmd->add_option("--batch-size", a->opts.batch_size, "examples per optimizer step (over all ranks)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--micro-batch", a->opts.micro_batch, "sequences per forward (default: --batch-size)");
  cmd->add_option("--lr", a->opts.lr, "peak learning rate");
  cmd->add_option("--min-lr", a->opts.min_lr, "learning rate at the end of the cosine");
  cmd->add_option("--warmup", a->opts.warmup, "steps of linear warmup");
  cmd->add_option("--weight-decay", a->opts.weight_decay, "AdamW decoupled weight decay");
  cmd->add_option("--clip", a->opts.clip, "global gradient-norm clip (0: none)");
  cmd->add_option("--seed", a->opts.seed, "seed of the data order");
  cmd->add_option("--checkpoint-dir", a->opts.checkpoint_dir, "where checkpoints go");
  cmd->add_option("--checkpoint-every", a->opts.checkpoint_every, "steps between checkpoints (0: at the end)");
  cmd->add_flag("--resume", a->opts.resume, "continue from --checkpoint-dir");
  cmd->add_option("--log-file", a->opts.log_file, "loss curve as JSON lines");
  cmd->add_option("--save-grads", a->opts.grads_file, "diagnostics: write step 1's gradients (safetensors)");
  cmd->add_option("--out", a->out, "output model directory (written atomically)");
  cmd->add_option("--save-dtype", a->save_dtype, "auto, float32, bfloat16, float16")
      ->check(CLI::IsMember({"auto", "float32", "bfloat16", "float16"}));
  cmd->add_option("--comm", a->comm, "communicator under mpirun: auto, mpi, nccl")
      ->check(CLI::IsMember({"auto", "local", "mpi", "nccl"}));
  cmd->add_flag("--overwrite", a->overwrite, "replace --out if it exists");
  cmd->callback([a] {
    auto comm = cluster::world(a->comm);
    cluster::run_or_abort(*comm, [&] { run_finetune(*a); });
  });
}

}  // namespace moelab::cli
