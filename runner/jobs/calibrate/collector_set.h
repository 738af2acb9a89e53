// The one-pass statistic collectors of a calibration, as one object: the statistics
// collector (routing, norms, ...) plus, when their groups are asked for, dense mean
// outputs, gate ratios and power sums. Shared by the whole-model and the
// layer-by-layer pass so that both attach, checkpoint, reduce and fill the same
// collectors. (NAEE's multi-pass search is not a one-pass collector; the whole-model
// pass adds it beside this set.)
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "core/models/moe_model.h"
#include "results/calibration_stats.h"
#include "runner/jobs/calibrate/calibration_checkpoint.h"
#include "runner/jobs/calibrate/dense_output_stats.h"
#include "runner/jobs/calibrate/gate_ratio_stats.h"
#include "runner/jobs/calibrate/power_sum_stats.h"
#include "runner/jobs/calibrate/stats_collector.h"

namespace moelab::jobs {

class CollectorSet {
 public:
  // model: shapes only are read (a shell will do). power_exponents: the a and p of
  // the power_sums group.
  CollectorSet(const models::MoeModel& model, const std::set<std::string>& groups,
               const std::vector<double>& power_exponents);

  // The collectors to attach to the pass (fan them out with ObserverFanOut).
  std::vector<models::MoeObserver*> observers();
  StatsCollector& stats() { return stats_; }
  // Every collector's running sums, named (for calibration checkpoints).
  StateTensors state();
  // Collective: sums every collector over the ranks. Call once, after the pass.
  void all_reduce(cluster::Communicator& comm);
  // The statistics of every collector (after all_reduce); metadata is the caller's.
  results::CalibrationStats take();

 private:
  StatsCollector stats_;
  std::unique_ptr<DenseOutputCollector> dense_;
  std::unique_ptr<GateRatioCollector> ratios_;
  std::unique_ptr<PowerSumCollector> powers_;
  std::vector<double> power_exponents_;
};

}  // namespace moelab::jobs
