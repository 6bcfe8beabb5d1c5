#pragma once
/// attend::RunFolderLock: one run per run folder.
///
/// A training run holds an advisory lock (flock) on "<run folder>/.attend-lock" for
/// its whole life. A second run on the same folder, from this machine or another one
/// sharing the folder, fails at once with an IoError naming the folder and the
/// process id of the run that holds it ("in use by another run (process 1234)").
/// The kernel drops the lock when the holding process ends, however it ends
/// (SIGKILL included), so a lock file left behind never blocks a later run: only a
/// live holder does. The file itself stays (removing it would race with a run that
/// is opening it); it holds the last holder's process id, for the message.
///
/// Within one process the lock is shared: the CLI takes it before it writes the
/// first file of a run and the training engine takes it again for the loop; both
/// hold the same lock, released when the last of them ends. The descriptor is
/// close-on-exec, so programs a run starts do not inherit it.
///
/// Header-only (POSIX): used by models (the engine) and apps (the commands).

#include <attend/io_error.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace attend {

class RunFolderLock {
 public:
  static constexpr const char* kFileName = ".attend-lock";

  /// Creates `dir` when missing and locks it.
  /// throws IoError naming `dir` when another process holds the lock, or the folder
  /// or its lock file cannot be created or locked.
  explicit RunFolderLock(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw IoError(dir, "cannot create run folder: " + ec.message());
    const auto key = fs::weakly_canonical(fs::absolute(dir), ec).string();
    std::lock_guard<std::mutex> guard(registry_mutex());
    auto& held = registry()[ec ? dir : key];
    handle_ = held.lock();
    if (handle_ == nullptr) {
      handle_ = std::make_shared<Handle>(dir);
      held = handle_;
    }
  }
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  RunFolderLock(RunFolderLock&&) = default;
  RunFolderLock& operator=(RunFolderLock&&) = default;
  ~RunFolderLock() {
    std::lock_guard<std::mutex> guard(registry_mutex());
    handle_.reset();  // the last holder closes the descriptor, which drops the lock
  }

 private:
  /// The open, locked lock file of one folder.
  struct Handle {
    explicit Handle(const std::string& dir) {
      const auto path = (std::filesystem::path(dir) / kFileName).string();
      fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) {
        const int err = errno;
        throw IoError(dir, "cannot create the lock file " + path + ": " + std::strerror(err));
      }
      int rc;
      do rc = ::flock(fd, LOCK_EX | LOCK_NB);
      while (rc != 0 && errno == EINTR);
      if (rc != 0) {
        const int err = errno;
        const auto holder = read_holder();
        ::close(fd);
        if (err == EWOULDBLOCK) {
          throw IoError(dir, "in use by another run (process " + (holder.empty() ? std::string("unknown") : holder) +
                                 "); wait for it to end or use another run folder");
        }
        throw IoError(dir, "cannot lock the run folder: " + std::string(std::strerror(err)));
      }
      // Ours now: say who holds it (best effort; the lock does not depend on it).
      const auto pid = std::to_string(::getpid()) + "\n";
      if (::ftruncate(fd, 0) == 0) {
        [[maybe_unused]] const auto written = ::pwrite(fd, pid.data(), pid.size(), 0);
      }
    }
    ~Handle() { ::close(fd); }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;

    std::string read_holder() const {
      char buffer[32] = {};
      const auto n = ::pread(fd, buffer, sizeof buffer - 1, 0);
      std::string text(buffer, n > 0 ? static_cast<size_t>(n) : 0);
      while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
      return text.find_first_not_of("0123456789") == std::string::npos ? text : std::string();
    }

    int fd = -1;
  };

  static std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
  }
  static std::map<std::string, std::weak_ptr<Handle>>& registry() {
    static std::map<std::string, std::weak_ptr<Handle>> held;
    return held;
  }

  std::shared_ptr<Handle> handle_;
};

}  // namespace attend
