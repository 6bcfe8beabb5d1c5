// attend launch: starts the workers of a data-parallel run on this machine with
// torchrun's variables set, prefixes their output with the rank, forwards Ctrl-C,
// and when a worker fails, stops the others and exits non-zero naming it.
#include "../cli.h"
#include "../validate.h"

#include <attend/datasets/parallel.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

namespace attend::cli {
namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_signal_count{0};

extern "C" void on_launch_signal(int sig) {
  g_signal = sig;
  ++g_signal_count;
}

struct Worker {
  int rank = 0;
  pid_t pid = -1;
  int out_fd = -1, err_fd = -1;
  std::string out_buffer, err_buffer;
  bool running = false;
  int status = 0;
};

/// "host:port" -> both; throws UsageError.
std::pair<std::string, int> parse_master(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw UsageError("--master must be HOST:PORT, got '" + text + "'");
  }
  const auto host = text.substr(0, colon);
  const auto port_text = text.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port < 1 || port > 65535) {
    throw UsageError("--master: the port must be a number in 1..65535, got '" + port_text + "'");
  }
  return {host, static_cast<int>(port)};
}

/// A loopback port nothing listens on now (for one-machine runs without --master).
int pick_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 29500;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 29500;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::sigdescr_np(sig);
    return "signal " + std::to_string(sig) + (name != nullptr ? std::string(" (") + name + ")" : "");
  }
  return "status " + std::to_string(status);
}

bool failed(int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }

/// Writes the complete lines of `buffer` to `out` with the rank's prefix.
void flush_lines(std::string& buffer, int rank, std::ostream& out, bool all) {
  std::size_t start = 0;
  for (;;) {
    auto end = buffer.find_first_of("\n\r", start);
    if (end == std::string::npos) break;
    const auto line = buffer.substr(start, end - start);
    if (!line.empty()) out << "[rank " << rank << "] " << line << "\n";
    start = end + 1;
  }
  buffer.erase(0, start);
  if (all && !buffer.empty()) {
    out << "[rank " << rank << "] " << buffer << "\n";
    buffer.clear();
  }
  out.flush();
}

class LaunchCommand : public Command {
 public:
  std::string name() const override { return "launch"; }
  std::string summary() const override { return "run a command as the workers of a data-parallel training"; }
  std::string usage() const override {
    return "attend launch --nproc N [--nnodes M --node-rank R --master HOST:PORT] -- <attend command ...>";
  }
  std::string description() const override {
    return "Starts N workers on this machine, each running the attend command with RANK, WORLD_SIZE,\n"
           "LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (the variables torchrun sets, so\n"
           "another launcher or a cluster scheduler can start 'attend train' the same way). Training\n"
           "commands then train data-parallel: the global batch (--batch) is cut among all the workers\n"
           "of all machines, gradients are averaged, and rank 0 writes the run folder (share it\n"
           "between machines). Each worker's output lines start with [rank R]. Ctrl-C is passed on\n"
           "to every worker (they save and stop at the same step; a second one stops them at once).\n"
           "When a worker fails, the others are stopped and launch exits 1 naming it. Relaunching the\n"
           "same command resumes, also with another number of workers. On several machines run one\n"
           "launch per machine, each with the same --nnodes and --master (rank 0's machine) and its\n"
           "own --node-rank. More: docs/distributed.md.\n";
  }
  std::vector<std::string> examples() const override {
    return {"attend launch --nproc 2 -- train cnn --scenes translated --canvas 60 --epochs 5 --run-dir out/cnn-dp",
            "attend launch --nproc 2 --nnodes 2 --node-rank 0 --master node0:29500 -- train ram --scenes cluttered "
            "--run-dir /shared/ram   # on node0; node1 the same with --node-rank 1"};
  }
  std::vector<po::options_description> options() override {
    po::options_description d("Launch", 100);
    d.add_options()
        ("nproc", po::value<int>()->value_name("N"), "workers on this machine (required)")
        ("nnodes", po::value<int>()->default_value(1)->value_name("M"), "machines taking part")
        ("node-rank", po::value<int>()->default_value(0)->value_name("R"), "this machine's index, 0..M-1")
        ("master", po::value<std::string>()->value_name("HOST:PORT"),
         "where rank 0 serves the rendezvous (default: a free loopback port on one machine; needed with "
         "--nnodes > 1)")
        ("grace", po::value<double>()->default_value(10, "10")->value_name("SEC"),
         "after a failure, seconds the other workers get to stop before they are killed")
        ("worker-command", po::value<std::vector<std::string>>()->value_name("ARGS"),
         "the attend command each worker runs (after --)");
    return {d};
  }
  po::positional_options_description positionals() const override {
    po::positional_options_description p;
    p.add("worker-command", -1);
    return p;
  }

  int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) override {
    if (!vm.count("nproc")) throw UsageError("launch: --nproc is required");
    const int nproc = require_range<int>(vm, "nproc", 1, 256);
    const int nnodes = require_range<int>(vm, "nnodes", 1, 4096);
    const int node_rank = require_range<int>(vm, "node-rank", 0, nnodes - 1);
    const double grace = require_range<double>(vm, "grace", 0.0, 3600.0);
    if (!vm.count("worker-command")) throw UsageError("launch: no command to run (put it after --)");
    auto command = vm["worker-command"].as<std::vector<std::string>>();
    if (!command.empty() && command.front() == "attend") command.erase(command.begin());
    if (command.empty()) throw UsageError("launch: no command to run (put it after --)");
    if (command.front() == "launch") throw UsageError("launch: the workers cannot run launch");
    std::string host = "127.0.0.1";
    int port = 0;
    if (vm.count("master")) {
      std::tie(host, port) = parse_master(vm["master"].as<std::string>());
    } else if (nnodes > 1) {
      throw UsageError("launch: --master HOST:PORT is needed with --nnodes > 1 (rank 0's machine)");
    } else {
      port = pick_port();
    }
    const int world = nproc * nnodes;

    // The worker's arguments: the global options first, then the command.
    std::vector<std::string> args{"attend"};
    if (global.threads != 0) {
      args.push_back("--threads");
      args.push_back(std::to_string(global.threads));
    }
    if (global.seed_given) {
      args.push_back("--seed");
      args.push_back(std::to_string(global.seed));
    }
    args.insert(args.end(), command.begin(), command.end());

    struct sigaction action {};
    action.sa_handler = on_launch_signal;
    sigemptyset(&action.sa_mask);
    struct sigaction old_int {}, old_term {};
    sigaction(SIGINT, &action, &old_int);
    sigaction(SIGTERM, &action, &old_term);
    g_signal = 0;
    g_signal_count = 0;

    // OpenBLAS starts a thread per core in every process unless told otherwise: the
    // workers share the cores launch may use (its affinity mask and CPU quota).
    const int blas_share = std::max(1, attend::datasets::available_cores() / nproc);
    std::vector<Worker> workers(static_cast<std::size_t>(nproc));
    for (int i = 0; i < nproc; ++i) {
      auto& w = workers[static_cast<std::size_t>(i)];
      w.rank = node_rank * nproc + i;
      start(w, i, nproc, world, host, port, args, blas_share);
    }
    io.err << "attend launch: " << nproc << " worker" << (nproc == 1 ? "" : "s") << " (ranks "
           << workers.front().rank << ".." << workers.back().rank << " of " << world << "), rendezvous at " << host
           << ":" << port << "\n";

    int first_failure = -1;  // index into workers
    int forwarded = 0;
    std::chrono::steady_clock::time_point kill_at{};
    bool killing = false;
    for (;;) {
      pump(workers, io, 100);
      // Ctrl-C / SIGTERM: pass each one on to every worker still running.
      while (forwarded < g_signal_count.load()) {
        ++forwarded;
        for (auto& w : workers) {
          if (w.running) ::kill(w.pid, g_signal.load() == SIGTERM ? SIGTERM : SIGINT);
        }
      }
      bool any_running = false;
      for (std::size_t i = 0; i < workers.size(); ++i) {
        auto& w = workers[i];
        if (!w.running) continue;
        int status = 0;
        const pid_t r = ::waitpid(w.pid, &status, WNOHANG);
        if (r == w.pid) {
          w.running = false;
          w.status = status;
          drain(w, io);
          if (failed(status) && first_failure < 0 && g_signal_count.load() == 0) {
            first_failure = static_cast<int>(i);
            io.err << "attend launch: rank " << w.rank << " ended with " << describe_status(status)
                   << "; stopping the other workers\n";
            for (auto& o : workers) {
              if (o.running) ::kill(o.pid, SIGTERM);
            }
            killing = true;
            kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(grace * 1000));
          } else if (first_failure >= 0 && WIFSIGNALED(status) && WTERMSIG(status) != SIGTERM &&
                     WTERMSIG(status) != SIGKILL) {
            // Not the signal launch sent: a worker ending this way says nothing itself.
            io.err << "attend launch: rank " << w.rank << " then ended with " << describe_status(status) << "\n";
          }
        } else {
          any_running = true;
        }
      }
      if (!any_running) break;
      if (killing && std::chrono::steady_clock::now() >= kill_at) {
        for (auto& w : workers) {
          if (w.running) ::kill(w.pid, SIGKILL);
        }
        killing = false;
      }
    }
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);

    if (first_failure >= 0) {
      const auto& w = workers[static_cast<std::size_t>(first_failure)];
      throw std::runtime_error("launch: rank " + std::to_string(w.rank) + " failed with " +
                               describe_status(w.status) + "; the run folder keeps its last checkpoint, and the "
                               "same command resumes from it");
    }
    if (g_signal_count.load() > 0) {
      throw Interrupted("the workers were stopped; run the same command again to resume");
    }
    for (const auto& w : workers) {
      if (failed(w.status)) {
        throw std::runtime_error("launch: rank " + std::to_string(w.rank) + " ended with " + describe_status(w.status));
      }
    }
    return kSuccess;
  }

 private:
  /// `blas_share`: OpenBLAS's threads per worker unless the environment sets them.
  static void start(Worker& w, int local, int nproc, int world, const std::string& host, int port,
                    const std::vector<std::string>& args, int blas_share) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("launch: cannot make a pipe: ") + std::strerror(errno));
    }
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("launch: cannot start a worker: ") + std::strerror(errno));
    if (pid == 0) {
      // A process group of its own: a terminal's Ctrl-C reaches it once, through us.
      ::setpgid(0, 0);
      // If launch itself is killed, the workers do not train on as orphans.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() == 1) ::_exit(1);  // launch was gone before the line above
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGINT, &dfl, nullptr);
      sigaction(SIGTERM, &dfl, nullptr);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::setenv("RANK", std::to_string(w.rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("MASTER_ADDR", host.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("OPENBLAS_NUM_THREADS", std::to_string(blas_share).c_str(), 0);
      ::setenv("OMP_NUM_THREADS", std::to_string(blas_share).c_str(), 0);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      const std::string msg = std::string("attend: error: cannot run the worker: ") + std::strerror(errno) + "\n";
      (void)!::write(STDERR_FILENO, msg.data(), msg.size());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    w.pid = pid;
    w.out_fd = out[0];
    w.err_fd = err[0];
    w.running = true;
  }

  /// Reads what the workers wrote, for up to `timeout_ms`.
  static void pump(std::vector<Worker>& workers, Streams& io, int timeout_ms) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Worker*, bool>> owners;  // (worker, is stderr)
    for (auto& w : workers) {
      if (w.out_fd >= 0) {
        fds.push_back({w.out_fd, POLLIN, 0});
        owners.emplace_back(&w, false);
      }
      if (w.err_fd >= 0) {
        fds.push_back({w.err_fd, POLLIN, 0});
        owners.emplace_back(&w, true);
      }
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
      return;
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      auto& [w, is_err] = owners[i];
      read_some(*w, is_err, io);
    }
  }

  /// One read from a worker's pipe; closes it at end of file.
  static void read_some(Worker& w, bool is_err, Streams& io) {
    int& fd = is_err ? w.err_fd : w.out_fd;
    auto& buffer = is_err ? w.err_buffer : w.out_buffer;
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      buffer.append(chunk, static_cast<std::size_t>(n));
      flush_lines(buffer, w.rank, is_err ? io.err : io.out, false);
      return;
    }
    if (n < 0 && errno == EINTR) return;
    ::close(fd);
    fd = -1;
    flush_lines(buffer, w.rank, is_err ? io.err : io.out, true);
  }

  /// Everything a finished worker still had in its pipes.
  static void drain(Worker& w, Streams& io) {
    while (w.out_fd >= 0) read_some(w, false, io);
    while (w.err_fd >= 0) read_some(w, true, io);
  }
};

}  // namespace

std::unique_ptr<Command> make_launch_command() { return std::make_unique<LaunchCommand>(); }

}  // namespace attend::cli
