#include "distributed_run.h"

#include "progress.h"
#include "validate.h"

#include <attend/datasets/parallel.h>
#include <attend/io_error.h>

#include <ATen/Parallel.h>
#include <glog/logging.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace attend::cli {

namespace am = attend::models;

namespace {

/// The cores this process may use (its affinity mask and CPU quota; at least 1).
int cores() { return attend::datasets::available_cores(); }

/// The workers on this machine: LOCAL_WORLD_SIZE, else 1.
int local_world_size() {
  if (const char* v = std::getenv("LOCAL_WORLD_SIZE")) {
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (end != v && *end == '\0' && n >= 1 && n <= 65536) return static_cast<int>(n);
  }
  return 1;
}

}  // namespace

po::options_description distributed_options() {
  po::options_description d("Distributed (when RANK and WORLD_SIZE are set, e.g. by 'attend launch')", 100);
  d.add_options()
      ("dist-store", po::value<std::string>()->default_value("tcp")->value_name("S"),
       "rendezvous: tcp (rank 0 serves it at MASTER_ADDR:MASTER_PORT) or file:PATH (a file every rank sees)")
      ("dist-timeout", po::value<double>()->default_value(300, "300")->value_name("SEC"),
       "give up on a missing rank, the rendezvous or a collective after SEC seconds")
      ("bucket-mb", po::value<double>()->default_value(1.0, "1")->value_name("MB"),
       "gradient all-reduce bucket size; buckets are sent during backward (0 = one bucket after it)")
      ("dist-wait", po::value<std::string>()->default_value("auto")->value_name("W"),
       "wait for collectives by polling (spin) or asleep (block); auto = spin when this machine's workers "
       "times --threads fit the cores they may use")
      ("balance-shards", po::bool_switch(),
       "size each rank's part of a batch to its measured speed (for unequal cores or machines; the split then "
       "depends on timing, so runs do not repeat exactly)")
      ("rank-log", po::bool_switch(), "ranks > 0 write their progress lines to <run-dir>/rank-<r>.log");
  return d;
}

DistributedRun::DistributedRun(const po::variables_map& vm) {
  const auto store = vm["dist-store"].as<std::string>();
  if (store != "tcp" && !(store.rfind("file:", 0) == 0 && store.size() > 5)) {
    throw UsageError("--dist-store must be tcp or file:PATH, got '" + store + "'");
  }
  const double timeout = require_range<double>(vm, "dist-timeout", 0.1, 604800.0);
  bucket_mb_ = require_range<double>(vm, "bucket-mb", 0.0, 4096.0);
  rank_log_ = vm["rank-log"].as<bool>();
  balance_ = vm["balance-shards"].as<bool>();
  const auto wait = vm["dist-wait"].as<std::string>();
  if (wait != "auto" && wait != "spin" && wait != "block") {
    throw UsageError("--dist-wait must be auto, spin or block, got '" + wait + "'");
  }
  const auto env = am::distributed_env_from_environment();
  if (!env) return;
  // Polling keeps a waiting rank's core busy: only where the workers do not share
  // cores (this machine's workers times their threads at most the cores this process
  // may use; a fractional CPU quota counts as the next whole core).
  const bool spin = wait == "spin" || (wait == "auto" && local_world_size() * at::get_num_threads() <= cores());
  // c10d and Gloo log through glog to stderr; attend reports their failures itself,
  // as one line.
  FLAGS_minloglevel = google::GLOG_FATAL;
  group_ = std::make_unique<am::ProcessGroup>(
      *env, am::ProcessGroupOptions().store(store).timeout_seconds(timeout).spin_wait(spin));
}

DistributedRun::~DistributedRun() = default;

void DistributedRun::barrier() {
  if (!group_) return;
  auto t = torch::zeros({1}, torch::kInt32);
  group_->all_reduce_max(t, "a barrier");
}

void DistributedRun::join(torch::nn::Module& module, am::FitHooks& hooks) {
  if (!group_) return;
  parallel_ = std::make_unique<am::DataParallel>(*group_, module,
                                                 am::DataParallelOptions().bucket_mb(bucket_mb_).balance(balance_));
  parallel_->join(hooks);
}

void DistributedRun::report(std::ostream& out) {
  if (!group_ || !parallel_) return;
  // Rank 0 on `out`; the others in their --rank-log, when they keep one.
  if (!writer() && !log_.is_open()) return;
  const auto s = parallel_->stats();
  if (s.steps == 0) return;
  char line[256];
  std::snprintf(line, sizeof line,
                "attend: data-parallel over %d ranks: %lld gradient bucket%s, %.3f MB all-reduced per step, "
                "%.2f ms per step waiting for them after backward, %.2f ms in the step's other collectives",
                size(), static_cast<long long>(s.buckets), s.buckets == 1 ? "" : "s",
                static_cast<double>(s.bytes_per_step) / 1e6, 1000.0 * s.wait_seconds / static_cast<double>(s.steps),
                1000.0 * s.sync_seconds / static_cast<double>(s.steps));
  std::string text = line;
  if (s.work_steps > 0) {
    // Against the run's step time (global batch / rate) this says whether the ranks
    // wait for each other and the network, or compute.
    std::snprintf(line, sizeof line, ", %.2f ms per step on its own part (data, forward, backward)",
                  1000.0 * s.work_seconds / static_cast<double>(s.work_steps));
    text += line;
  }
  if (!s.speeds.empty() && s.speeds.size() == s.shard_sizes.size()) {
    // With --balance-shards: what each rank managed, and the split it led to.
    text += "; ranks' speeds";
    for (std::size_t r = 0; r < s.speeds.size(); ++r) {
      text += (r == 0 ? " " : "/") + std::to_string(static_cast<long long>(std::llround(s.speeds[r])));
    }
    text += " examples/s, last batch split";
    for (std::size_t r = 0; r < s.shard_sizes.size(); ++r) {
      text += (r == 0 ? " " : "/") + std::to_string(s.shard_sizes[r]);
    }
  }
  (writer() ? out : log_) << text << "\n" << std::flush;
}

std::shared_ptr<am::TrainingObserver> DistributedRun::rank_log(const std::string& run_dir) {
  if (!group_ || writer() || !rank_log_) return nullptr;
  const auto path = (std::filesystem::path(run_dir) / ("rank-" + std::to_string(rank()) + ".log")).string();
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);  // rank 0 may not have made it yet
  log_.open(path, std::ios::app);
  if (!log_) throw IoError(path, "cannot open for writing");
  return std::make_shared<ProgressObserver>(log_, false);
}

int default_threads() { return std::max(1, cores() / local_world_size()); }

}  // namespace attend::cli
