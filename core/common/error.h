// Error types shared by every moelab component.
//
// InputError: something a user gave us is wrong (a file, a field, a value). The CLI
// prints it as ONE line "error: <what>" and exits with status 2. Messages name the
// file and the field so that the user can fix the input without a debugger.
#pragma once

#include <stdexcept>
#include <string>

namespace moelab {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& what) : std::runtime_error(what) {}
  // "<file>: <problem>"
  InputError(const std::string& file, const std::string& problem)
      : std::runtime_error(file + ": " + problem) {}
};

}  // namespace moelab
