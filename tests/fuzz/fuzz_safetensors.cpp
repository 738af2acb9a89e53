// Fuzzes the safetensors reader: header length, JSON header, dtypes, shapes, offsets.
// Every accepted tensor is materialised and summed, so that a header whose sizes do
// not match the mapping is caught by ASan (out-of-bounds read), not only by luck.
#include "core/common/error.h"
#include "core/hf/safetensors.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = moelab::fuzz::write_input(data, size, "model.safetensors");
  try {
    auto file = moelab::hf::SafetensorsFile::open(path);
    for (const auto& [name, info] : file->tensors()) {
      at::Tensor t = file->tensor(name);
      if (t.numel() > 0 && at::isFloatingType(t.scalar_type())) (void)t.to(at::kDouble).sum().item<double>();
      else if (t.numel() > 0) (void)t.to(at::kLong).sum().item<int64_t>();
    }
  } catch (const moelab::InputError&) {
  }
  return 0;
}
