#include "runner/jobs/calibrate/calibration_checkpoint.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

#include "core/common/atomic_output.h"
#include "core/common/error.h"
#include "core/common/json_file.h"
#include "core/common/log.h"
#include "core/hf/safetensors.h"
#include "results/calibration_stats.h"
#include "results/stat_groups.h"

namespace moelab::jobs {

namespace fs = std::filesystem;

namespace {

const char* kManifest = "checkpoint.json";

struct Manifest {
  int64_t steps_done = 0, world_size = 0;
  std::string fingerprint;
};

Manifest read_manifest(const std::string& path) {
  return read_json_file(path, "calibration checkpoint", [](const nlohmann::json& j) {
    if (json_integer_or(j, "version", 0) != 1) throw JsonIntegerError("field \"version\" must be 1");
    Manifest m;
    m.steps_done = json_integer(j.at("steps_done"), "steps_done");
    m.world_size = json_integer(j.at("world_size"), "world_size");
    m.fingerprint = j.at("fingerprint").get<std::string>();
    return m;
  });
}

}  // namespace

CalibrationCheckpoint::CalibrationCheckpoint(CheckpointOptions opts, cluster::Communicator& comm)
    : opts_(std::move(opts)), comm_(comm), stop_(opts_.every > 0) {}

std::string CalibrationCheckpoint::rank_file(int rank, int64_t step) const {
  return (fs::path(opts_.dir) / ("rank" + std::to_string(rank) + ".step" + std::to_string(step) + ".safetensors"))
      .string();
}

int64_t CalibrationCheckpoint::check() const {
  if (!enabled()) return 0;
  const std::string manifest = (fs::path(opts_.dir) / kManifest).string();
  if (!fs::exists(manifest)) return 0;
  const Manifest m = read_manifest(manifest);
  if (m.fingerprint != opts_.fingerprint)
    throw InputError(opts_.dir, "holds a calibration checkpoint of other arguments or data (fingerprint " +
                                    m.fingerprint + ", this run " + opts_.fingerprint +
                                    "); delete it or give another --checkpoint-dir");
  if (m.world_size != comm_.size())
    throw InputError(opts_.dir, "the checkpoint was written by " + std::to_string(m.world_size) +
                                    " rank(s); resume with the same number (" + std::to_string(comm_.size()) + " now)");
  return m.steps_done;
}

int64_t CalibrationCheckpoint::restore(const StateTensors& state, const StreamedState* streamed) {
  const int64_t steps_done = check();
  if (steps_done == 0) return 0;
  const std::string file = rank_file(comm_.rank(), steps_done);
  auto st = hf::SafetensorsFile::open(file);
  auto saved = [&](const std::string& name, at::IntArrayRef shape) {
    if (!st->contains(name)) throw InputError(file, "no tensor \"" + name + "\" (written by another moelab?)");
    at::Tensor t = st->tensor(name);
    if (t.sizes() != shape) throw InputError(file, "tensor \"" + name + "\" has another shape than this run's");
    return t;
  };
  for (const auto& [name, t] : state) t->copy_(saved(name, t->sizes()));
  size_t expected = state.size();
  if (streamed) {
    expected += streamed->names.size();
    for (size_t i = 0; i < streamed->names.size(); ++i) {
      const std::string& name = streamed->names[i];
      at::Tensor t = saved(name, streamed->shapes[i]);
      if (t.scalar_type() != streamed->dtype)
        throw InputError(file, "tensor \"" + name + "\" has another dtype than this run's");
      streamed->put(i, t.clone());
      st->release(name);  // one tensor's pages resident at a time
    }
  }
  if (st->tensors().size() != expected)
    throw InputError(file, "holds " + std::to_string(st->tensors().size()) + " tensors, this run keeps " +
                               std::to_string(expected));
  saved_step_ = steps_done;
  spdlog::info("resuming calibration after {} {} from {}", opts_.unit, steps_done, opts_.dir);
  return steps_done;
}

void CalibrationCheckpoint::maybe_save(int64_t steps_done, int64_t total_steps, const StateTensors& state,
                                       const StreamedState* streamed) {
  if (!enabled() || steps_done >= total_steps) return;
  at::Tensor stop = at::tensor({stop_.requested() ? 1.0 : 0.0}, at::kDouble);
  comm_.all_reduce_sum(stop);  // every rank stops at the same step
  const bool stopping = stop.item<double>() > 0;
  if (!stopping && (steps_done % opts_.every != 0 || steps_done == saved_step_)) return;
  if (steps_done != saved_step_) save(steps_done, total_steps, state, streamed);
  if (stopping) throw CalibrationInterrupted(opts_.unit, steps_done);
}

void CalibrationCheckpoint::save(int64_t steps_done, int64_t total_steps, const StateTensors& state,
                                 const StreamedState* streamed) {
  fs::create_directories(opts_.dir);
  std::vector<hf::TensorSource> tensors;
  for (const auto& [name, t] : state)
    tensors.push_back({name, t->scalar_type(), t->sizes().vec(), [t = t] { return *t; }});
  if (streamed)
    for (size_t i = 0; i < streamed->names.size(); ++i)
      tensors.push_back({streamed->names[i], streamed->dtype, streamed->shapes[i], [streamed, i] { return streamed->get(i); }});
  hf::write_safetensors_streamed(rank_file(comm_.rank(), steps_done), tensors);
  comm_.barrier();  // every rank's file is complete before the manifest names it
  if (comm_.rank() == 0) {
    nlohmann::json j = {{"version", 1},
                        {"steps_done", steps_done},
                        {"world_size", comm_.size()},
                        {"fingerprint", opts_.fingerprint}};
    write_file_atomic(fs::path(opts_.dir) / kManifest, j.dump(1) + "\n");
  }
  comm_.barrier();  // the manifest names the new files before the old ones go
  if (saved_step_ >= 0) fs::remove(rank_file(comm_.rank(), saved_step_));
  saved_step_ = steps_done;
  spdlog::info("calibration checkpoint after {} {} of {} in {}", opts_.unit, steps_done, total_steps, opts_.dir);
}

void CalibrationCheckpoint::remove() {
  if (!enabled()) return;
  comm_.barrier();
  if (comm_.rank() == 0) fs::remove_all(opts_.dir);
}

void check_resumable_groups(const std::set<std::string>& groups) {
  if (const results::StatGroup* g = results::first_whole_model_group(groups))
    throw InputError("--checkpoint-every", "statistic group \"" + g->name +
                                               "\" is not a running sum of one pass and cannot be checkpointed; "
                                               "collect it without --checkpoint-every");
}

std::string calibration_fingerprint(const std::vector<std::vector<int64_t>>& sequences, const std::string& settings) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a offset basis
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  for (const auto& s : sequences) {
    const int64_t n = int64_t(s.size());
    mix(&n, sizeof n);
    mix(s.data(), s.size() * sizeof(int64_t));
  }
  mix(settings.data(), settings.size());
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace moelab::jobs
