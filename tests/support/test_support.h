#pragma once
/// Helpers shared by the suites: per-test temporary folders and file utilities.

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

namespace attend::testing {

/// A fresh folder for one test, removed afterwards. Lives under $ATTEND_TEST_TMP
/// (set by ctest to the build tree) or the system temp folder. Each one is its own:
/// two in one test are two folders.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("ATTEND_TEST_TMP");
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "attend-test";
    for (auto& c : name) {
      if (c == '/') c = '_';
    }
    path_ = std::filesystem::path(base ? base : std::filesystem::temp_directory_path().string()) /
            (name + "-" + std::to_string(::getpid()) + "-" + std::to_string(count()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static std::atomic<int>& count() {
    static std::atomic<int> n{0};
    return n;
  }
  std::filesystem::path path_;
};

/// Runs `f` with LibTorch's intra-op thread count set to `threads`, then restores it.
template <typename F>
auto with_threads(int threads, F&& f) {
  struct Restore {
    int before = at::get_num_threads();
    ~Restore() { at::set_num_threads(before); }
  } restore;
  at::set_num_threads(threads);
  return f();
}

/// The message of the c10::Error `f` throws (without backtrace), or "(no error)".
inline std::string error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

/// The what() of the E that `f` throws (e.g. attend::IoError), or "(nothing thrown)".
template <typename E>
std::string thrown_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

inline bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace attend::testing
