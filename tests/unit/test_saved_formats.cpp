// The saved formats' one reader each (results/): what the scheduler, the jobs, the report
// and the fuzz targets share. Each test writes a file with the writer (or by hand, for the
// cases the writer never makes) and checks what the reader gives back or refuses.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "core/common/error.h"
#include "results/claims.h"
#include "results/job_record.h"
#include "results/merge_plan_file.h"
#include "results/pruning_plan_file.h"
#include "results/result_records.h"
#include "results/scores_file.h"
#include "results/stat_groups.h"
#include "results/stats_file.h"
#include "results/sweep_plan.h"
#include "schedulers/sweep_spec.h"

namespace moelab {
namespace {
namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("moelab-formats-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d / name;
}

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// The message of the InputError `fn` throws ("" if none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(ScoresFile, ANanScoreIsWrittenAsNullAndReadBackAsNan) {
  results::ScoresFile s;
  s.stats = "stats.h5";
  s.criteria.push_back({"EAN", 2, {{0, {1.5, std::numeric_limits<double>::quiet_NaN(), -2.0}}, {3, {0.25}}}});
  const std::string path = scratch("scores.json").string();
  results::write_scores(s, path);
  std::ifstream in(path);
  const auto j = nlohmann::json::parse(in);
  EXPECT_TRUE(j["criteria"]["EAN"]["layers"]["0"][1].is_null());
  const results::ScoresFile r = results::read_scores(path);
  ASSERT_EQ(r.criteria.size(), 1u);
  EXPECT_EQ(r.stats, "stats.h5");
  EXPECT_EQ(r.criteria[0].version, 2);
  const auto& l0 = r.get("ean", path).layers.at(0);
  EXPECT_EQ(l0[0], 1.5);
  EXPECT_TRUE(std::isnan(l0[1]));
  EXPECT_EQ(l0[2], -2.0);
  EXPECT_EQ(r.criteria[0].layers.at(3), std::vector<double>{0.25});
}

TEST(ScoresFile, AMalformedFileIsRefusedNamingTheField) {
  const fs::path p = scratch("bad-scores.json");
  write_text(p, R"({"criteria": {"EAN": {"layers": {"0": [1.0, "x"]}}}})");
  EXPECT_NE(error_of([&] { results::read_scores(p.string()); }).find("criteria.EAN.layers.0[1]: expected a number"),
            std::string::npos);
  write_text(p, R"({"criteria": {"EAN": {"layers": {"first": [1.0]}}}})");
  EXPECT_NE(error_of([&] { results::read_scores(p.string()); }).find("the layer key is not a layer index"),
            std::string::npos);
  write_text(p, "{not json");
  EXPECT_NE(error_of([&] { results::read_scores(p.string()); }).find("not valid JSON"), std::string::npos);
}

results::PlannedJob job(const std::string& id, const std::string& kind, const std::string& output) {
  results::PlannedJob j;
  j.id = id;
  j.kind = *results::parse_job_kind(kind);
  j.output = output;
  j.args = {"eval", "{out}/prune/x"};
  j.tags = {{"model", "m"}};
  j.resources = {2, 0, "8G", "00:10:00"};
  return j;
}

TEST(SweepPlan, RoundTripsAndRefusesDuplicateIdsAndPathsOutsideTheDirectory) {
  results::SweepPlan plan;
  plan.name = "grid";
  plan.spec = "/abs/sweep.yaml";
  plan.jobs = {job("0123456789abcdef", "calibrate", "calibrate/0123456789abcdef.h5"),
               job("fedcba9876543210", "eval", "eval/fedcba9876543210.jsonl")};
  const fs::path p = scratch("plan.json");
  write_text(p, results::sweep_plan_to_json(plan).dump(1));
  const results::SweepPlan back = results::read_sweep_plan(p.string());
  EXPECT_EQ(back.name, "grid");
  EXPECT_EQ(back.spec, "/abs/sweep.yaml");
  ASSERT_EQ(back.jobs.size(), 2u);
  EXPECT_EQ(back.jobs[1].output, "eval/fedcba9876543210.jsonl");
  EXPECT_EQ(back.jobs[1].resources.ranks, 2);
  EXPECT_EQ(back.jobs[1].resources.mem, "8G");
  EXPECT_EQ(back.jobs[0].tags.at("model"), "m");

  plan.jobs[1].id = plan.jobs[0].id;
  plan.jobs[1].output = "eval/" + plan.jobs[0].id + ".jsonl";
  write_text(p, results::sweep_plan_to_json(plan).dump());
  EXPECT_NE(error_of([&] { results::read_sweep_plan(p.string()); }).find("jobs[1].id: \"0123456789abcdef\" appears twice"),
            std::string::npos);

  for (const std::string output : {"../victim", "/tmp/victim", "eval/../../victim", "prune/fedcba9876543210"}) {
    plan.jobs = {job("fedcba9876543210", "eval", output)};
    write_text(p, results::sweep_plan_to_json(plan).dump());
    EXPECT_NE(error_of([&] { results::read_sweep_plan(p.string()); }).find("malformed job"), std::string::npos) << output;
  }
  plan.jobs = {job("../../victim", "eval", "eval/x.jsonl")};
  write_text(p, results::sweep_plan_to_json(plan).dump());
  EXPECT_NE(error_of([&] { results::read_sweep_plan(p.string()); }).find("is not a job id"), std::string::npos);
}

TEST(JobRecord, AStateOtherThanDoneOrFailedIsRefusedNamingTheField) {
  const fs::path dir = scratch("results");
  fs::create_directories(dir / "jobs");
  results::JobRecord r;
  r.id = "0123456789abcdef";
  r.kind = results::JobKind::kEval;
  r.state = "done";
  r.attempt = 2;
  results::write_job_record(dir.string(), r);
  const auto back = results::read_job_record(dir.string(), r.id);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->state, "done");
  EXPECT_EQ(back->attempt, 2);
  EXPECT_FALSE(results::read_job_record(dir.string(), "fedcba9876543210").has_value());
  write_text(dir / "jobs" / "0123456789abcdef.json", R"({"state": "exploded"})");
  EXPECT_NE(error_of([&] { results::read_job_record(dir.string(), r.id); }).find("state: \"exploded\" is not done or failed"),
            std::string::npos);
}

TEST(PlanFiles, PruningAndMergePlansRoundTrip) {
  results::PruningPlan p;
  p.model = "m";
  p.architecture = "MixtralForCausalLM";
  p.criterion = "EAN";
  p.ratio = 0.5;
  p.experts_per_token = 2;
  p.layers[1] = {4, {0, 3}, {1, 2}};
  p.protected_experts[1] = {3};
  p.protect_rule = "super experts";
  const std::string pp = scratch("plan-prune.json").string();
  results::save_plan(p, pp);
  const results::PruningPlan pb = results::load_plan(pp);
  EXPECT_EQ(pb.layers.at(1).keep, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(pb.layers.at(1).drop, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(pb.protected_experts.at(1), std::vector<int64_t>{3});
  EXPECT_EQ(pb.criterion, "EAN");
  EXPECT_EQ(pb.direction, results::PruneDirection::kMin);
  p.direction = results::PruneDirection::kMax;
  p.scope = results::PruneScope::kGlobal;
  results::save_plan(p, pp);
  EXPECT_EQ(results::load_plan(pp).direction, results::PruneDirection::kMax);
  EXPECT_EQ(results::load_plan(pp).scope, results::PruneScope::kGlobal);
  auto pj = nlohmann::json::parse(std::ifstream(pp));
  EXPECT_EQ(pj["direction"], "max");
  EXPECT_EQ(pj["scope"], "global");
  pj["direction"] = "sideways";
  write_text(pp, pj.dump());
  EXPECT_NE(error_of([&] { results::load_plan(pp); }).find("direction: \"sideways\" is not min or max"), std::string::npos);

  results::MergePlan m;
  m.model = "m";
  m.ratio = 0.5;
  m.router_merge = "dominant";
  m.layers[0] = {4, {{0, 2}, {1, 3}}, {{0.75, 0.25}, {0.5, 0.5}}, {0, 3}};
  const std::string mp = scratch("plan-merge.json").string();
  results::save_merge_plan(m, mp);
  const results::MergePlan mb = results::load_merge_plan(mp);
  EXPECT_EQ(mb.layers.at(0).groups, m.layers.at(0).groups);
  EXPECT_EQ(mb.layers.at(0).weights, m.layers.at(0).weights);
  EXPECT_EQ(mb.layers.at(0).dominant, m.layers.at(0).dominant);
  EXPECT_EQ(mb.router_merge, "dominant");
  auto j = nlohmann::json::parse(std::ifstream(mp));
  j["router_merge"] = "max";
  write_text(mp, j.dump());
  EXPECT_NE(error_of([&] { results::load_merge_plan(mp); }).find("router merge \"max\" is not avg or dominant"),
            std::string::npos);
}

TEST(StatsFile, ReadingOnlySomeGroupsLeavesTheOthersUnread) {
  results::CalibrationStats st;
  st.model = "m";
  st.architecture = "MixtralForCausalLM";
  st.num_tokens = 10;
  st.experts_per_token = 2;
  st.collected = {results::stat::kUsage, results::stat::kActNorms};
  results::LayerStats ls;
  ls.layer = 1;
  ls.tokens_E = at::tensor({4, 6, 0, 10}, at::kLong);
  ls.gate_sum_E = at::tensor({1.0, 2.0, 0.0, 3.0}, at::kDouble);
  ls.act_norm_sum_E = at::tensor({0.5, 0.25, 0.0, 1.0}, at::kDouble);
  ls.act_norm_sq_sum_E = at::tensor({0.5, 0.25, 0.0, 1.0}, at::kDouble);
  st.layers.push_back(ls);
  const std::string path = scratch("stats.h5").string();
  results::write_stats(st, path);
  const results::CalibrationStats all = results::read_stats(path);
  EXPECT_TRUE(all.layers[0].act_norm_sum_E.defined());
  const results::CalibrationStats usage = results::read_stats(path, {results::stat::kUsage});
  EXPECT_EQ(usage.collected, st.collected);  // what the file holds, whatever was read
  EXPECT_TRUE(at::equal(usage.layers[0].tokens_E, ls.tokens_E));
  EXPECT_FALSE(usage.layers[0].act_norm_sum_E.defined());
  EXPECT_EQ(usage.num_tokens, 10);
}

// Every enum-like word of a saved format: written as its table says, read back to the same
// value, and an unknown word read as none (the readers then refuse it naming the field).
template <class E, std::size_t N>
void expect_words_round_trip(const EnumWords<E, N>& words, const std::vector<std::string>& expected) {
  ASSERT_EQ(N, expected.size());
  for (std::size_t i = 0; i < N; ++i) {
    EXPECT_EQ(enum_word(words, words[i].first), expected[i]);
    EXPECT_EQ(parse_enum_word(words, expected[i]), words[i].first);
  }
  EXPECT_FALSE(parse_enum_word(words, "").has_value());
  EXPECT_FALSE(parse_enum_word(words, "Prune").has_value());  // words are case-sensitive, as before
}

TEST(EnumWords, EveryKindProcedureAndDirectionReadsBackAsWritten) {
  expect_words_round_trip(results::kJobKindWords, {"calibrate", "score", "prune", "finetune", "eval"});
  expect_words_round_trip(results::kRecordKindWords, {"perplexity", "multiple_choice", "efficiency", "lm_eval"});
  expect_words_round_trip(results::kClaimKindWords, {"rank", "better", "retains", "not_measured"});
  expect_words_round_trip(results::kProcedureWords, {"one-shot", "searched", "iterative", "lottery"});
  expect_words_round_trip(results::kPruneDirectionWords, {"min", "max"});
  expect_words_round_trip(results::kPruneScopeWords, {"uniform", "global"});
  expect_words_round_trip(schedulers::kRecoveryKindWords, {"none", "kshot", "finetune", "router_kd"});
  EXPECT_EQ(enum_word_list(results::kClaimKindWords), "rank, better, retains or not_measured");
  EXPECT_EQ(not_a_word_of(results::kPruneScopeWords, "local"), "\"local\" is not uniform or global");
  EXPECT_TRUE(results::chosen_from_scores(results::Procedure::kSearched));
  EXPECT_FALSE(results::chosen_from_scores(results::Procedure::kLottery));
}

TEST(SweepPlan, AJobOfAnUnknownKindIsRefusedNamingItsKind) {
  results::SweepPlan plan;
  plan.jobs = {job("0123456789abcdef", "prune", "prune/0123456789abcdef")};
  nlohmann::json j = results::sweep_plan_to_json(plan);
  EXPECT_EQ(j["jobs"][0]["kind"], "prune");
  j["jobs"][0]["kind"] = "distil";
  const fs::path p = scratch("plan-kind.json");
  write_text(p, j.dump());
  EXPECT_NE(error_of([&] { results::read_sweep_plan(p.string()); })
                .find("malformed job 0123456789abcdef: kind \"distil\" is not calibrate, score, prune, finetune or eval"),
            std::string::npos);
}

TEST(JobRecord, KindIsOptionalButAnUnknownOneIsRefused) {
  const fs::path dir = scratch("results-kind");
  fs::create_directories(dir / "jobs");
  write_text(dir / "jobs" / "a.json", R"({"state": "done"})");  // hand-made: no kind
  EXPECT_FALSE(results::read_job_record(dir.string(), "a")->kind.has_value());
  write_text(dir / "jobs" / "a.json", R"({"state": "done", "kind": "score"})");
  EXPECT_EQ(results::read_job_record(dir.string(), "a")->kind, results::JobKind::kScore);
  write_text(dir / "jobs" / "a.json", R"({"state": "done", "kind": "distil"})");
  EXPECT_NE(error_of([&] { results::read_job_record(dir.string(), "a"); }).find("kind: \"distil\" is not calibrate"),
            std::string::npos);
}

TEST(ResultRecords, KindRoundTripsAndAnUnknownOneIsRefusedNamingTheField) {
  results::ResultRecord r;
  r.model = "m";
  r.task = "arc";
  r.kind = results::RecordKind::kMultipleChoice;
  nlohmann::json j = results::to_json(r);
  EXPECT_EQ(j["kind"], "multiple_choice");
  EXPECT_EQ(results::record_from_json(j, "results.jsonl").kind, results::RecordKind::kMultipleChoice);
  j["kind"] = "vibes";
  EXPECT_NE(error_of([&] { results::record_from_json(j, "results.jsonl"); })
                .find("field \"kind\": \"vibes\" is not perplexity, multiple_choice, efficiency or lm_eval"),
            std::string::npos);
}

TEST(Claims, KindIsReadAsItsEnumAndKeysOfAnotherKindAreRefused) {
  const nlohmann::json j = {{"paper", "P"}, {"claim", "c"}, {"kind", "better"}, {"metric", "avg"},
                            {"select", {{"procedure", "iterative"}}}, {"versus", {{"procedure", "one-shot"}}}};
  const results::ClaimSpec c = results::claim_from_json(j, "sweep.yaml", "claims[0]");
  EXPECT_EQ(c.kind, results::ClaimKind::kBetter);
  EXPECT_EQ(results::claim_to_json(c)["kind"], "better");
  nlohmann::json bad = j;
  bad["within"] = 2;
  EXPECT_NE(error_of([&] { results::claim_from_json(bad, "sweep.yaml", "claims[0]"); })
                .find("claims[0].within: only for kind rank (this claim is better)"),
            std::string::npos);
}

}  // namespace
}  // namespace moelab
