#pragma once
/// Ctrl-C handling for long commands, scoped to one run: while an InterruptScope
/// lives, the first SIGINT or SIGTERM sets its flag, which the training engine polls
/// (it then saves and returns); a second one kills the process at once. The flag
/// starts cleared in every scope, and the previous handlers are put back when the
/// scope ends, so a later run in the same process (tests, a user's program calling
/// run_cli twice) is not stopped by an earlier Ctrl-C. Signal handlers are
/// process-wide: one scope may be alive at a time (a second one throws).

#include <atomic>
#include <csignal>

namespace attend::cli {

class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  /// Raised by the first signal in this scope.
  const std::atomic<bool>& flag() const;
  /// As a signal would (for tests).
  void request_stop();

 private:
  struct sigaction previous_int_ {}, previous_term_ {};
};

}  // namespace attend::cli
