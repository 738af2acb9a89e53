#include "runner/jobs/calibrate/stop_signal.h"

namespace moelab::jobs {
namespace {

volatile std::sig_atomic_t g_stop_requested = 0;
void request_stop(int) { g_stop_requested = 1; }

}  // namespace

StopOnSignal::StopOnSignal(bool active) : active_(active) {
  if (active_) previous_ = std::signal(SIGUSR1, request_stop);
}

StopOnSignal::~StopOnSignal() {
  if (active_) std::signal(SIGUSR1, previous_);
}

bool StopOnSignal::requested() const { return active_ && g_stop_requested != 0; }

}  // namespace moelab::jobs
