// moelab finetune: recovery fine-tuning of a (pruned) checkpoint in C++ (libtorch
// autograd), over ranks with expert + data parallelism; writes a Hugging Face model
// directory.
#include <cmath>
#include <optional>

#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/models/model_writer.h"
#include "runner/cli/commands.h"
#include "runner/cli/model_options.h"
#include "runner/cli/training_options.h"
#include "runner/jobs/train/finetune.h"

namespace moelab::cli {
namespace {

struct FinetuneArgs {
  ModelOptions model;
  TrainingArgs train;
  std::string teacher;  // router KD: distil from this model (e.g. the unpruned one)
};

// The teacher's weights (loaded beside the model): all of them, an upper bound under
// expert parallelism.
int64_t teacher_bytes(const std::string& dir, const std::string& dtype) {
  const hf::ModelConfig c = models::load_config(dir);
  return models::count_params(c).total * schedulers::dtype_bytes(dtype);
}

void run_finetune(FinetuneArgs a) {
  auto comm = cluster::world(a.train.comm);
  a.train.check("moelab finetune", true);
  // The weights alone (gradients and optimizer state come on top): what cannot even be
  // loaded is refused before the examples are read.
  if (a.teacher.empty() && a.train.opts.kd_temperature != 1.0)
    throw InputError("--kd-temperature", "is the distillation temperature: give --teacher too");
  jobs::MemoryCheck check = jobs::holding_model("moelab finetune", true);
  if (!a.teacher.empty()) {
    if (!(a.train.opts.kd_temperature > 0 && std::isfinite(a.train.opts.kd_temperature)))
      throw InputError("--kd-temperature", std::to_string(a.train.opts.kd_temperature) + " must be a number > 0");
    // Before anything loads: distillation compares distributions over one vocabulary.
    const int64_t tv = models::load_config(a.teacher).vocab_size, sv = models::load_config(a.model.model_dir).vocab_size;
    if (tv != sv)
      throw InputError(a.teacher, "the teacher's vocabulary (" + std::to_string(tv) + " tokens) differs from the "
                                  "model's (" + std::to_string(sv) + "): distillation compares next-token "
                                  "distributions over one vocabulary");
    check.extra_bytes = teacher_bytes(a.teacher, a.model.dtype);
    check.extra_what = "the teacher's weights, --teacher";
  }
  a.model.check_memory(check, comm->size());
  if (a.train.data.tokenizer.empty()) a.train.data.tokenizer = a.model.model_dir;
  const auto examples = a.train.load_examples();
  models::MoeModel m = comm->size() > 1
                           ? cluster::load_expert_parallel(a.model.model_dir, comm, a.model.load_options())
                           : models::load_model(a.model.model_dir, a.model.load_options());
  a.train.check_vocab(examples, m.config.vocab_size);
  std::optional<models::MoeModel> teacher;
  if (!a.teacher.empty()) {
    ModelOptions t = a.model;
    t.model_dir = a.teacher;
    teacher = comm->size() > 1 ? cluster::load_expert_parallel(t.model_dir, comm, t.load_options())
                               : models::load_model(t.model_dir, t.load_options());
    a.train.opts.teacher = &*teacher;
    spdlog::info("distilling from {} (KL of the next-token distributions, temperature {:g})", a.teacher,
                 a.train.opts.kd_temperature);
  }
  const auto& o = a.train.opts;
  if (o.params == "compressed") (void)jobs::trainable_tensors(m, o.params);  // checks the model before any log
  spdlog::info("fine-tuning {} ({} parameters) on {} examples: {} steps of {} examples, lr {:.3g}, {} rank(s)",
               a.model.model_dir, o.params, examples.size(), o.steps, o.batch_size, o.lr, comm->size());
  a.train.train_and_write(m, *comm, examples, [&](const models::MoeModel& model) {
    models::save_model(model, a.train.out, a.train.save_options());
  });
}

}  // namespace

void add_finetune_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "finetune",
      "Fine-tune a checkpoint (e.g. after pruning) with the next-token loss and write a model directory.\n"
      "Data: --data text/JSONL/token-id files cut into --seq-len windows (every token a target), or --sft\n"
      "a JSONL of {\"prompt\": ..., \"answer\": ...} (loss on the answer's tokens only).\n"
      "Parameters: --params full | router | experts | compressed (the compressed-expert vectors of a\n"
      "model from moelab compress: ces c1, c2, c3, or moelab-v1's theta; full trains them too). AdamW (torch::optim) with --warmup steps of linear\n"
      "warmup then a cosine decay to --min-lr; --batch-size examples per step over all ranks, run in\n"
      "--micro-batch sequences per forward (gradient accumulation); --clip on the global gradient norm.\n"
      "Under mpirun (or --ranks P) experts are spread over ranks and micro-batches over ranks; the\n"
      "gradients equal one rank's. --checkpoint-dir/--checkpoint-every save weights and optimizer state;\n"
      "--resume continues a stopped run exactly. The loss curve goes to the log and to --log-file.\n"
      "Router KD (after pruning or merging): --teacher the unpruned model and --params router train the\n"
      "routers alone to match the teacher's next-token distributions on unlabeled text (the loss is the\n"
      "mean KL(teacher || model) at --kd-temperature).\n\n"
      "Examples:\n"
      "  moelab prune models/debian-moe --drop 0:1,5 --out pruned/\n"
      "  moelab finetune pruned/ --data models/debian-moe/corpus/en.calibration.jsonl --seq-len 256 --steps 200 --lr 1e-5 --out tuned/\n"
      "  moelab --ranks 2 finetune pruned/ --sft configs/tasks/debian_moe_en.jsonl --params router --steps 50 --out tuned/\n"
      "  moelab finetune pruned/ --data models/debian-moe/corpus/en.calibration.jsonl --steps 1000 --checkpoint-dir ck/ --checkpoint-every 100 --resume --out tuned/\n"
      "  moelab finetune pruned/ --teacher models/debian-moe --params router --data models/debian-moe/corpus/en.calibration.jsonl --steps 50 --lr 1e-3 --out router-kd/");
  auto a = std::make_shared<FinetuneArgs>();
  a->model.add_to(cmd);
  a->train.add_to(cmd);
  cmd->add_option("--params", a->train.opts.params, "full, router, experts or compressed (compressed-expert vectors only)")
      ->check(CLI::IsMember({"full", "router", "experts", "compressed"}));
  cmd->add_option("--teacher", a->teacher, "distil from this model directory (router KD: the unpruned model)");
  cmd->add_option("--kd-temperature", a->train.opts.kd_temperature, "distillation temperature, > 0 (default 1)");
  cmd->callback([a] {
    auto comm = cluster::world(a->train.comm);
    cluster::run_or_abort(*comm, [&] { run_finetune(*a); });
  });
}

}  // namespace moelab::cli
