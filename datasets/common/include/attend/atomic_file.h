#pragma once
/// attend::AtomicFile: the one way attend writes a file that must never be seen half
/// written (checkpoints, IDX files, images, reports, manifests).
///
/// The content goes to a temporary file in the target's folder whose name is unique
/// to this process and call (".<name>.<pid>.<n>.tmp<ext>", keeping the extension so
/// writers that choose a format by it, like cv::imwrite, still work). commit() syncs
/// the temporary file, renames it over the target and syncs the folder, so after a
/// crash the target is either the old file or the new one. A temporary file that was
/// not committed (an exception, an early return) is removed by the destructor. Two
/// processes writing the same target never share a temporary file; the last rename
/// wins. A process killed mid-write (SIGKILL) leaves its temporary file behind;
/// remove_stale_temporaries(path) removes those of processes no longer running
/// (checkpoints and IDX files call it before writing).
///
/// Header-only (POSIX): used by datasets, vision, models and apps alike.

#include <attend/io_error.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

namespace attend {

class AtomicFile {
 public:
  /// Prepares a temporary file for `path`; creates missing parent folders.
  /// throws IoError naming `path` when the folder cannot be created.
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    namespace fs = std::filesystem;
    const fs::path target(path_);
    std::error_code ec;
    if (target.has_parent_path()) {
      fs::create_directories(target.parent_path(), ec);
      if (ec) throw IoError(path_, "cannot create folder " + target.parent_path().string() + ": " + ec.message());
    }
    static std::atomic<unsigned long> counter{0};
    const auto name = "." + target.filename().string() + "." + std::to_string(::getpid()) + "." +
                      std::to_string(counter.fetch_add(1)) + ".tmp" + target.extension().string();
    temp_ = (target.parent_path() / name).string();
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove(temp_, ec);
    }
  }

  /// Removes temporary files of `path` (".<name>.<pid>.<n>.tmp<ext>" in its folder)
  /// left by processes that are no longer running. Best effort: errors are ignored.
  /// Reads the whole folder: call it for files in small folders (run folders), not
  /// for each of thousands of images.
  static void remove_stale_temporaries(const std::string& path) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    const std::string prefix = "." + target.filename().string() + ".";
    const std::string tmp = ".tmp" + target.extension().string();
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const auto name = it->path().filename().string();
      if (name.size() <= prefix.size() + tmp.size() || name.rfind(prefix, 0) != 0 ||
          name.compare(name.size() - tmp.size(), tmp.size(), tmp) != 0) {
        continue;
      }
      // What is left is "<pid>.<n>".
      const auto middle = name.substr(prefix.size(), name.size() - prefix.size() - tmp.size());
      const auto dot = middle.find('.');
      if (dot == std::string::npos || dot == 0 || dot > 9 || dot + 1 == middle.size() ||
          middle.find_first_not_of("0123456789.") != std::string::npos) {
        continue;
      }
      const long pid = std::stol(middle.substr(0, dot));
      if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
      if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }

  /// The target.
  const std::string& path() const noexcept { return path_; }
  /// Where to write the content before commit().
  const std::string& temp_path() const noexcept { return temp_; }

  /// Writes `bytes` to the temporary file (replacing what it held).
  /// throws IoError naming the target.
  void write(std::string_view bytes) {
    const int fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      const int err = errno;
      fail("cannot create the temporary file " + temp_, err);
    }
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        ::close(fd);
        fail("write failed", err);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    if (::close(fd) != 0) {
      const int err = errno;
      fail("close failed", err);
    }
  }

  /// Syncs the temporary file, renames it over the target and syncs the folder.
  /// With `durable` false nothing is synced: the target is still never half written
  /// by this process, but after a power loss it may be missing or empty. Bulk writers
  /// (thousands of images) pass false and call ::sync() once before writing the file
  /// that declares the set complete.
  /// throws IoError naming the target (the temporary file is then removed).
  void commit(bool durable = true) {
    if (durable) {
      const int fd = ::open(temp_.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        const int err = errno;
        fail("cannot reopen the temporary file " + temp_, err);
      }
      if (::fsync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        fail("fsync failed", err);
      }
      ::close(fd);
    }
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      const int err = errno;  // before the message's allocation can touch it
      fail("cannot rename the temporary file into place", err);
    }
    committed_ = true;
    if (!durable) return;
    const std::filesystem::path target(path_);
    const auto dir = target.has_parent_path() ? target.parent_path().string() : std::string(".");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);  // makes the rename durable; best effort (some file systems refuse)
      ::close(dfd);
    }
  }

 private:
  // Callers take errno right after the failing call, before building a message.
  [[noreturn]] void fail(const std::string& what, int err) {
    throw IoError(path_, what + ": " + std::strerror(err));
  }

  std::string path_;
  std::string temp_;
  bool committed_ = false;
};

/// Writes `bytes` to `path` atomically (see AtomicFile; `durable` as for commit()).
inline void write_file_atomically(const std::string& path, std::string_view bytes, bool durable = true) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit(durable);
}

}  // namespace attend
