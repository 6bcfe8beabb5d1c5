#pragma once
/// Ctrl-C handling for long commands: the first SIGINT or SIGTERM sets a flag that
/// the training engine polls (it then saves and returns); a second one kills the
/// process at once.

#include <atomic>

namespace attend::cli {

/// Installs the handlers (idempotent) and returns the flag they set.
const std::atomic<bool>& install_interrupt_handler();

}  // namespace attend::cli
