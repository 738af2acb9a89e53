// Which rank owns which experts: with P ranks, rank r owns the contiguous block
// [floor(r*E/P), floor((r+1)*E/P)) of every MoE layer's E experts. Uneven splits
// (8 experts over 3 ranks: 2, 3, 3) and layers with different E (after pruning)
// are fine; contiguous blocks keep "sorted by expert" = "grouped by owner rank".
#pragma once

#include <cstdint>

namespace moelab::cluster {

class ExpertPlacement {
 public:
  ExpertPlacement(int rank, int size) : rank_(rank), size_(size) {}
  int64_t first(int64_t num_experts, int rank) const { return num_experts * rank / size_; }
  int64_t count(int64_t num_experts, int rank) const { return first(num_experts, rank + 1) - first(num_experts, rank); }
  int64_t first_local(int64_t num_experts) const { return first(num_experts, rank_); }
  int64_t num_local(int64_t num_experts) const { return count(num_experts, rank_); }
  int owner(int64_t num_experts, int64_t expert) const;
  int size() const { return size_; }
  int rank() const { return rank_; }

 private:
  int rank_, size_;
};

}  // namespace moelab::cluster
