// Documents of a text file: a .jsonl file is one document per non-blank line (the
// string field `field`), any other file one document. Shared by calibration, fine-
// tuning and evaluation so that all read text the same way.
#pragma once

#include <string>
#include <vector>

namespace moelab::jobs {

// InputError naming the file (and line) for unreadable files, bad JSON, a missing or
// non-string field. `what` names the file's role in errors ("calibration file").
std::vector<std::string> read_documents(const std::string& path, const std::string& field, const std::string& what);

}  // namespace moelab::jobs
