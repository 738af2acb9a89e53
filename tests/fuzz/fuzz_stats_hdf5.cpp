// Fuzzes the HDF5 statistics reader (calibration -> scoring): read_stats on arbitrary
// bytes and on mutations of real statistics files (the seed corpus). libhdf5 itself
// is not instrumented; what is checked is that moelab's reader turns every bad file
// into an InputError (shapes, dtypes, missing groups) and never reads out of bounds.
#include "core/common/error.h"
#include "fuzz_input.h"
#include "results/stats_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = moelab::fuzz::write_input(data, size, "stats.h5");
  try {
    (void)moelab::results::read_stats(path);
  } catch (const moelab::InputError&) {
  }
  return 0;
}
