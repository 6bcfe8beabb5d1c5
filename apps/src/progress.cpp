#include "progress.h"

#include <attend/io_error.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <ostream>

namespace attend::cli {
namespace {

/// "1 epoch", "2 epochs".
std::string count(std::int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  auto s = static_cast<long long>(std::llround(seconds));
  const long long h = s / 3600, m = s / 60 % 60;
  s %= 60;
  char buf[48];
  if (h > 0) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", h, m, s);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", m, s);
  }
  return buf;
}

ProgressObserver::ProgressObserver(std::ostream& out, bool terminal, double plain_seconds, Clock clock)
    : out_(out), terminal_(terminal), plain_seconds_(plain_seconds), clock_(clock ? std::move(clock) : steady_seconds) {}

void ProgressObserver::on_train_begin(const models::RunInfo& info) {
  start_ = clock_();
  first_step_ = info.start_step;
  examples_ = 0;
  have_loss_ = false;
  out_ << "training " << info.kind << ": " << count(info.epochs, "epoch") << " of " << count(info.steps_per_epoch, "step");
  if (info.resumed) out_ << ", resumed at epoch " << info.start_epoch + 1 << " step " << info.start_step;
  if (!info.run_dir.empty()) out_ << ", run folder " << info.run_dir;
  out_ << "\n" << std::flush;
}

std::string ProgressObserver::step_line(const models::StepReport& r) const {
  const double elapsed = clock_() - start_;
  const auto done = r.global_step - first_step_;
  const auto total = r.epochs * r.steps_per_epoch;
  const double per_step = done > 0 ? elapsed / static_cast<double>(done) : 0.0;
  const double eta = done > 0 ? per_step * static_cast<double>(total - r.global_step) : -1.0;
  const double rate = elapsed > 0 ? static_cast<double>(examples_) / elapsed : 0.0;
  std::string line = "epoch " + std::to_string(r.epoch + 1) + "/" + std::to_string(r.epochs) + "  step " +
                     std::to_string(r.step_in_epoch + 1) + "/" + std::to_string(r.steps_per_epoch) + "  " +
                     fixed(rate, 0) + " ex/s  ETA " + format_duration(eta) + "  loss " + fixed(running_loss_, 4);
  for (const auto& [name, value] : r.metrics) line += "  " + name + " " + fixed(value, 4);
  return line;
}

void ProgressObserver::on_step(const models::StepReport& report) {
  examples_ += report.examples;
  // Exponential moving average: a readable running loss without a window buffer.
  running_loss_ = have_loss_ ? 0.95 * running_loss_ + 0.05 * report.loss : report.loss;
  have_loss_ = true;
  const double now = clock_();
  const double interval = terminal_ ? 0.1 : plain_seconds_;
  if (now - last_print_ < interval) return;
  last_print_ = now;
  if (terminal_) {
    out_ << "\r" << step_line(report) << "\033[K" << std::flush;
    line_open_ = true;
  } else {
    out_ << step_line(report) << "\n" << std::flush;
  }
}

void ProgressObserver::finish_line() {
  if (line_open_) out_ << "\r\033[K";
  line_open_ = false;
}

void ProgressObserver::on_epoch_end(const models::EpochReport& r) {
  finish_line();
  out_ << "epoch " << r.epoch + 1 << "/" << r.epochs << " done in " << format_duration(r.seconds);
  if (r.eval_seconds >= 0.5) out_ << " (validation " << format_duration(r.eval_seconds) << ")";
  out_ << "  " << fixed(r.examples_per_second, 0) << " ex/s training  loss " << fixed(r.mean_loss, 4);
  for (const auto& [name, value] : r.train_metrics) out_ << "  " << name << " " << fixed(value, 4);
  for (const auto& [name, value] : r.eval_metrics) out_ << "  val_" << name << " " << fixed(value, 4);
  if (r.improved) out_ << "  (best)";
  if (r.skipped_steps > 0) out_ << "  (" << count(r.skipped_steps, "non-finite step") << " skipped)";
  out_ << "\n" << std::flush;
}

void ProgressObserver::on_train_end(const models::FitSummary& s) {
  finish_line();
  out_ << "training " << models::to_string(s.status) << " after " << count(s.epochs_done, "epoch") << ", "
       << count(s.global_step, "step") << ", " << format_duration(s.seconds);
  if (s.has_best) out_ << ", best " << fixed(s.best, 4);
  out_ << "\n" << std::flush;
}

OverfittingWarning::OverfittingWarning(std::ostream& out, std::string advice, double margin, std::int64_t epochs)
    : out_(out), advice_(std::move(advice)), margin_(margin), epochs_(epochs < 1 ? 1 : epochs) {}

void OverfittingWarning::on_epoch_end(const models::EpochReport& r) {
  const auto train = r.train_metrics.find("accuracy");
  const auto validation = r.eval_metrics.find("accuracy");
  if (train == r.train_metrics.end() || validation == r.eval_metrics.end()) return;
  run_ = train->second - validation->second > margin_ ? run_ + 1 : 0;
  if (warned_ || run_ < epochs_) return;
  warned_ = true;
  out_ << "attend: warning: training accuracy " << fixed(100.0 * train->second, 1) << "% but validation accuracy "
       << fixed(100.0 * validation->second, 1) << "% for " << count(run_, "epoch")
       << " in a row: the model is memorising its training images; " << advice_ << "\n"
       << std::flush;
}

MetricsJsonl::MetricsJsonl(const std::string& path, std::int64_t every_steps)
    : path_(path), file_(path, std::ios::app), every_(every_steps < 1 ? 1 : every_steps) {
  if (!file_) throw IoError(path, "cannot open for appending");
}

void MetricsJsonl::write(const std::string& line) {
  file_ << line << "\n" << std::flush;
  if (!file_) throw IoError(path_, "cannot append");
}

void MetricsJsonl::on_train_begin(const models::RunInfo& info) {
  write(nlohmann::json{{"event", "begin"},
                       {"time", unix_seconds()},
                       {"kind", info.kind},
                       {"epochs", info.epochs},
                       {"steps_per_epoch", info.steps_per_epoch},
                       {"start_epoch", info.start_epoch},
                       {"start_step", info.start_step},
                       {"resumed", info.resumed}}
            .dump());
}

void MetricsJsonl::on_step(const models::StepReport& r) {
  if (r.global_step % every_ != 0) return;
  nlohmann::json j{{"event", "step"},       {"time", unix_seconds()}, {"epoch", r.epoch},
                   {"step", r.global_step}, {"loss", r.loss},         {"examples", r.examples},
                   {"seconds", r.seconds}};
  for (const auto& [name, value] : r.metrics) j[name] = value;
  write(j.dump());
}

void MetricsJsonl::on_epoch_end(const models::EpochReport& r) {
  write(nlohmann::json{{"event", "epoch"},
                       {"time", unix_seconds()},
                       {"epoch", r.epoch},
                       {"step", r.global_step},
                       {"loss", r.mean_loss},
                       {"train", r.train_metrics},
                       {"eval", r.eval_metrics},
                       {"seconds", r.seconds},
                       {"train_seconds", r.train_seconds},
                       {"eval_seconds", r.eval_seconds},
                       {"examples_per_second", r.examples_per_second},
                       {"improved", r.improved},
                       {"skipped_steps", r.skipped_steps}}
            .dump());
}

void MetricsJsonl::on_checkpoint(const std::string& path, std::int64_t global_step) {
  write(nlohmann::json{{"event", "checkpoint"}, {"time", unix_seconds()}, {"path", path}, {"step", global_step}}.dump());
}

void MetricsJsonl::on_train_end(const models::FitSummary& s) {
  nlohmann::json j{{"event", "end"},      {"time", unix_seconds()}, {"status", models::to_string(s.status)},
                   {"epochs", s.epochs_done}, {"step", s.global_step}, {"seconds", s.seconds}};
  if (s.has_best) j["best"] = s.best;
  write(j.dump());
}

}  // namespace attend::cli
