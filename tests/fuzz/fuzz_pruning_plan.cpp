// Fuzzes pruning-plan JSON (what `moelab prune --plan` and the sweep's iterative
// procedure read back) through its one reader (results/pruning_plan_file.h): load_plan,
// then a save/load round trip of an accepted plan.
#include "core/common/error.h"
#include "fuzz_input.h"
#include "results/pruning_plan_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = moelab::fuzz::write_input(data, size, "plan.json");
  try {
    const auto plan = moelab::results::load_plan(path);
    const std::string again = (moelab::fuzz::scratch_dir() / "plan-again.json").string();
    moelab::results::save_plan(plan, again);
    (void)moelab::results::load_plan(again);
  } catch (const moelab::InputError&) {
  }
  return 0;
}
