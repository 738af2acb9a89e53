// A multiple-choice task file's format: the optional YAML beside it (same stem, .yaml
// or .yml) holding jobs::McFormat fields (configs/tasks/README.md). Read by `moelab eval`
// and by `moelab finetune --sft` on a task file (the items' contexts and right answers).
#pragma once

#include <string>

#include "runner/jobs/eval/multiple_choice.h"

namespace moelab::jobs {

// The defaults when there is no YAML; InputError naming the YAML for an unknown key, a
// non-string value, an unknown sampler or a Jinja-style template. A relative
// fewshot_file is made relative to the YAML's folder.
McFormat read_task_format(const std::string& task_path);

}  // namespace moelab::jobs
