// Fuzzes the JSON-lines readers of outside text: multiple-choice task files (both the
// default fields and a prompt template with {field} placeholders), the documents of
// calibration / evaluation files, and pre-tokenised id files. The first byte picks the
// reader so that one corpus covers all of them.
#include "core/common/error.h"
#include "fuzz_input.h"
#include "runner/jobs/data/calibration_data.h"
#include "runner/jobs/data/text_documents.h"
#include "runner/jobs/eval/multiple_choice.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t pick = data[0] % 4;
  const std::string path = moelab::fuzz::write_input(data + 1, size - 1, "input.jsonl");
  try {
    if (pick == 0) {
      const auto task = moelab::jobs::read_mc_task(path, {});
      for (int64_t i = 0; i < static_cast<int64_t>(task.items.size()); ++i)
        (void)moelab::jobs::build_context(task, i, {});
    } else if (pick == 1) {
      moelab::jobs::McFormat fmt;
      fmt.prompt_template = "Q: {question} {{literal}} A:";
      fmt.choices_field = "options";
      fmt.gold_field = "answer";
      const auto task = moelab::jobs::read_mc_task(path, fmt);
      for (int64_t i = 0; i < static_cast<int64_t>(task.items.size()); ++i)
        (void)moelab::jobs::build_context(task, i, {});
    } else if (pick == 2) {
      (void)moelab::jobs::read_documents(path, "text", "calibration file");
    } else {
      (void)moelab::jobs::read_token_id_file(path);
    }
  } catch (const moelab::InputError&) {
  }
  return 0;
}
