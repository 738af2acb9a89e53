// SIGUSR1 as "stop at the next step boundary": what Slurm sends near a task's time
// limit (--signal=B:USR1@N; the batch script passes it on, mpirun forwards it to every
// rank). A run that can checkpoint installs it, reads requested() at step boundaries
// (ranks agree through a collective), saves, and exits with kExitResumable.
#pragma once

#include <csignal>

namespace moelab::jobs {

// Exit status of a run stopped by SIGUSR1 after saving a checkpoint (EX_TEMPFAIL): run
// the same command again to continue.
constexpr int kExitResumable = 75;

class StopOnSignal {
 public:
  // active false: leaves SIGUSR1 as it is (its default ends the process).
  explicit StopOnSignal(bool active);
  ~StopOnSignal();
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;
  // True once SIGUSR1 arrived while active (this process only).
  bool requested() const;

 private:
  bool active_;
  void (*previous_)(int) = SIG_DFL;
};

}  // namespace moelab::jobs
