#include "runner/jobs/calibrate/collector_set.h"

namespace moelab::jobs {

CollectorSet::CollectorSet(const models::MoeModel& model, const std::set<std::string>& groups,
                           const std::vector<double>& power_exponents)
    : stats_(model, groups), power_exponents_(power_exponents) {
  if (groups.count(results::stat::kDenseOutputs)) dense_ = std::make_unique<DenseOutputCollector>(model);
  if (groups.count(results::stat::kGateRatios)) ratios_ = std::make_unique<GateRatioCollector>(model);
  if (groups.count(results::stat::kPowerSums)) powers_ = std::make_unique<PowerSumCollector>(model, power_exponents);
}

std::vector<models::MoeObserver*> CollectorSet::observers() {
  std::vector<models::MoeObserver*> out = {&stats_};
  if (dense_) out.push_back(dense_.get());
  if (ratios_) out.push_back(ratios_.get());
  if (powers_) out.push_back(powers_.get());
  return out;
}

StateTensors CollectorSet::state() {
  StateTensors out;
  stats_.append_state(out);
  if (dense_) dense_->append_state(out);
  if (ratios_) ratios_->append_state(out);
  if (powers_) powers_->append_state(out);
  return out;
}

void CollectorSet::all_reduce(cluster::Communicator& comm) {
  stats_.all_reduce(comm);
  if (dense_) dense_->all_reduce(comm);
  if (ratios_) ratios_->all_reduce(comm);
  if (powers_) powers_->all_reduce(comm);
}

results::CalibrationStats CollectorSet::take() {
  results::CalibrationStats st = stats_.take();
  if (dense_) dense_->fill(st.layers);
  if (ratios_) ratios_->fill(st.layers);
  if (powers_) {
    powers_->fill(st.layers);
    st.power_exponents = power_exponents_;
  }
  return st;
}

}  // namespace moelab::jobs
