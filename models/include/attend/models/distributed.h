#pragma once
/// Data-parallel training over several processes and machines on PyTorch's c10d
/// with the Gloo backend.
///
/// A run is W processes ("ranks"), each holding a full copy of the model. Every
/// optimiser step, the global batch (the same indices a one-process run would take)
/// is cut into W contiguous shards; rank r computes the loss of its shard, and the
/// gradients are summed across ranks with each rank's weighted by n_r / B (its
/// shard's share of the global batch), so every rank holds the gradient of the mean
/// loss over the whole batch and takes the same optimiser step. With a loss that is
/// a mean over examples this is the one-process step, up to the order of float sums.
///
/// Gradients travel in buckets (about bucket_mb each, in the reverse of the
/// parameters' order, as backward produces them). A bucket's all-reduce starts from
/// the gradient hooks as soon as its last gradient is ready, so communication
/// overlaps the rest of backward; buckets start in the same order on every rank.
///
/// Rank 0 alone writes checkpoints, metrics and the progress line; parameters and
/// buffers are broadcast from rank 0 at the start (fresh or resumed); ranks > 0 draw
/// from their own random streams (seed, rank, step); a stop request on any rank
/// stops all at the same step; evaluation and training metrics are reduced.
///
///   auto group = ProcessGroup::from_environment();      // RANK, WORLD_SIZE, ...
///   DataParallel parallel(*group, model.module());
///   FitHooks hooks;
///   parallel.join(hooks);                                // then fit(..., hooks)

#include <attend/models/trainer.h>

#include <torch/arg.h>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attend::models {

/// A distributed run could not be set up or lost a rank. what() is one line.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where this process sits in the run: torchrun's variables.
struct DistributedEnv {
  int rank = 0;        ///< RANK: 0..world_size-1
  int world_size = 1;  ///< WORLD_SIZE
  int local_rank = 0;  ///< LOCAL_RANK: index on this machine
  std::string master_addr = "127.0.0.1";  ///< MASTER_ADDR: host of rank 0 (the TCPStore)
  int master_port = 29500;                ///< MASTER_PORT
};

/// The environment's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
/// nullopt when none of them is set (a one-process run). LOCAL_RANK defaults to
/// RANK, MASTER_ADDR to 127.0.0.1, MASTER_PORT to 29500.
/// throws DistributedError naming the variable that is missing, not a number or out
///        of range (RANK without WORLD_SIZE, RANK >= WORLD_SIZE, a port > 65535, ...).
std::optional<DistributedEnv> distributed_env_from_environment();

struct ProcessGroupOptions {
  /// "tcp": a TCPStore served by rank 0 at MASTER_ADDR:MASTER_PORT (several
  /// machines); "file:PATH": a FileStore at PATH on a folder every rank sees (one
  /// machine or a shared file system; PATH must not hold a previous run's store).
  TORCH_ARG(std::string, store) = "tcp";
  /// Rendezvous and every collective give up after this many seconds.
  TORCH_ARG(double, timeout_seconds) = 300.0;
  /// The network address the Gloo transport binds on this machine ("" = the
  /// address MASTER_ADDR resolves to when it is a loopback, else this host's name).
  TORCH_ARG(std::string, interface_host) = "";
  /// Wait for a collective by polling it, yielding the core between polls, instead
  /// of sleeping until Gloo signals it. Where an idle core takes milliseconds to
  /// wake (virtual machines: on this one, all-reduces of 4 KB to 1 MB between two
  /// processes took 3.3-4.4 ms at the 90th percentile asleep, 0.6-1.2 ms polling;
  /// bench/allreduce_bench), it removes that tail; it keeps the waiting rank's core
  /// busy, so it pays only where every rank has cores of its own.
  TORCH_ARG(bool, spin_wait) = false;
};

/// The ranks of one run, joined through a store. Collectives block and throw
/// DistributedError naming the operation and, when it can be found, the lost rank.
class ProcessGroup {
 public:
  /// Rendezvous of `env.world_size` processes. Checks, before any collective, that
  /// every rank has the same WORLD_SIZE and that no two processes claim one RANK.
  /// throws DistributedError: master unreachable or port in use (naming host:port),
  ///        mismatched world sizes, a taken rank, ranks missing after the timeout.
  /// Sets SIGPIPE to be ignored if it is at its default action: Gloo's writes to a
  /// lost peer would otherwise end this process without a word (see the .cpp).
  ProcessGroup(const DistributedEnv& env, const ProcessGroupOptions& options = {});
  /// The environment's group (distributed_env_from_environment), or nullptr.
  static std::unique_ptr<ProcessGroup> from_environment(const ProcessGroupOptions& options = {});
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  const DistributedEnv& env() const;

  /// Sums each tensor (contiguous, CPU) across ranks in place.
  void all_reduce_sum(torch::Tensor& tensor, const std::string& what);
  /// Maximum across ranks, in place.
  void all_reduce_max(torch::Tensor& tensor, const std::string& what);
  /// Copies rank `root`'s tensor into every rank's, in place.
  void broadcast(torch::Tensor& tensor, int root, const std::string& what);
  /// Every rank's tensor (same shape and dtype on all ranks), in rank order.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor, const std::string& what);
  /// Stores a string in the rendezvous store under this rank's `key`.
  void publish(const std::string& key, const std::string& value);
  /// Rank `from`'s string under `key` (waits for it up to the timeout).
  std::string fetch(const std::string& key, int from);

  /// The asynchronous sum used by gradient buckets: returns a handle to wait on.
  class Pending;
  std::unique_ptr<Pending> all_reduce_sum_async(torch::Tensor& tensor, const std::string& what);
  void wait(Pending& pending);

  /// One line describing a failed collective: which ranks are gone, found by asking
  /// the survivors to check in through the store (waits at most a few seconds).
  std::string describe_failure(const std::string& what, const std::string& error);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct DataParallelOptions {
  /// Gradient bucket size in MiB; 0 = one bucket reduced after backward (no overlap).
  TORCH_ARG(double, bucket_mb) = 1.0;
  /// Size each rank's shard to its measured speed (examples per second of its own
  /// work: data, forward and backward, without the waits), so that a rank on a
  /// slower core or machine does not hold the others back. The ranks exchange their
  /// speeds with each step's values and all compute the same split from the same
  /// smoothed figures (balanced_shard_sizes); the step stays the one-process step
  /// (each rank's gradient is weighted by its share), but which rank takes which
  /// examples, and so the float sums and the ranks' random draws, then depend on
  /// timing: off by default, for runs that must repeat exactly. The smoothed speeds
  /// are kept in checkpoints (FitHooks::save_state): a resumed run starts from them.
  TORCH_ARG(bool, balance) = false;
};

/// Timings and volume of the gradient reduction, summed since construction.
struct DataParallelStats {
  std::int64_t steps = 0;
  std::int64_t buckets = 0;           ///< buckets per step
  std::int64_t bytes_per_step = 0;    ///< payload of one step's all-reduces
  double wait_seconds = 0.0;          ///< time spent after backward waiting for them
  /// This rank's own work: from taking its shard of a global batch to the end of
  /// backward (its data, forward and backward, gradients copied into buckets and the
  /// all-reduces launched on the way), summed over the `work_steps` steps whose
  /// loss function took its shard through FitHooks::shard.
  double work_seconds = 0.0;
  std::int64_t work_steps = 0;
  /// Time in the small per-step collectives: the stop decision and the step's
  /// loss and metrics.
  double sync_seconds = 0.0;
  /// With DataParallelOptions::balance: each rank's smoothed speed (examples per
  /// second) and its shard of the last global batch; empty otherwise.
  std::vector<double> speeds;
  std::vector<std::int64_t> shard_sizes;
};

/// Joins a module to a ProcessGroup for data-parallel training through fit().
/// Keep it alive as long as the module trains; it holds hooks on the parameters.
class DataParallel {
 public:
  /// throws c10::Error for a negative or non-finite bucket size.
  DataParallel(ProcessGroup& group, torch::nn::Module& module, const DataParallelOptions& options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// Sets every member of `hooks` that data parallelism needs: writer (rank 0),
  /// shard, before_backward, after_backward, reduce_step, agree_stop, reduce_metrics,
  /// start and, with DataParallelOptions::balance, save_state.
  void join(FitHooks& hooks);

  /// This rank's part of a global batch: the r-th of W contiguous pieces whose sizes
  /// differ by at most one. Also sets this step's gradient weight (n_r / B).
  std::vector<std::int64_t> shard(const std::vector<std::int64_t>& global_batch);
  /// Copies rank 0's parameters and buffers into this rank's.
  void broadcast_state();
  /// Waits for (or, without overlap, runs) the gradient all-reduces and writes the
  /// weighted sums into the parameters' gradients.
  void finish_gradients();

  DataParallelStats stats() const;
  /// The bucket of each parameter that requires a gradient (in named_parameters()
  /// order); bucket 0 is sent first.
  std::vector<std::int64_t> bucket_of_parameters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The piece of a global batch of `size` that rank `rank` of `world` takes:
/// [begin, end) with sizes differing by at most one (the first size % world ranks
/// take one more).
std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t size, int rank, int world);

/// The shard sizes of a global batch of `size` for ranks of the given speeds (all
/// finite and > 0): every rank gets one example, the rest is shared in proportion to
/// the speeds, rounded by largest remainder (ties to the lower rank). They sum to
/// `size`. A batch smaller than the number of ranks is cut as by shard_range.
/// throws c10::Error for a negative size, no ranks, or a speed that is not > 0.
std::vector<std::int64_t> balanced_shard_sizes(std::int64_t size, const std::vector<double>& speeds);

}  // namespace attend::models
