// Recovery fine-tuning with libtorch autograd: next-token loss (SFT: answers only),
// AdamW (torch::optim) with linear warmup and a cosine schedule, gradient
// accumulation, global-norm clipping, checkpoint/resume, a loss curve.
//
// Distribution: data parallel over the ranks of `comm` on top of the model's expert
// parallelism. Each optimizer step takes `batch_size` examples (the global batch),
// in micro-batches of `micro_batch` sequences spread over the ranks; the loss is the
// mean over the global batch's targets, so the gradients do not depend on the rank
// count or the micro-batching. Gradients of replicated weights (attention, norms,
// routers, embeddings, and experts a rank holds in full) are summed over ranks;
// experts owned by one rank already received every rank's tokens through the
// dispatcher's differentiable exchanges.
//
// Stopping early: with a checkpoint_dir, SIGUSR1 (any rank; mpirun forwards it to all)
// makes every rank stop after the current step, save a checkpoint and throw
// TrainingInterrupted, so a batch job near its time limit can requeue and resume.
//
// Data order: the examples are shuffled per epoch (seed + epoch) and consumed in
// global batches; step s always sees the same examples, so a resumed run continues
// exactly where a checkpoint left it.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "runner/jobs/data/training_data.h"

namespace moelab::jobs {

struct FinetuneOptions {
  std::string params = "full";  // full | router | experts | compressed (compressed-expert vectors only)
  int64_t steps = 100;
  int64_t batch_size = 8;        // examples per optimizer step, over all ranks
  int64_t micro_batch = 0;       // sequences per forward (0: batch_size)
  double lr = 1e-5, min_lr = 0, weight_decay = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t warmup = 0;            // steps of linear warmup; then cosine from lr to min_lr
  double clip = 1.0;             // global gradient-norm clip (0: none)
  uint64_t seed = 0;
  std::string checkpoint_dir;    // empty: no checkpoints
  int64_t checkpoint_every = 0;  // steps (0: only at the end)
  bool resume = false;           // continue from checkpoint_dir
  bool auto_resume = false;      // continue from checkpoint_dir if it holds a checkpoint, else start
  std::string log_file;          // JSON lines: step, loss, lr, grad_norm, targets (rank 0)
  std::string grads_file;        // diagnostics: step 1's summed gradients (before clipping),
                                 // every expert gathered, written by rank 0 as safetensors
  // Distillation instead of the next-token loss (router KD after pruning, with params =
  // router): the loss is the mean over targets of KL(teacher || model) of the next-token
  // distributions at kd_temperature (models::distillation_kl_sum). The teacher (e.g. the
  // unpruned model, loaded with the same ranks) runs on the same micro-batches without
  // gradients; it is not changed.
  const models::MoeModel* teacher = nullptr;
  double kd_temperature = 1.0;
};

struct StepRecord {
  int64_t step = 0;  // 1-based
  double loss = 0, lr = 0, grad_norm = 0;
  int64_t targets = 0;
};

// Thrown by finetune() when SIGUSR1 asked it to stop (Slurm's "time is nearly up"):
// the checkpoint of `step` is saved; a run with resume continues from it.
struct TrainingInterrupted : std::runtime_error {
  explicit TrainingInterrupted(int64_t step)
      : std::runtime_error("stopped by a signal after step " + std::to_string(step) + "; checkpoint saved"),
        step(step) {}
  int64_t step;
};

// Learning rate at 1-based step s of `steps`.
double learning_rate(const FinetuneOptions& o, int64_t step);

// Trains `model` in place. `after_step` (optional) sees each step's record and the
// model right after the optimizer update (used by tests and the resume check).
std::vector<StepRecord> finetune(models::MoeModel& model, cluster::Communicator& comm,
                                 const std::vector<TrainingExample>& data, const FinetuneOptions& opts,
                                 const std::function<void(const StepRecord&)>& after_step = {});

// The trainable weights of a parameter set, each once (tied embeddings), with a name.
struct TrainableTensor {
  std::string name;
  at::Tensor* tensor;
  bool replicated;  // the same on every rank (its gradient is summed over ranks)
};
std::vector<TrainableTensor> trainable_tensors(models::MoeModel& model, const std::string& params);

// Every expert on rank 0 (the other ranks' slices gathered), for saving a model
// trained under expert parallelism. Collective; a no-op when every rank holds all.
void gather_experts_to_all(models::MoeModel& model, cluster::Communicator& comm);

}  // namespace moelab::jobs
