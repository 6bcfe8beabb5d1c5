#pragma once
/// What at::parallel_for does in attend's own compiled code.

#include <cstddef>
#include <cstdint>
#include <string>

namespace attend::datasets {

/// How many distinct threads run the chunks of an at::parallel_for over `n` items with
/// grain 1, as compiled into attend's libraries, at the current intra-op thread count.
/// LibTorch 1.13's at::parallel_for is OpenMP inline in its headers: compiled without
/// -fopenmp it runs serially and this is 1 whatever the thread count.
/// requires: n >= 1.
std::size_t parallel_for_threads(std::int64_t n = 64);

/// OpenBLAS (Debian's libopenblas0-pthread, which LibTorch calls for matrix products)
/// runs a thread pool of its own, sized by OPENBLAS_NUM_THREADS or else one thread per
/// core, whatever at::set_num_threads says; its idle threads spin in sched_yield. These
/// reach it through the loaded library's symbols, so they work with any BLAS: the
/// number of threads OpenBLAS multiplies matrices on, or 0 when the BLAS in use is not
/// OpenBLAS.
int blas_threads();

/// The cores this process may run on: the CPUs in the calling thread's affinity mask
/// (taskset, a scheduler's cpuset), fewer when a cgroup CPU quota allows less (docker
/// --cpus, a Kubernetes CPU limit, a systemd slice's CPUQuota; cgroup v2 `cpu.max` or
/// v1 `cpu.cfs_quota_us`, of the process's cgroup or any above it, rounded up); at
/// least 1.
/// std::thread::hardware_concurrency counts the machine's CPUs whatever the process may
/// use, which oversubscribes a process confined to fewer.
int available_cores();

/// The cores a CFS quota of `quota_us` per `period_us` allows a process with `cpus`
/// CPUs: ceil(quota / period), at most `cpus`; `cpus` when there is no quota (quota or
/// period <= 0); at least 1.
int cores_under_quota(long long quota_us, long long period_us, int cpus);

/// The quota in the text of a cgroup v2 `cpu.max` file ("max 100000" or "150000
/// 100000"), as cores_under_quota applies it to `cpus`; `cpus` when the text is "max"
/// or malformed.
int cores_under_cpu_max(const std::string& cpu_max, int cpus);

/// The cores the tightest CPU quota over a process's cgroups allows it, at most `cpus`:
/// `proc_self_cgroup` is the text of /proc/self/cgroup ("0::/a/b" for cgroup v2,
/// "4:cpu,cpuacct:/a/b" for v1), `root` where the hierarchy is mounted (/sys/fs/cgroup).
/// Reads `cpu.max` (v2) or `cpu.cfs_quota_us` and `cpu.cfs_period_us` (v1, under
/// `root`/cpu or `root`/cpu,cpuacct) in the cgroup's folder and every folder above it up
/// to `root`; missing or malformed files are no quota.
int cores_under_cgroup_quota(const std::string& proc_self_cgroup, const std::string& root, int cpus);

/// Sets OpenBLAS's thread count; false (and nothing changed) when the BLAS in use is not
/// OpenBLAS. requires: n >= 1.
bool set_blas_threads(int n);

}  // namespace attend::datasets
