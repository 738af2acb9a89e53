// Expert parallelism under mpirun -np P: logits and per-expert statistics equal the
// single-process model's (computed on every rank with all experts, no
// communication), for even and uneven expert splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <csignal>
#include <chrono>
#include <random>
#include <thread>

#include "cluster/alltoall_dispatcher.h"
#include "cluster/communicator.h"
#include "cluster/data_parallel.h"
#include "cluster/local_communicator.h"
#include "core/hf/safetensors.h"
#include "core/models/moe_model.h"
#include "core/models/next_token_loss.h"

using namespace moelab;

namespace {

std::string fixture(const std::string& name) {
  const char* d = std::getenv("MOELAB_FIXTURES");
  return std::string(d ? d : "") + "/models/" + name;
}

std::vector<std::vector<int64_t>> random_sequences(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> seqs(n);
  for (auto& s : seqs) {
    s.resize(3 + rng() % 28);
    for (auto& t : s) t = 1 + int64_t(rng() % (vocab - 1));
  }
  return seqs;
}

// Per layer, per expert, in float64: routed rows, gate sum, sum ||a||, sum ||f||,
// sum g * ||f|| (REAP's numerator); and routing counts seen by the tokens' ranks.
class ExpertStats : public models::MoeObserver {
 public:
  ExpertStats(int64_t layers, int64_t experts) : expert_(at::zeros({layers, experts, 5}, at::kDouble)),
                                                 routed_(at::zeros({layers, experts}, at::kDouble)) {}
  void on_routing(int64_t layer, const at::Tensor&, const at::Tensor& ids, const at::Tensor&) override {
    routed_[layer] += at::bincount(ids.reshape(-1), {}, routed_.size(1)).to(at::kDouble);
  }
  void on_expert(int64_t layer, int64_t e, const at::Tensor&, const at::Tensor& act, const at::Tensor& out,
                 const at::Tensor& gate) override {
    at::Tensor g = gate.to(at::kDouble), an = act.to(at::kDouble).norm(2, 1), on = out.to(at::kDouble).norm(2, 1);
    at::Tensor row = at::stack({at::scalar_tensor(double(act.size(0)), at::kDouble), g.sum(), an.sum(), on.sum(),
                                (g * on).sum()});
    expert_[layer][e] += row;
  }
  void all_reduce(cluster::Communicator& comm) {
    comm.all_reduce_sum(expert_);
    comm.all_reduce_sum(routed_);
  }
  at::Tensor expert_, routed_;
};

struct PassResult {
  std::vector<at::Tensor> logits;
  ExpertStats stats;
};

PassResult run(const models::MoeModel& m, cluster::Communicator& comm, const std::vector<std::vector<int64_t>>& seqs,
        int64_t batch_size) {
  int64_t E = 0;
  for (auto n : m.config.num_experts_per_layer) E = std::max(E, n);
  PassResult r{{}, ExpertStats(m.config.num_hidden_layers, E)};
  std::vector<int64_t> idx;
  std::vector<at::Tensor> out;
  cluster::run_data_parallel(m, comm, seqs, {batch_size}, &r.stats, [&](int64_t i, const at::Tensor& l) {
    idx.push_back(i);
    out.push_back(l);
  });
  r.logits = cluster::gather_sequence_outputs(comm, idx, out, int64_t(seqs.size()));
  r.stats.all_reduce(comm);
  return r;
}

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item<double>();
}

}  // namespace

class ExpertParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertParallel, LogitsAndStatisticsMatchTheSingleProcessModel) {
  auto comm = cluster::world("mpi");
  const std::string dir = fixture(GetParam());
  // Reference: this rank alone, all experts, all sequences.
  cluster::LocalCommunicator one;
  models::MoeModel full = models::load_model(dir);
  models::MoeModel ep = cluster::load_expert_parallel(dir, comm);
  auto seqs = random_sequences(11, full.config.vocab_size, 7);
  PassResult ref = run(full, one, seqs, 4);
  PassResult got = run(ep, *comm, seqs, 3);  // other batch size: results must not depend on batching

  double worst = 0;
  for (size_t i = 0; i < seqs.size(); ++i) worst = std::max(worst, (ref.logits[i] - got.logits[i]).abs().max().item<double>());
  EXPECT_LE(worst, 1e-4) << "P=" << comm->size();
  EXPECT_TRUE(at::equal(ref.stats.routed_, got.stats.routed_));
  EXPECT_LE(max_rel_diff(got.stats.expert_, ref.stats.expert_), 1e-5);
  if (comm->rank() == 0)
    std::cout << "[ep] " << GetParam() << " P=" << comm->size() << ": max |logit diff| " << worst
              << ", max rel stat diff " << max_rel_diff(got.stats.expert_, ref.stats.expert_) << "\n";
}

TEST_P(ExpertParallel, EachRankHoldsOnlyItsContiguousBlockOfExperts) {
  auto comm = cluster::world("mpi");
  models::MoeModel ep = cluster::load_expert_parallel(fixture(GetParam()), comm);
  const int P = comm->size(), r = comm->rank();
  for (const auto& layer : ep.layers) {
    if (!layer.moe) continue;
    const int64_t E = layer.moe->num_experts();
    EXPECT_EQ(layer.moe->first_local, E * r / P);
    EXPECT_EQ(layer.moe->num_local(), E * (r + 1) / P - E * r / P);
    EXPECT_EQ(layer.moe->router_ED.size(0), E);  // the router is replicated
  }
  // Together the ranks hold every expert exactly once (the first MoE layer: DeepSeek's
  // first layers are dense); shared experts are replicated, whole on every rank.
  const auto first_moe = std::find_if(ep.layers.begin(), ep.layers.end(), [](const auto& L) { return L.moe.has_value(); });
  ASSERT_NE(first_moe, ep.layers.end());
  at::Tensor held = at::tensor({first_moe->moe->num_local()}, at::kLong);
  comm->all_reduce_sum(held);
  EXPECT_EQ(held.item<int64_t>(), first_moe->moe->num_experts());
  for (const auto& layer : ep.layers)
    if (layer.shared) EXPECT_EQ(layer.shared->mlp.gate_FD.size(0), ep.config.shared_expert_intermediate_size);
}

// The transformers reference logits of the fixture (tests/fixtures/make_models.py), from
// the expert-parallel model: each rank runs some of the sequences, experts sharded.
TEST_P(ExpertParallel, LogitsMatchTransformers) {
  auto comm = cluster::world("mpi");
  const std::string dir = fixture(GetParam());
  auto ref = hf::SafetensorsFile::open(dir + ".ref.safetensors");
  at::Tensor ids = ref->tensor("input_ids"), lengths = ref->tensor("lengths"), want = ref->tensor("logits");
  std::vector<std::vector<int64_t>> seqs;
  for (int64_t b = 0; b < lengths.size(0); ++b) {
    at::Tensor row = ids[b].narrow(0, 0, lengths[b].item<int64_t>()).contiguous();
    seqs.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
  }
  models::MoeModel ep = cluster::load_expert_parallel(dir, comm);
  std::vector<int64_t> idx;
  std::vector<at::Tensor> out;
  cluster::run_data_parallel(ep, *comm, seqs, {1}, nullptr, [&](int64_t i, const at::Tensor& l) {
    idx.push_back(i);
    out.push_back(l);
  });
  at::Tensor got = at::cat(cluster::gather_sequence_outputs(*comm, idx, out, int64_t(seqs.size())));
  const double diff = (got.to(at::kFloat) - want).abs().max().item<double>();
  EXPECT_LE(diff, 1e-4) << "P=" << comm->size();
  if (comm->rank() == 0)
    std::cout << "[ep vs transformers] " << GetParam() << " P=" << comm->size() << ": max |logit diff| " << diff << "\n";
}

// mixtral: 8 experts (over 3 ranks: 2, 3, 3); qwen3: 10 experts and a dense layer
// (over 4 ranks: 2, 3, 2, 3); qwen2_moe, deepseek_v3, deepseek_v2: shared experts
// (replicated, never dispatched) and dense layers; olmoe: 16 experts top-4;
// deepseek_v3, glm4_moe: grouped top-k over 16 experts with a correction bias (over 3
// ranks: 5, 5, 6); minimax_m2: the MoE block's correction bias, 8 experts; glm4_moe_lite:
// MLA; ernie4_5_moe: [1, E] correction bias sliced per rank; phimoe: sparsemixer; llama4:
// gates on the experts' input (scaled rows travel), a dense layer, a shared expert.
INSTANTIATE_TEST_SUITE_P(Fixtures, ExpertParallel,
                         ::testing::Values("mixtral", "qwen3", "mixtral_swa_sharded", "qwen2_moe", "olmoe", "deepseek_v3",
                                           "deepseek_v2", "glm4_moe", "minimax_m2", "glm4_moe_lite", "ernie4_5_moe",
                                           "phimoe", "llama4"));

// Gradients of the experts' weights after forward + backward of the mean next-token
// loss over all batches (as calibrate does for the gradient criteria).
void accumulate_expert_gradients(models::MoeModel& m, cluster::Communicator& comm,
                                 const std::vector<std::vector<int64_t>>& seqs, int64_t batch_size) {
  for (auto& L : m.layers)
    if (L.moe) {
      L.moe->gate_up_EFD.requires_grad_(true);
      L.moe->down_EDF.requires_grad_(true);
    }
  int64_t targets = 0;
  for (const auto& s : seqs) targets += int64_t(s.size()) - 1;
  cluster::for_each_batch(comm, seqs, {batch_size},
                          [&](const at::Tensor& ids, const std::vector<int64_t>& lengths, const std::vector<int64_t>&) {
                            at::Tensor logits = models::forward(m, ids, lengths);
                            (models::next_token_nll_sum(logits, ids, lengths) / double(targets)).backward();
                          });
}

TEST_P(ExpertParallel, ExpertGradientsCrossRanksAndMatchTheSingleProcessModel) {
  auto comm = cluster::world("mpi");
  const std::string dir = fixture(GetParam());
  cluster::LocalCommunicator one;
  models::MoeModel full = models::load_model(dir);
  models::MoeModel ep = cluster::load_expert_parallel(dir, comm);
  auto seqs = random_sequences(7, full.config.vocab_size, 11);  // 3 batches of 3: some ranks idle in a step
  accumulate_expert_gradients(full, one, seqs, 4);
  accumulate_expert_gradients(ep, *comm, seqs, 3);
  double worst = 0;
  for (size_t l = 0; l < ep.layers.size(); ++l) {
    if (!ep.layers[l].moe) continue;
    const auto& mine = *ep.layers[l].moe;
    const auto& ref = *full.layers[l].moe;
    ASSERT_TRUE(ref.gate_up_EFD.grad().defined());
    if (mine.num_local() == 0) continue;
    ASSERT_TRUE(mine.gate_up_EFD.grad().defined()) << "layer " << l;
    for (auto [got, want] : {std::pair{mine.gate_up_EFD.grad(), ref.gate_up_EFD.grad()},
                             std::pair{mine.down_EDF.grad(), ref.down_EDF.grad()}}) {
      at::Tensor w = want.narrow(0, mine.first_local, mine.num_local());
      ASSERT_GT(w.abs().max().item<double>(), 0);
      worst = std::max(worst, ((got - w).abs().max() / w.abs().max()).item<double>());
    }
  }
  EXPECT_LE(worst, 1e-5) << "P=" << comm->size();
  if (comm->rank() == 0)
    std::cout << "[ep-grad] " << GetParam() << " P=" << comm->size() << ": max gradient diff / scale " << worst << "\n";
}

TEST(ExpertParallelEdgeCases, RanksWithoutBatchesStillServeTheirExperts) {
  auto comm = cluster::world("mpi");
  const std::string dir = fixture("mixtral");
  models::MoeModel full = models::load_model(dir);
  models::MoeModel ep = cluster::load_expert_parallel(dir, comm);
  auto seqs = random_sequences(1, full.config.vocab_size, 3);  // one batch: ranks > 0 idle
  cluster::LocalCommunicator one;
  PassResult ref = run(full, one, seqs, 8), got = run(ep, *comm, seqs, 8);
  EXPECT_LE((ref.logits[0] - got.logits[0]).abs().max().item<double>(), 1e-4);
}

TEST(RankFailure, ThrowingRankAbortsEveryRank) {
  // PassResult by tests/mpi/expect_abort.py with MOELAB_TEST_FAIL_RANK set; skipped otherwise.
  const char* fail = std::getenv("MOELAB_TEST_FAIL_RANK");
  if (!fail) GTEST_SKIP() << "MOELAB_TEST_FAIL_RANK unset";
  auto comm = cluster::world("mpi");
  // MOELAB_TEST_FAIL_MODE=throw: the rank throws; =hang: it stalls (the others must
  // give up after MOELAB_COMM_TIMEOUT_S and abort the job); =kill: it dies by SIGKILL.
  struct Thrower : models::MoeObserver {
    int me, bad;
    bool hang = false, kill = false;
    void on_routing(int64_t layer, const at::Tensor&, const at::Tensor&, const at::Tensor&) override {
      if (me != bad || layer != 1) return;
      if (kill) ::raise(SIGKILL);
      if (hang) std::this_thread::sleep_for(std::chrono::seconds(120));
      throw std::runtime_error("injected failure in layer 1");
    }
  } thrower;
  const char* mode = std::getenv("MOELAB_TEST_FAIL_MODE");
  thrower.hang = mode && std::string(mode) == "hang";
  thrower.kill = mode && std::string(mode) == "kill";
  thrower.me = comm->rank();
  thrower.bad = std::atoi(fail);
  models::MoeModel ep = cluster::load_expert_parallel(fixture("mixtral"), comm);
  auto seqs = random_sequences(8, ep.config.vocab_size, 1);
  cluster::run_or_abort(*comm, [&] {
    cluster::run_data_parallel(ep, *comm, seqs, {2}, &thrower, [](int64_t, const at::Tensor&) {});
  });
  FAIL() << "the failing rank should have aborted the job";
}
