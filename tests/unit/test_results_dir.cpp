// A sweep job killed by SIGKILL leaves whatever it was writing; the executor calls
// remove_job_output before it runs the job again. Regression: a prune job's side file
// "<id>.plan.json.tmp-<pid>" was left in results/prune/ (CI, stop 31), because only
// "<output>.tmp-*" was removed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "schedulers/results_dir.h"

namespace fs = std::filesystem;
using moelab::schedulers::Job;
using moelab::schedulers::remove_job_output;

namespace {
void touch(const fs::path& p) { std::ofstream(p) << "x"; }
}  // namespace

TEST(RemoveJobOutput, RemovesTheOutputAndEveryTempLeftoverOfThatJobOnlyKeepingFinishedSideOutputs) {
  const fs::path root = fs::temp_directory_path() / ("moelab-results-dir-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "prune" / "a07b84d3909792e2" / "model");
  fs::create_directories(root / "prune" / "a07b84d3909792e2.tmp-99");
  touch(root / "prune" / "a07b84d3909792e2.plan.json");
  touch(root / "prune" / "a07b84d3909792e2.plan.json.tmp-3344");
  fs::create_directories(root / "prune" / "a07b84d3909792e2.ckpt");  // resume state stays
  // Another job's outputs in the same folder stay.
  fs::create_directories(root / "prune" / "0123456789abcdef");
  touch(root / "prune" / "0123456789abcdef.plan.json");
  touch(root / "prune" / "0123456789abcdef.plan.json.tmp-7");

  Job job;
  job.id = "a07b84d3909792e2";
  job.output = "prune/a07b84d3909792e2";
  remove_job_output(root.string(), job);

  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(root / "prune")) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"0123456789abcdef", "0123456789abcdef.plan.json",
                                            "0123456789abcdef.plan.json.tmp-7", "a07b84d3909792e2.ckpt",
                                            "a07b84d3909792e2.plan.json"}));
  fs::remove_all(root);
}

TEST(RemoveJobOutput, AFileOutputAndItsTempAreRemoved) {
  const fs::path root = fs::temp_directory_path() / ("moelab-results-dir-f-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "eval");
  touch(root / "eval" / "fedcba9876543210.jsonl");
  touch(root / "eval" / "fedcba9876543210.jsonl.tmp-5");
  touch(root / "eval" / "1111111111111111.jsonl");
  Job job;
  job.id = "fedcba9876543210";
  job.output = "eval/fedcba9876543210.jsonl";
  remove_job_output(root.string(), job);
  EXPECT_FALSE(fs::exists(root / "eval" / "fedcba9876543210.jsonl"));
  EXPECT_FALSE(fs::exists(root / "eval" / "fedcba9876543210.jsonl.tmp-5"));
  EXPECT_TRUE(fs::exists(root / "eval" / "1111111111111111.jsonl"));
  fs::remove_all(root);
}
