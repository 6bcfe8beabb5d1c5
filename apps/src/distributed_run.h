#pragma once
/// The data-parallel side of the training commands: when torchrun's variables
/// (RANK, WORLD_SIZE, ...) are set, as `attend launch` or a user's own launcher sets
/// them, a training command joins the process group and trains its shard.

#include "cli.h"

#include <attend/models/distributed.h>
#include <attend/models/observer.h>

#include <fstream>
#include <memory>
#include <string>

namespace attend::cli {

/// --dist-store, --dist-timeout, --dist-wait, --bucket-mb, --balance-shards and --rank-log.
po::options_description distributed_options();

class DistributedRun {
 public:
  /// Joins the process group when the environment names one; otherwise inactive.
  /// Reports what it checks before any collective (see models::ProcessGroup).
  /// throws UsageError for a bad option, models::DistributedError for set-up failures.
  explicit DistributedRun(const po::variables_map& vm);
  ~DistributedRun();

  bool active() const { return group_ != nullptr; }
  int rank() const { return group_ ? group_->rank() : 0; }
  int size() const { return group_ ? group_->size() : 1; }
  /// Writes files and the progress line: rank 0, or a one-process run.
  bool writer() const { return rank() == 0; }

  /// Waits until every rank gets here (nothing when inactive).
  void barrier();
  /// Data-parallel training of `module` through `hooks` (nothing when inactive).
  void join(torch::nn::Module& module, models::FitHooks& hooks);
  /// One line with the buckets, the bytes each step all-reduces and the time spent
  /// in collectives: rank 0 writes it to `out`, the others to their --rank-log.
  void report(std::ostream& out);
  /// Ranks > 0 with --rank-log: a progress observer writing <run>/rank-<r>.log;
  /// else nullptr.
  std::shared_ptr<models::TrainingObserver> rank_log(const std::string& run_dir);

 private:
  std::unique_ptr<models::ProcessGroup> group_;
  std::unique_ptr<models::DataParallel> parallel_;
  double bucket_mb_ = 1.0;
  bool balance_ = false;
  bool rank_log_ = false;
  std::ofstream log_;
};

/// The intra-op threads a training process takes by default: the cores this process
/// may use (attend::datasets::available_cores: its affinity mask and CPU quota)
/// shared among the workers on it (LOCAL_WORLD_SIZE, which attend launch sets).
int default_threads();

}  // namespace attend::cli
