#include "interrupt.h"

namespace attend::cli {
namespace {

// A signal handler can reach only globals; one scope is active at a time.
std::atomic<bool> g_stop{false};

extern "C" void on_signal(int sig) {
  if (g_stop.exchange(true)) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

InterruptScope::InterruptScope() {
  g_stop.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &previous_int_);
  sigaction(SIGTERM, &sa, &previous_term_);
}

InterruptScope::~InterruptScope() {
  sigaction(SIGINT, &previous_int_, nullptr);
  sigaction(SIGTERM, &previous_term_, nullptr);
  g_stop.store(false);
}

const std::atomic<bool>& InterruptScope::flag() const { return g_stop; }

void InterruptScope::request_stop() { g_stop.store(true); }

}  // namespace attend::cli
