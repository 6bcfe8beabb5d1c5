#include "interrupt.h"

#include <stdexcept>

namespace attend::cli {
namespace {

// A signal handler can reach only globals; one scope is active at a time.
std::atomic<bool> g_stop{false};
std::atomic<bool> g_active{false};

extern "C" void on_signal(int sig) {
  if (g_stop.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

InterruptScope::InterruptScope() {
  if (g_active.exchange(true)) {
    throw std::logic_error("InterruptScope: another run in this process already handles Ctrl-C");
  }
  g_stop.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;  // interrupted writes and reads carry on
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous_int_);
  sigaction(SIGTERM, &sa, &previous_term_);
}

InterruptScope::~InterruptScope() {
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
  g_stop.store(false);
  g_active.store(false);
}

const std::atomic<bool>& InterruptScope::flag() const { return g_stop; }

void InterruptScope::request_stop() { g_stop.store(true); }

}  // namespace attend::cli
