// Resumable calibration (moelab calibrate --checkpoint-every N): every N steps the
// collectors' running sums are saved, and a calibration started again with the same
// arguments (after kill -9, a Slurm time limit or a preemption with --requeue)
// continues after the last saved step. The sums are restored exactly (float64 and
// int64 as stored) and the remaining batches run in the same order, so the statistics
// file equals that of an uninterrupted run, bit for bit.
//
// A step is one batch on every rank (cluster::for_each_batch), or one decoder layer of
// the layer-by-layer pass, which also saves its hidden states (StreamedState). On
// disk, in `dir`:
//   rank<R>.step<S>.safetensors   rank R's sums after S steps (not yet all-reduced)
//   checkpoint.json               {"version": 1, "steps_done": S, "world_size": P,
//                                  "fingerprint": "..."}: the last complete checkpoint
// SIGUSR1 (Slurm's "time is nearly up", see runner/jobs/calibrate/stop_signal.h) while checkpointing:
// the ranks agree at the next step (a one-number all-reduce per step), save there and
// throw CalibrationInterrupted; the command exits with kExitResumable (75).
//
// Saving: every rank writes its file (temp name + rename), all ranks meet, rank 0
// replaces checkpoint.json, all ranks meet, then each deletes its older files. A kill
// at any moment leaves checkpoint.json naming files that exist.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cluster/communicator.h"
#include "runner/jobs/calibrate/stop_signal.h"

namespace moelab::jobs {

// The named accumulators of a pass (each collector lists its own; names are unique).
using StateTensors = std::vector<std::pair<std::string, at::Tensor*>>;

// State too large to hold twice (the layer-by-layer pass's hidden states, maybe in a
// scratch file): saved and restored one tensor at a time through get/put.
struct StreamedState {
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  at::ScalarType dtype = at::kFloat;
  std::function<at::Tensor(size_t)> get;              // tensor i (shape i, dtype)
  std::function<void(size_t, const at::Tensor&)> put;  // restores tensor i
};

struct CheckpointOptions {
  int64_t every = 0;         // steps between checkpoints; 0: off
  std::string dir;           // where checkpoints go
  std::string fingerprint;   // what the run depends on; a checkpoint of another is refused
  std::string unit = "step";  // what a step is, for the log ("step", "layer")
};

// Thrown (on every rank alike) by maybe_save after SIGUSR1, once the checkpoint is saved.
struct CalibrationInterrupted : std::runtime_error {
  CalibrationInterrupted(const std::string& unit, int64_t steps)
      : std::runtime_error("stopped by a signal after " + unit + " " + std::to_string(steps) + "; checkpoint saved"),
        steps(steps) {}
  int64_t steps;
};

class CalibrationCheckpoint {
 public:
  CalibrationCheckpoint(CheckpointOptions opts, cluster::Communicator& comm);
  bool enabled() const { return opts_.every > 0; }
  // Loads the last checkpoint into `state` and returns the steps it covers (0 when
  // there is none). Throws InputError(dir, ...) for a checkpoint written for other
  // arguments, by another number of ranks, or with missing or mismatched tensors.
  int64_t restore(const StateTensors& state, const StreamedState* streamed = nullptr);
  // The same checks as restore() without loading (so that a refusal comes before any
  // work): returns the steps the checkpoint covers, 0 when there is none.
  int64_t check() const;
  // Collective. Saves after `steps_done` steps when that is a multiple of `every` and
  // short of `total_steps` (the end needs none: the output is written then), or when a
  // rank got SIGUSR1: then saves and throws CalibrationInterrupted.
  void maybe_save(int64_t steps_done, int64_t total_steps, const StateTensors& state,
                  const StreamedState* streamed = nullptr);
  // Collective: deletes the checkpoint files (call once the output is written).
  void remove();

 private:
  std::string rank_file(int rank, int64_t step) const;
  void save(int64_t steps_done, int64_t total_steps, const StateTensors& state, const StreamedState* streamed);
  CheckpointOptions opts_;
  cluster::Communicator& comm_;
  int64_t saved_step_ = -1;
  StopOnSignal stop_;
};

// Throws InputError("--checkpoint-every", ...) naming the first group whose state is
// not a running sum of one pass: gradients (model gradients), naee (its subset search)
// and act_outliers (a second pass).
void check_resumable_groups(const std::set<std::string>& groups);

// "sequences, batch size, ranks, ..." -> a short stable digest (FNV-1a, 64 bits, hex)
// of the token ids and the given settings, for CheckpointOptions::fingerprint.
std::string calibration_fingerprint(const std::vector<std::vector<int64_t>>& sequences, const std::string& settings);

}  // namespace moelab::jobs
