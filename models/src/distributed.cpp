#include "attend/models/distributed.h"

// Debian's LibTorch is built with Gloo; its c10d header declares the Gloo process
// group only under this macro. Only this file sees c10d.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <attend/datasets/rng.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <thread>

namespace attend::models {
namespace {

using Clock = std::chrono::steady_clock;
using Milliseconds = std::chrono::milliseconds;

// Streams of datasets::stream_key(seed, n, ...) drawn here.
constexpr std::uint64_t kRankGeneratorStream = 11;

/// Gloo writes to its peers with writev(2), which raises SIGPIPE when a peer has
/// gone: at its default action that ends this process silently, before the
/// collective can fail and name the lost rank. Ignored here (as the Python
/// interpreter does for PyTorch), unless the program installed its own handler.
void ignore_sigpipe() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) return;
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGPIPE, &ignore, nullptr);
}

std::optional<std::string> env_var(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

long env_int(const char* name, const std::string& value, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(value.c_str(), &end, 10);
  if (value.empty() || end == nullptr || *end != '\0' || errno != 0 || v < lo || v > hi) {
    throw DistributedError(std::string(name) + " must be a whole number in " + std::to_string(lo) + ".." +
                           std::to_string(hi) + ", got '" + value + "'");
  }
  return v;
}

/// The first line of an exception text, without LibTorch's backtrace.
std::string first_line(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10 != nullptr ? c10->what_without_backtrace() : e.what();
  const auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

bool contains(const std::string& text, const char* what) {
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.find(what) != std::string::npos;
}

std::string seconds_text(Milliseconds t) {
  const double s = static_cast<double>(t.count()) / 1000.0;
  std::ostringstream out;
  out << s << " s";
  return out.str();
}

std::string to_string(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }
std::vector<uint8_t> to_bytes(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

/// FNV-1a: a hash that is the same on every machine and build.
std::uint64_t stable_hash(const std::string& text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

std::optional<DistributedEnv> distributed_env_from_environment() {
  const auto rank = env_var("RANK");
  const auto world = env_var("WORLD_SIZE");
  if (!rank && !world) return std::nullopt;
  if (!world) throw DistributedError("RANK is set but WORLD_SIZE is not (both are needed for a distributed run)");
  if (!rank) throw DistributedError("WORLD_SIZE is set but RANK is not (both are needed for a distributed run)");
  DistributedEnv env;
  env.world_size = static_cast<int>(env_int("WORLD_SIZE", *world, 1, 65536));
  env.rank = static_cast<int>(env_int("RANK", *rank, 0, 65535));
  if (env.rank >= env.world_size) {
    throw DistributedError("RANK " + std::to_string(env.rank) + " is outside 0.." +
                           std::to_string(env.world_size - 1) + " (WORLD_SIZE is " + std::to_string(env.world_size) +
                           ")");
  }
  env.local_rank = env.rank;
  if (const auto local = env_var("LOCAL_RANK")) env.local_rank = static_cast<int>(env_int("LOCAL_RANK", *local, 0, 65535));
  if (const auto addr = env_var("MASTER_ADDR")) {
    if (addr->empty()) throw DistributedError("MASTER_ADDR is empty");
    env.master_addr = *addr;
  }
  if (const auto port = env_var("MASTER_PORT")) env.master_port = static_cast<int>(env_int("MASTER_PORT", *port, 1, 65535));
  return env;
}

std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t size, int rank, int world) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "shard_range: rank ", rank, " of ", world);
  TORCH_CHECK(size >= 0, "shard_range: size must be >= 0, got ", size);
  const std::int64_t base = size / world, extra = size % world;
  const std::int64_t begin = rank * base + std::min<std::int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

std::vector<std::int64_t> balanced_shard_sizes(std::int64_t size, const std::vector<double>& speeds) {
  const auto world = static_cast<std::int64_t>(speeds.size());
  TORCH_CHECK(world >= 1, "balanced_shard_sizes: no ranks");
  TORCH_CHECK(size >= 0, "balanced_shard_sizes: size must be >= 0, got ", size);
  double total = 0;
  for (const double v : speeds) {
    TORCH_CHECK(std::isfinite(v) && v > 0, "balanced_shard_sizes: speeds must be > 0, got ", v);
    total += v;
  }
  std::vector<std::int64_t> sizes(speeds.size());
  if (size < world) {
    for (std::int64_t r = 0; r < world; ++r) {
      const auto [begin, end] = shard_range(size, static_cast<int>(r), static_cast<int>(world));
      sizes[static_cast<std::size_t>(r)] = end - begin;
    }
    return sizes;
  }
  const auto rest = size - world;
  std::vector<double> remainder(speeds.size());
  std::int64_t given = 0;
  for (std::size_t r = 0; r < speeds.size(); ++r) {
    const double quota = static_cast<double>(rest) * speeds[r] / total;
    const auto whole = std::min<std::int64_t>(rest, static_cast<std::int64_t>(std::floor(quota)));
    sizes[r] = 1 + whole;
    remainder[r] = quota - static_cast<double>(whole);
    given += whole;
  }
  std::vector<std::size_t> order(speeds.size());
  for (std::size_t r = 0; r < order.size(); ++r) order[r] = r;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return remainder[a] > remainder[b]; });
  for (std::size_t i = 0; given < rest; i = (i + 1) % order.size(), ++given) ++sizes[order[i]];
  return sizes;
}

// ---------------------------------------------------------------------------
// ProcessGroup

struct ProcessGroup::Impl {
  DistributedEnv env;
  ProcessGroupOptions options;
  Milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;

  std::string master() const { return env.master_addr + ":" + std::to_string(env.master_port); }

  void connect_store() {
    const auto& spec = options.store();
    if (spec == "tcp") {
      c10d::TCPStoreOptions o;
      o.port = static_cast<std::uint16_t>(env.master_port);
      o.isServer = env.rank == 0;
      o.numWorkers = static_cast<std::size_t>(env.world_size);
      o.waitWorkers = false;  // the check-in below waits, with clearer errors
      o.timeout = timeout;
      try {
        store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
      } catch (const std::exception& e) {
        const auto why = first_line(e);
        if (env.rank == 0 && contains(why, "in use")) {
          throw DistributedError("cannot serve the rendezvous on " + master() +
                                 ": the port is in use (another run on it? set another MASTER_PORT)");
        }
        if (env.rank == 0) throw DistributedError("cannot serve the rendezvous on " + master() + ": " + why);
        throw DistributedError("cannot reach the master " + master() + " within " + seconds_text(timeout) +
                               " (is rank 0 running, and MASTER_ADDR/MASTER_PORT right?): " + why);
      }
    } else if (spec.rfind("file:", 0) == 0 && spec.size() > 5) {
      try {
        store = c10::make_intrusive<c10d::FileStore>(spec.substr(5), env.world_size);
        store->setTimeout(timeout);
      } catch (const std::exception& e) {
        throw DistributedError("cannot use the file store " + spec.substr(5) + ": " + first_line(e));
      }
    } else {
      throw DistributedError("unknown store '" + spec + "' (expected tcp or file:PATH)");
    }
  }

  /// Before any collective: one process per rank, one world size.
  void check_in() {
    const auto r = std::to_string(env.rank);
    const auto world = std::to_string(env.world_size);
    try {
      if (store->add("attend/rank/" + r, 1) > 1) {
        throw DistributedError("RANK " + r + " is claimed by two processes (each worker needs its own RANK)");
      }
      store->set("attend/world/" + r, to_bytes(world));
      if (env.rank != 0) {
        const auto theirs = to_string(store->get("attend/world/0"));
        store->set("attend/seen/" + r, to_bytes("1"));  // rank 0 may now stop serving the store
        if (theirs != world) {
          throw DistributedError("WORLD_SIZE is " + world + " here but " + theirs + " on rank 0");
        }
        return;
      }
      for (int q = 1; q < env.world_size; ++q) {
        const auto key = "attend/world/" + std::to_string(q);
        try {
          store->wait({key}, timeout);
        } catch (const std::exception&) {
          throw DistributedError("rank " + std::to_string(q) + " did not join within " + seconds_text(timeout) +
                                 " (started with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE " + world + "?)");
        }
        const auto theirs = to_string(store->get(key));
        if (theirs != world) {
          // Serve the store until that rank has read rank 0's size, so it can say
          // what is wrong too (for a few seconds at most).
          try {
            store->wait({"attend/seen/" + std::to_string(q)}, std::chrono::seconds(5));
          } catch (const std::exception&) {
          }
          throw DistributedError("WORLD_SIZE is " + world + " on rank 0 but " + theirs + " on rank " +
                                 std::to_string(q));
        }
      }
    } catch (const DistributedError&) {
      throw;
    } catch (const std::exception& e) {
      throw DistributedError("rendezvous at " + master() + " failed: " + first_line(e));
    }
  }

  void make_group() {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    std::string host = options.interface_host();
    if (host.empty() && (options.store() != "tcp" || is_loopback(env.master_addr))) host = "127.0.0.1";
    try {
      gloo_options->devices.push_back(host.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                                   : c10d::ProcessGroupGloo::createDeviceForHostname(host));
      gloo_options->threads = 2;
      gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, gloo_options);
    } catch (const std::exception& e) {
      throw DistributedError("cannot connect the " + std::to_string(env.world_size) + " ranks (Gloo on " +
                             (host.empty() ? std::string("this host's address") : host) +
                             "): " + first_line(e));
    }
  }
};

class ProcessGroup::Pending {
 public:
  Pending(c10::intrusive_ptr<c10d::Work> work, std::string what) : work_(std::move(work)), what_(std::move(what)) {}
  c10::intrusive_ptr<c10d::Work> work_;
  std::string what_;
};

ProcessGroup::ProcessGroup(const DistributedEnv& env, const ProcessGroupOptions& options)
    : impl_(std::make_unique<Impl>()) {
  TORCH_CHECK(env.world_size >= 1 && env.rank >= 0 && env.rank < env.world_size, "ProcessGroup: rank ", env.rank,
              " of ", env.world_size);
  if (!(std::isfinite(options.timeout_seconds()) && options.timeout_seconds() > 0 &&
        options.timeout_seconds() <= 7 * 24 * 3600)) {
    throw DistributedError("the distributed timeout must be in (0, 604800] seconds, got " +
                           std::to_string(options.timeout_seconds()));
  }
  impl_->env = env;
  impl_->options = options;
  impl_->timeout = Milliseconds(static_cast<std::int64_t>(std::llround(options.timeout_seconds() * 1000.0)));
  ignore_sigpipe();
  impl_->connect_store();
  impl_->check_in();
  impl_->make_group();
}

std::unique_ptr<ProcessGroup> ProcessGroup::from_environment(const ProcessGroupOptions& options) {
  const auto env = distributed_env_from_environment();
  if (!env) return nullptr;
  return std::make_unique<ProcessGroup>(*env, options);
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world_size; }
const DistributedEnv& ProcessGroup::env() const { return impl_->env; }

std::string ProcessGroup::describe_failure(const std::string& what, const std::string& error) {
  // Survivors check in under a key of their own; whoever has not after a few
  // seconds is gone. Without the store (served by rank 0), rank 0 is gone.
  const auto me = impl_->env.rank;
  std::vector<int> lost;
  try {
    impl_->store->set("attend/alive/" + std::to_string(me), to_bytes("1"));
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    std::vector<int> missing;
    for (int q = 0; q < impl_->env.world_size; ++q) {
      if (q != me) missing.push_back(q);
    }
    while (!missing.empty() && Clock::now() < deadline) {
      std::vector<int> still;
      for (const int q : missing) {
        if (!impl_->store->check({"attend/alive/" + std::to_string(q)})) still.push_back(q);
      }
      missing.swap(still);
      if (!missing.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    lost = missing;
  } catch (const std::exception&) {
    lost = {0};
  }
  std::string who;
  if (lost.empty()) {
    who = "a rank failed";
  } else {
    who = lost.size() == 1 ? "lost rank " : "lost ranks ";
    for (std::size_t i = 0; i < lost.size(); ++i) who += (i == 0 ? "" : ", ") + std::to_string(lost[i]);
    if (lost == std::vector<int>{0} && me != 0) who += " (which serves the rendezvous)";
  }
  return "rank " + std::to_string(me) + ": " + who + " during " + what + " (" + error + ")";
}

void ProcessGroup::wait(Pending& pending) {
  try {
    if (impl_->options.spin_wait()) {
      // Poll, giving the core to any other thread between polls; a failed or timed
      // out collective completes too, and wait() below reports it.
      while (!pending.work_->isCompleted()) std::this_thread::yield();
    }
    pending.work_->wait();
  } catch (const std::exception& e) {
    throw DistributedError(describe_failure(pending.what_, first_line(e)));
  }
}

namespace {

/// Starts a collective and waits for it; failures become one DistributedError.
void run_collective(ProcessGroup& group, const std::string& what,
                    const std::function<c10::intrusive_ptr<c10d::Work>()>& start) {
  std::unique_ptr<ProcessGroup::Pending> pending;
  try {
    pending = std::make_unique<ProcessGroup::Pending>(start(), what);
  } catch (const std::exception& e) {
    throw DistributedError(group.describe_failure(what, first_line(e)));
  }
  group.wait(*pending);
}

}  // namespace

std::unique_ptr<ProcessGroup::Pending> ProcessGroup::all_reduce_sum_async(torch::Tensor& tensor,
                                                                          const std::string& what) {
  std::vector<at::Tensor> tensors{tensor};
  try {
    return std::make_unique<Pending>(impl_->gloo->allreduce(tensors, c10d::AllreduceOptions{}), what);
  } catch (const std::exception& e) {
    throw DistributedError(describe_failure(what, first_line(e)));
  }
}

void ProcessGroup::all_reduce_sum(torch::Tensor& tensor, const std::string& what) {
  auto pending = all_reduce_sum_async(tensor, what);
  wait(*pending);
}

void ProcessGroup::all_reduce_max(torch::Tensor& tensor, const std::string& what) {
  std::vector<at::Tensor> tensors{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  run_collective(*this, what, [&] { return impl_->gloo->allreduce(tensors, options); });
}

void ProcessGroup::broadcast(torch::Tensor& tensor, int root, const std::string& what) {
  std::vector<at::Tensor> tensors{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  run_collective(*this, what, [&] { return impl_->gloo->broadcast(tensors, options); });
}

std::vector<torch::Tensor> ProcessGroup::all_gather(const torch::Tensor& tensor, const std::string& what) {
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int q = 0; q < size(); ++q) outputs[0].push_back(torch::empty_like(tensor));
  std::vector<at::Tensor> inputs{tensor.contiguous()};
  run_collective(*this, what, [&] { return impl_->gloo->allgather(outputs, inputs); });
  return outputs[0];
}

void ProcessGroup::publish(const std::string& key, const std::string& value) {
  try {
    impl_->store->set("attend/pub/" + key + "/" + std::to_string(rank()), to_bytes(value));
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank()) + ": cannot publish " + key + ": " + first_line(e));
  }
}

std::string ProcessGroup::fetch(const std::string& key, int from) {
  try {
    return to_string(impl_->store->get("attend/pub/" + key + "/" + std::to_string(from)));
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank()) + ": cannot read rank " + std::to_string(from) + "'s " +
                           key + ": " + first_line(e));
  }
}

// ---------------------------------------------------------------------------
// DataParallel

struct DataParallel::Impl {
  struct Bucket {
    std::vector<std::size_t> params;    // indices into Impl::params
    std::vector<std::int64_t> offsets;  // of each parameter in flat
    std::int64_t numel = 0;             // gradient elements; presence flags follow
    torch::Tensor flat;                 // [numel + params.size()]
    std::int64_t missing = 0;           // gradients not yet arrived this step
    std::unique_ptr<ProcessGroup::Pending> pending;
  };

  ProcessGroup& group;
  torch::nn::Module& module;
  bool overlap = true;
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;
  std::vector<std::size_t> bucket_of;
  std::vector<std::int64_t> slot_of;  // index within its bucket
  std::vector<bool> arrived;
  std::vector<Bucket> buckets;
  std::vector<unsigned> hook_handles;
  std::size_t next_launch = 0;
  // Gradients, the loss and the metrics are multiplied by `weight` before they are
  // summed over the ranks: n_r / B of this step (the shares sum to 1), or, when the
  // loss is a mean over `terms` (words, say), this rank's terms; the sums are then
  // divided by all ranks' terms (`divisor`, from reduce_step, before finish needs it).
  double weight = 1.0;
  bool by_terms = false;
  double divisor = 0.0;      // all ranks' terms this step; 0 = not known yet
  bool empty_shard = false;  // this step's shard is a stand-in example of weight 0
  // The step's values (loss, metrics, examples, stop) in flight: started before
  // backward, so that they travel ahead of the gradients instead of behind them.
  torch::Tensor step_values;
  std::unique_ptr<ProcessGroup::Pending> step_pending;
  // Shards sized to speed (DataParallelOptions::balance): every rank's smoothed
  // speed, the same on all ranks (empty until the first exchange); this rank's
  // speed in its last step, sent with the next step's values (0 = none yet).
  bool balance = false;
  std::vector<double> speeds;
  bool speeds_restored = false;  // `speeds` came from a checkpoint, not yet measured
  double my_speed = 0.0;
  std::int64_t my_examples = 0;  // this step's shard, for the speed
  std::optional<Clock::time_point> shard_time;
  DataParallelStats stats;

  Impl(ProcessGroup& g, torch::nn::Module& m) : group(g), module(m) {}

  double default_weight() const { return 1.0 / static_cast<double>(group.size()); }

  void build(double bucket_mb) {
    for (const auto& item : module.named_parameters(/*recurse=*/true)) {
      if (!item.value().requires_grad()) continue;
      names.push_back(item.key());
      params.push_back(item.value());
    }
    const auto limit = static_cast<std::int64_t>(bucket_mb * 1024.0 * 1024.0);
    bucket_of.assign(params.size(), 0);
    slot_of.assign(params.size(), 0);
    arrived.assign(params.size(), false);
    // Backward produces gradients roughly from the last parameter to the first.
    for (std::size_t k = params.size(); k-- > 0;) {
      const auto& p = params[k];
      const auto bytes = p.numel() * static_cast<std::int64_t>(p.element_size());
      // A bucket holds one dtype; with overlap, about `limit` bytes (at least one
      // parameter); without, everything of its dtype.
      bool fresh = buckets.empty() || params[buckets.back().params.front()].scalar_type() != p.scalar_type();
      if (!fresh && overlap) {
        fresh = buckets.back().numel * static_cast<std::int64_t>(p.element_size()) + bytes > limit;
      }
      if (fresh) buckets.emplace_back();
      auto& b = buckets.back();
      bucket_of[k] = buckets.size() - 1;
      slot_of[k] = static_cast<std::int64_t>(b.params.size());
      b.params.push_back(k);
      b.offsets.push_back(b.numel);
      b.numel += p.numel();
    }
    for (auto& b : buckets) {
      const auto& p = params[b.params.front()];
      b.flat = torch::zeros({b.numel + static_cast<std::int64_t>(b.params.size())}, p.options().requires_grad(false));
      b.missing = static_cast<std::int64_t>(b.params.size());
      stats.bytes_per_step += b.flat.numel() * static_cast<std::int64_t>(b.flat.element_size());
    }
    stats.buckets = static_cast<std::int64_t>(buckets.size());
    weight = default_weight();
    if (!overlap) return;
    for (std::size_t k = 0; k < params.size(); ++k) {
      hook_handles.push_back(params[k].register_hook([this, k](const torch::Tensor& grad) { arrive(k, grad); }));
    }
  }

  torch::Tensor slot(std::size_t k) {
    auto& b = buckets[bucket_of[k]];
    const auto i = static_cast<std::size_t>(slot_of[k]);
    return b.flat.narrow(0, b.offsets[i], params[k].numel());
  }
  torch::Tensor presence(std::size_t k) {
    auto& b = buckets[bucket_of[k]];
    return b.flat.narrow(0, b.numel + slot_of[k], 1);
  }

  void arrive(std::size_t k, const torch::Tensor& grad) {
    torch::NoGradGuard no_grad;
    auto& b = buckets[bucket_of[k]];
    TORCH_CHECK(!b.pending, "DataParallel: a second gradient of ", names[k],
                " arrived after its bucket was sent (one backward per step)");
    if (arrived[k]) {
      slot(k).add_(grad.reshape({-1}), weight);
      return;
    }
    slot(k).copy_(grad.reshape({-1})).mul_(weight);
    presence(k).fill_(1);
    arrived[k] = true;
    if (--b.missing == 0) launch_ready();
  }

  /// Starts, in bucket order, every bucket whose gradients are all there.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].missing == 0) {
      auto& b = buckets[next_launch];
      b.pending = group.all_reduce_sum_async(b.flat, "the gradient all-reduce");
      ++next_launch;
    }
  }

  void finish() {
    torch::NoGradGuard no_grad;
    const auto t0 = Clock::now();
    if (!overlap) {
      // Gradients as backward left them.
      for (std::size_t k = 0; k < params.size(); ++k) {
        const auto& g = params[k].grad();
        if (g.defined()) {
          slot(k).copy_(g.reshape({-1})).mul_(weight);
          presence(k).fill_(1);
        } else {
          slot(k).zero_();
          presence(k).zero_();
        }
      }
      for (auto& b : buckets) b.missing = 0;
    } else {
      // Parameters that took no part in this step's loss send zeros.
      for (std::size_t k = 0; k < params.size(); ++k) {
        if (arrived[k]) continue;
        slot(k).zero_();
        presence(k).zero_();
        --buckets[bucket_of[k]].missing;
      }
    }
    launch_ready();
    TORCH_CHECK(!by_terms || divisor > 0, "DataParallel: the step weighted by terms needs reduce_step before ",
                "the gradients are finished");
    for (auto& b : buckets) {
      group.wait(*b.pending);
      b.pending.reset();
      if (by_terms) b.flat.narrow(0, 0, b.numel).div_(divisor);
      const auto flags = b.flat.narrow(0, b.numel, static_cast<std::int64_t>(b.params.size()))
                             .to(torch::kFloat64)
                             .contiguous();
      const double* present = flags.data_ptr<double>();
      for (std::size_t i = 0; i < b.params.size(); ++i) {
        const auto k = b.params[i];
        auto& p = params[k];
        if (present[i] < 0.5) continue;  // no rank had a gradient for it
        const auto sum = slot(k).view_as(p);
        if (p.grad().defined()) {
          p.mutable_grad().copy_(sum);
        } else {
          p.mutable_grad() = sum.clone();
        }
      }
      b.missing = static_cast<std::int64_t>(b.params.size());
    }
    std::fill(arrived.begin(), arrived.end(), false);
    next_launch = 0;
    // The next step's shard sets them again; without one, every rank has an equal share.
    weight = default_weight();
    by_terms = false;
    divisor = 0.0;
    empty_shard = false;
    ++stats.steps;
    stats.wait_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void broadcast_state() {
    torch::NoGradGuard no_grad;
    for (const auto& item : module.named_parameters(/*recurse=*/true)) {
      auto t = item.value().detach();
      TORCH_CHECK(t.is_contiguous(), "DataParallel: parameter ", item.key(), " is not contiguous");
      group.broadcast(t, 0, "the broadcast of " + item.key());
    }
    for (const auto& item : module.named_buffers(/*recurse=*/true)) {
      auto t = item.value().detach();
      if (!t.is_contiguous()) continue;
      group.broadcast(t, 0, "the broadcast of " + item.key());
    }
  }

  /// What must be equal on every rank: the run's identity and the parameters.
  nlohmann::json fingerprint(const StartInfo& info) const {
    nlohmann::json parameters = nlohmann::json::object();
    for (const auto& item : module.named_parameters(/*recurse=*/true)) {
      parameters[item.key()] = c10::str(item.value().sizes(), " ", item.value().scalar_type());
    }
    // How the ranks cut their collectives: every rank must send the same buckets and
    // the same step values, or the all-reduces would not match.
    std::vector<std::int64_t> bucket_sizes;
    for (const auto& b : buckets) bucket_sizes.push_back(b.flat.numel());
    return {{"run", info.identity},
            {"parameters", parameters},
            {"data_parallel", {{"bucket_sizes", bucket_sizes}, {"balance_shards", balance}}}};
  }

  void start(const StartInfo& info) {
    const auto me = group.rank();
    const auto print = fingerprint(info);
    const auto text = print.dump();
    auto mine = torch::tensor({static_cast<std::int64_t>(stable_hash(text)), static_cast<std::int64_t>(info.resumed),
                               info.global_step},
                              torch::kInt64);
    const auto all = group.all_gather(mine, "the start-up check");
    const auto hash0 = all[0][0].item<std::int64_t>();
    int differs = -1;
    for (int q = 1; q < group.size() && differs < 0; ++q) {
      if (all[q][0].item<std::int64_t>() != hash0) differs = q;
    }
    if (differs >= 0) {
      // Every rank takes part, so all stop with the same line.
      group.publish("identity", text);
      const auto left = nlohmann::json::parse(group.fetch("identity", 0));
      const auto right = nlohmann::json::parse(group.fetch("identity", differs));
      const auto d = first_difference(left, right);
      throw DistributedError("rank " + std::to_string(me) + ": rank " + std::to_string(differs) +
                             " runs another model or training than rank 0: " +
                             (d.path.empty() ? std::string("their descriptions differ")
                                             : d.path + " is " + d.left + " on rank 0 but " + d.right + " on rank " +
                                                   std::to_string(differs)) +
                             " (every rank needs the same command)");
    }
    const auto resumed0 = all[0][1].item<std::int64_t>();
    const auto step0 = all[0][2].item<std::int64_t>();
    for (int q = 1; q < group.size(); ++q) {
      const auto resumed = all[q][1].item<std::int64_t>();
      const auto step = all[q][2].item<std::int64_t>();
      if (resumed == resumed0 && step == step0) continue;
      auto state = [](std::int64_t r, std::int64_t s) {
        return r != 0 ? "resumes from step " + std::to_string(s) : std::string("finds no checkpoint to resume");
      };
      throw DistributedError("rank " + std::to_string(me) + ": rank " + std::to_string(q) + " " +
                             state(resumed, step) + " but rank 0 " + state(resumed0, step0) +
                             "; every rank must see the same run folder (share it between machines)");
    }
    broadcast_state();
    if (balance) restore_speeds(info.hook_state);
    if (me == 0) return;
    // Ranks > 0 draw from streams of their own, defined by (seed, rank, step), so a
    // resumed run draws what an uninterrupted one would have from there on.
    std::uint64_t seed = 0;
    const auto& identity = info.identity;
    if (identity.contains("training") && identity["training"].contains("seed") &&
        identity["training"]["seed"].is_number_integer()) {
      seed = identity["training"]["seed"].get<std::uint64_t>();
    }
    const auto base = datasets::stream_key(seed, kRankGeneratorStream, static_cast<std::uint64_t>(me));
    const auto step = static_cast<std::uint64_t>(info.global_step);
    {
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_current_seed(datasets::stream_key(base, step, 0));
    }
    std::uint64_t index = 1;
    for (const auto& [name, generator] : info.generators) {
      auto g = generator;
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_current_seed(datasets::stream_key(base, step, index++));
    }
  }

  /// Starts the all-reduce of this rank's step values; reduce_step finishes it.
  void start_step(double loss, const Metrics& metrics, std::int64_t examples, bool stop) {
    TORCH_CHECK(!step_pending, "DataParallel: the step's values were started twice");
    const auto t0 = Clock::now();
    // Each rank's values times its weight, the weights (the divisor), the examples
    // and the number of ranks asking to stop.
    std::vector<double> values{loss * weight, weight, empty_shard ? 0.0 : static_cast<double>(examples),
                               stop ? 1.0 : 0.0, by_terms ? 1.0 : 0.0};
    for (const auto& [name, value] : metrics) values.push_back(value * weight);
    if (balance) {
      for (int r = 0; r < group.size(); ++r) values.push_back(r == group.rank() ? my_speed : 0.0);
    }
    step_values = torch::tensor(values, torch::kFloat64);
    step_pending = group.all_reduce_sum_async(step_values, "the step's metrics");
    stats.sync_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void reduce_step(double& loss, Metrics& metrics, std::int64_t& examples, bool& stop) {
    // This rank's own work of the step ends here: the data, forward and backward.
    if (shard_time) {
      const double seconds = std::chrono::duration<double>(Clock::now() - *shard_time).count();
      stats.work_seconds += seconds;
      ++stats.work_steps;
      if (balance && my_examples > 0 && seconds > 0) my_speed = static_cast<double>(my_examples) / seconds;
    }
    shard_time.reset();
    if (!step_pending) start_step(loss, metrics, examples, stop);
    const auto t0 = Clock::now();
    group.wait(*step_pending);
    step_pending.reset();
    const auto* v = step_values.data_ptr<double>();
    // The shares of the global batch sum to 1; terms to the global batch's terms.
    const double total = by_terms ? v[1] : 1.0;
    loss = v[0] / total;
    examples = static_cast<std::int64_t>(std::llround(v[2]));
    stop = v[3] > 0.5;
    const auto weighing_by_terms = std::llround(v[4]);
    TORCH_CHECK(weighing_by_terms == 0 || weighing_by_terms == group.size(), "DataParallel: ", weighing_by_terms,
                " of ", group.size(), " ranks weigh this step by terms (the loss functions disagree)");
    std::size_t i = 5;
    for (auto& [name, value] : metrics) value = v[i++] / total;
    if (balance) update_speeds(v + i);
    if (by_terms) {
      TORCH_CHECK(v[1] > 0, "DataParallel: no rank has a term to average over in this step");
      divisor = v[1];
    }
    stats.sync_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  /// What a checkpoint keeps of the balancing: the smoothed speeds (null before the
  /// first exchange).
  nlohmann::json saved_state() const {
    if (speeds.empty()) return nullptr;
    return {{"shard_speeds", speeds}};
  }

  /// The speeds of the checkpoint resumed from, so that the resumed run splits its
  /// first batches as the interrupted one would have instead of evenly. Rank 0's copy
  /// is broadcast (every rank then starts from the same figures); speeds kept for
  /// another number of ranks are dropped. They only bridge the steps before the first
  /// measurement arrives (a step's speed travels with the next step's values): that
  /// replaces them, as in a fresh run (the ranks may be on other cores or machines now).
  void restore_speeds(const nlohmann::json& hook_state) {
    const auto world = static_cast<std::size_t>(group.size());
    std::vector<double> kept(world, 0.0);
    if (hook_state.is_object() && hook_state.contains("shard_speeds") && hook_state["shard_speeds"].is_array() &&
        hook_state["shard_speeds"].size() == world) {
      for (std::size_t r = 0; r < world; ++r) {
        const auto& v = hook_state["shard_speeds"][r];
        kept[r] = v.is_number() ? v.get<double>() : 0.0;
      }
    }
    auto t = torch::tensor(kept, torch::kFloat64);
    group.broadcast(t, 0, "the ranks' speeds");
    const auto* v = t.data_ptr<double>();
    for (std::size_t r = 0; r < world; ++r) {
      if (!(std::isfinite(v[r]) && v[r] > 0)) return;
    }
    speeds.assign(v, v + world);
    speeds_restored = true;
    stats.speeds = speeds;
  }

  /// Every rank's speed in its last step (0 = not measured): smoothed into `speeds`
  /// once all ranks have one. Every rank computes the same figures from the same sums.
  void update_speeds(const double* reported) {
    const auto world = static_cast<std::size_t>(group.size());
    for (std::size_t r = 0; r < world; ++r) {
      if (!(std::isfinite(reported[r]) && reported[r] > 0)) return;
    }
    if (speeds.empty() || speeds_restored) {
      speeds.assign(reported, reported + world);
      speeds_restored = false;
    } else {
      // A running mean over about the last 10 steps: one slow step (a page fault, a
      // neighbour's burst) moves the split a little, a slower core moves it for good.
      for (std::size_t r = 0; r < world; ++r) speeds[r] = 0.9 * speeds[r] + 0.1 * reported[r];
    }
    stats.speeds = speeds;
  }

  bool agree_stop(bool local) {
    const auto t0 = Clock::now();
    auto t = torch::tensor({static_cast<std::int32_t>(local)}, torch::kInt32);
    group.all_reduce_max(t, "the stop decision");
    stats.sync_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    return t.item<std::int32_t>() != 0;
  }

  Metrics reduce_metrics(const Metrics& metrics) {
    if (metrics.empty()) return metrics;
    std::vector<double> values;
    for (const auto& [name, value] : metrics) values.push_back(value);
    auto t = torch::tensor(values, torch::kFloat64);
    group.all_reduce_sum(t, "the evaluation metrics");
    Metrics out = metrics;
    std::size_t i = 0;
    for (auto& [name, value] : out) value = t.data_ptr<double>()[i++] / static_cast<double>(group.size());
    return out;
  }

  void before_backward(const StepLoss& out) {
    if (out.terms <= 0) return;
    // A stand-in example (empty shard) keeps weight 0.
    weight = empty_shard ? 0.0 : static_cast<double>(out.terms);
    by_terms = true;
  }

  std::vector<std::int64_t> shard(const std::vector<std::int64_t>& global) {
    TORCH_CHECK(!global.empty(), "DataParallel: an empty global batch");
    const auto size = static_cast<std::int64_t>(global.size());
    auto [begin, end] = shard_range(size, group.rank(), group.size());
    if (balance && !speeds.empty()) {
      const auto sizes = balanced_shard_sizes(size, speeds);
      begin = 0;
      for (int r = 0; r < group.rank(); ++r) begin += sizes[static_cast<std::size_t>(r)];
      end = begin + sizes[static_cast<std::size_t>(group.rank())];
      stats.shard_sizes = sizes;
    }
    weight = static_cast<double>(end - begin) / static_cast<double>(size);
    empty_shard = begin == end;
    my_examples = end - begin;
    shard_time = Clock::now();
    // A global batch smaller than the number of ranks (an epoch's last, say): the
    // ranks left without an example compute one with weight 0, so that every rank
    // runs the same collectives with the same metrics.
    if (empty_shard) return {global[static_cast<std::size_t>(group.rank()) % global.size()]};
    return std::vector<std::int64_t>(global.begin() + begin, global.begin() + end);
  }
};

DataParallel::DataParallel(ProcessGroup& group, torch::nn::Module& module, const DataParallelOptions& options)
    : impl_(std::make_unique<Impl>(group, module)) {
  TORCH_CHECK(std::isfinite(options.bucket_mb()) && options.bucket_mb() >= 0 && options.bucket_mb() <= 4096,
              "DataParallel: bucket size must be in 0..4096 MiB, got ", options.bucket_mb());
  impl_->overlap = options.bucket_mb() > 0;
  impl_->balance = options.balance();
  impl_->build(options.bucket_mb());
}

DataParallel::~DataParallel() {
  for (std::size_t k = 0; k < impl_->hook_handles.size(); ++k) impl_->params[k].remove_hook(impl_->hook_handles[k]);
}

void DataParallel::join(FitHooks& hooks) {
  auto* impl = impl_.get();
  hooks.writer = impl->group.rank() == 0;
  hooks.shard = [impl](const std::vector<std::int64_t>& batch) { return impl->shard(batch); };
  hooks.before_backward = [impl](const StepLoss& out) { impl->before_backward(out); };
  hooks.after_backward = [impl](const StepContext&) { impl->finish(); };
  hooks.start_reduce_step = [impl](double loss, const Metrics& metrics, std::int64_t examples, bool stop) {
    impl->start_step(loss, metrics, examples, stop);
  };
  hooks.reduce_step = [impl](double& loss, Metrics& metrics, std::int64_t& examples, bool& stop) {
    impl->reduce_step(loss, metrics, examples, stop);
  };
  hooks.agree_stop = [impl](bool local) { return impl->agree_stop(local); };
  hooks.reduce_metrics = [impl](const Metrics& metrics) { return impl->reduce_metrics(metrics); };
  hooks.start = [impl](const StartInfo& info) { impl->start(info); };
  if (impl->balance) hooks.save_state = [impl] { return impl->saved_state(); };
}

std::vector<std::int64_t> DataParallel::shard(const std::vector<std::int64_t>& global_batch) {
  return impl_->shard(global_batch);
}
void DataParallel::broadcast_state() { impl_->broadcast_state(); }
void DataParallel::finish_gradients() { impl_->finish(); }
DataParallelStats DataParallel::stats() const { return impl_->stats; }

std::vector<std::int64_t> DataParallel::bucket_of_parameters() const {
  return std::vector<std::int64_t>(impl_->bucket_of.begin(), impl_->bucket_of.end());
}

}  // namespace attend::models
