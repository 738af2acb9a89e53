// Several observers on one forward pass: every tap goes to each, in order.
#pragma once

#include <vector>

#include "core/models/moe_model.h"

namespace moelab::jobs {

class ObserverFanOut : public models::MoeObserver {
 public:
  explicit ObserverFanOut(std::vector<models::MoeObserver*> observers) : observers_(std::move(observers)) {}

  void on_batch(const at::Tensor& ids) override {
    for (auto* o : observers_) o->on_batch(ids);
  }
  void on_routing(int64_t l, const at::Tensor& logits, const at::Tensor& ids, const at::Tensor& w) override {
    for (auto* o : observers_) o->on_routing(l, logits, ids, w);
  }
  void on_expert(int64_t l, int64_t e, const at::Tensor& tag, const at::Tensor& act, const at::Tensor& out,
                 const at::Tensor& gate) override {
    for (auto* o : observers_) o->on_expert(l, e, tag, act, out, gate);
  }
  void on_combine(int64_t l, const at::Tensor& e, const at::Tensor& t, const at::Tensor& g,
                  const at::Tensor& out) override {
    for (auto* o : observers_) o->on_combine(l, e, t, g, out);
  }
  void on_moe_output(int64_t l, const at::Tensor& h_in, const at::Tensor& y) override {
    for (auto* o : observers_) o->on_moe_output(l, h_in, y);
  }
  bool wants_all_expert_outputs() const override {
    for (auto* o : observers_)
      if (o->wants_all_expert_outputs()) return true;
    return false;
  }
  void on_all_expert_outputs(int64_t l, const at::Tensor& logits, const at::Tensor& out) override {
    for (auto* o : observers_)
      if (o->wants_all_expert_outputs()) o->on_all_expert_outputs(l, logits, out);
  }

 private:
  std::vector<models::MoeObserver*> observers_;
};

}  // namespace moelab::jobs
