// moelab train: the training loop of moelab finetune (params full) started from a
// random init built from a Hugging Face config.json, for building small models;
// writes a Hugging Face model directory (config, weights, tokenizer).
#include <filesystem>

#include "cluster/alltoall_dispatcher.h"
#include "cluster/communicator.h"
#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/log.h"
#include "core/models/model_writer.h"
#include "core/models/random_init.h"
#include "core/tokenizer/tokenizer.h"
#include "runner/cli/commands.h"
#include "runner/cli/model_options.h"
#include "runner/cli/training_options.h"

namespace fs = std::filesystem;

namespace moelab::cli {
namespace {

// What a tokenizer directory may hold; these files travel to --out.
const char* const kTokenizerFiles[] = {
    "tokenizer.json",          "vocab.json",       "merges.txt", "tokenizer.model", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json"};

struct TrainArgs {
  std::string model_config, tokenizer;
  uint64_t init_seed = 0;
  ModelOptions compute;  // --dtype, --device
  TrainingArgs train;
};

// --model-config: a config.json, or a directory that holds one.
std::string config_file(const std::string& arg) {
  if (arg.empty()) throw InputError("--model-config", "give the model's config.json");
  fs::path p = arg;
  if (fs::is_directory(p)) p /= "config.json";
  if (!fs::is_regular_file(p)) throw InputError(p.string(), "no such config file (--model-config)");
  return p.string();
}

// --tokenizer, else the config's directory when it holds a tokenizer.json, else none.
std::string find_tokenizer(const std::string& arg, const std::string& config) {
  if (!arg.empty()) {
    if (!fs::exists(arg)) throw InputError(arg, "no such tokenizer file or directory (--tokenizer)");
    return arg;
  }
  const fs::path dir = fs::path(config).parent_path();
  return fs::exists(dir / "tokenizer.json") ? dir.string() : "";
}

// The model and the tokenizer's files, renamed into --out together.
void write_model(const models::MoeModel& m, const TrainArgs& a) {
  AtomicDir dir(a.train.out, a.train.overwrite);
  models::SaveOptions so = a.train.save_options();
  so.overwrite = true;  // into the (empty) temporary directory
  models::save_model(m, dir.path().string(), so);
  if (!a.tokenizer.empty()) {
    // save_model copied the config directory's tokenizer, if any: --tokenizer replaces it.
    for (const char* f : kTokenizerFiles) fs::remove(dir.path() / f);
    if (fs::is_directory(a.tokenizer)) {
      for (const char* f : kTokenizerFiles)
        if (fs::exists(fs::path(a.tokenizer) / f)) fs::copy_file(fs::path(a.tokenizer) / f, dir.path() / f);
    } else {
      fs::copy_file(a.tokenizer, dir.path() / "tokenizer.json");
    }
  }
  dir.commit();
}

void run_train(TrainArgs a) {
  auto comm = cluster::world(a.train.comm);
  a.train.check("moelab train", a.train.opts.steps > 0);
  const std::string config_path = config_file(a.model_config);
  const hf::ModelConfig config = models::load_config_file(config_path);
  (void)models::initializer_range(config);  // a bad field fails before the data is read
  a.tokenizer = find_tokenizer(a.tokenizer, config_path);
  if (!a.tokenizer.empty()) {
    const Tokenizer tok = Tokenizer::from_file(a.tokenizer);
    if (tok.vocab_size() > config.vocab_size)
      throw InputError(config_path, "field \"vocab_size\" = " + std::to_string(config.vocab_size) +
                                        " is smaller than the tokenizer's " + std::to_string(tok.vocab_size()) +
                                        " tokens (" + tok.source() + ")");
  }
  if (a.tokenizer.empty()) {
    if (!a.train.sft.empty()) throw InputError(a.train.sft, "SFT data needs a tokenizer (give --tokenizer)");
    for (const auto& f : a.train.data.files)
      if (fs::path(f).extension() != ".json" && fs::exists(f))
        throw InputError(f, "text data needs a tokenizer (give --tokenizer, or token ids in a .json file)");
  }
  a.train.data.tokenizer = a.tokenizer;
  const auto examples = a.train.load_examples();
  a.train.check_vocab(examples, config.vocab_size);

  models::LoadOptions lo = a.compute.load_options();
  if (comm->size() > 1) lo.dispatcher = std::make_shared<cluster::AllToAllDispatcher>(comm);
  models::MoeModel m = models::random_init_model(config, a.init_seed, lo);
  const auto& o = a.train.opts;
  spdlog::info("{} ({}, {} parameters): random init (seed {}, std {:.3g}), {} rank(s)", config_path, m.family->name,
               models::count_params(config).total, a.init_seed, models::initializer_range(config), comm->size());
  if (o.steps > 0)
    spdlog::info("training on {} examples: {} steps of {} examples, lr {:.3g}", examples.size(), o.steps, o.batch_size,
                 o.lr);
  a.train.train_and_write(m, *comm, examples, [&](const models::MoeModel& model) { write_model(model, a); });
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train a model from random init: the training loop of moelab finetune (all parameters) on a model\n"
      "built from a Hugging Face config.json (Mixtral or Qwen3-MoE), for building small models.\n"
      "Init as transformers' _init_weights: linear and embedding weights ~ N(0, initializer_range^2)\n"
      "(default 0.02), RMSNorm weights 1, biases 0; the same for any --init-seed whatever the rank count.\n"
      "Data, schedule, checkpoints, --resume and ranks work as in moelab finetune (but --lr defaults to\n"
      "1e-3); --steps 0 writes the initial weights. --out is a Hugging Face model directory: config.json,\n"
      "model.safetensors and the files of --tokenizer (a tokenizer.json or a directory holding one;\n"
      "default: the config's directory when it has a tokenizer.json).\n\n"
      "Examples:\n"
      "  moelab train --model-config configs/default_model/model_config.json --tokenizer models/debian-moe \\\n"
      "      --data models/debian-moe/corpus/en.calibration.jsonl --seq-len 256 --steps 2000 --batch-size 32 --lr 1e-3 --warmup 100 --init-seed 1 --out tiny-moe/\n"
      "  moelab tokenize --tokenizer models/debian-moe --input README.md --output ids.json\n"
      "  moelab --ranks 2 train --model-config configs/default_model/model_config.json --tokenizer models/debian-moe --data ids.json "
      "--steps 100 --lr 3e-3 --out tiny-moe/\n"
      "  moelab train --model-config configs/default_model/model_config.json --tokenizer models/debian-moe --steps 0 --out init/"
      "      # the initial weights only");
  auto a = std::make_shared<TrainArgs>();
  a->train.opts.lr = 1e-3;  // from scratch: a pretraining-sized step, not finetune's 1e-5
  cmd->add_option("--model-config", a->model_config,
                  "Hugging Face config.json of the model to build (or a directory holding one)")
      ->required();
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json or a directory holding one (copied to --out)");
  cmd->add_option("--init-seed", a->init_seed, "seed of the random init");
  a->compute.add_compute_options(cmd);
  a->train.add_to(cmd, 0);
  cmd->callback([a] {
    auto comm = cluster::world(a->train.comm);
    cluster::run_or_abort(*comm, [&] { run_train(*a); });
  });
}

}  // namespace moelab::cli
