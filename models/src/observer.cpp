#include "attend/models/observer.h"

namespace attend::models {

const char* to_string(FitStatus status) {
  switch (status) {
    case FitStatus::kCompleted: return "completed";
    case FitStatus::kStoppedEarly: return "stopped early";
    case FitStatus::kInterrupted: return "interrupted";
  }
  return "unknown";
}

void ObserverList::on_train_begin(const RunInfo& info) {
  for (auto& o : observers_) o->on_train_begin(info);
}
void ObserverList::on_step(const StepReport& report) {
  for (auto& o : observers_) o->on_step(report);
}
void ObserverList::on_epoch_end(const EpochReport& report) {
  for (auto& o : observers_) o->on_epoch_end(report);
}
void ObserverList::on_checkpoint(const std::string& path, std::int64_t global_step) {
  for (auto& o : observers_) o->on_checkpoint(path, global_step);
}
void ObserverList::on_train_end(const FitSummary& summary) {
  for (auto& o : observers_) o->on_train_end(summary);
}

}  // namespace attend::models
