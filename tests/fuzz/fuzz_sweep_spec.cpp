// Fuzzes sweep YAML: load_sweep_spec (grid, include/exclude, procedures, recovery,
// eval, resources, every path and name check) and expand_grid on an accepted spec.
// The spec is written next to files it may name (model/config.json, data.jsonl,
// task.jsonl), so that specs past the path checks reach the rest of the validation.
// Criteria come from the torch-free catalog (criteria/catalog.cpp), as in moelab itself.
#include "core/common/error.h"
#include "fuzz_input.h"
#include "schedulers/sweep_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool layout = [] {
    const auto dir = moelab::fuzz::scratch_dir();
    std::filesystem::create_directories(dir / "model");
    for (const char* f : {"model/config.json", "data.jsonl", "task.jsonl"}) std::ofstream(dir / f) << "{}\n";
    return true;
  }();
  (void)layout;
  const std::string path = moelab::fuzz::write_input(data, size, "sweep.yaml");
  try {
    const auto spec = moelab::schedulers::load_sweep_spec(path);
    (void)moelab::schedulers::expand_grid(spec);
  } catch (const moelab::InputError&) {
  }
  return 0;
}
