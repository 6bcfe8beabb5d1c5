#pragma once
/// What the four fuzzers share: a scratch folder the fuzz input is written to (attend's
/// readers take paths, as a user's files do), and the rule that decides what is a
/// finding.
///
/// The rule: a reader of untrusted files may refuse an input only with the errors its
/// contract names (attend::IoError for every bad file; a few contracts also name
/// c10::Error, passed here explicitly). Everything else is a finding and aborts, so
/// libFuzzer keeps the input: a crash or a sanitizer report, an exception of another
/// type escaping the reader (c10::Error, cv::Exception, std::out_of_range,
/// nlohmann::json::exception, ...; the CLI would print it, but as a foreign message
/// without the file name), a contract broken on success or on failure (checked by each
/// fuzzer), a hang (-timeout) or a huge allocation (-malloc_limit_mb / -rss_limit_mb).

#include <attend/io_error.h>

#include <c10/util/Exception.h>

#include <cxxabi.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <typeinfo>

namespace attend::fuzz {

/// A private folder under $TMPDIR (or /tmp) for this process, removed at exit.
/// ensures: the folder exists; the same path for the life of the process.
inline const std::filesystem::path& scratch_dir() {
  // Never destroyed: the exit handler below still needs it after static destructors.
  static const auto* dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/attend-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("attend fuzz: cannot create a scratch folder");
      std::abort();
    }
    return new std::filesystem::path(pattern);
  }();
  static const bool cleanup_registered = [] {
    return std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    }) == 0;
  }();
  (void)cleanup_registered;
  return *dir;
}

/// Writes `size` bytes to `name` inside scratch_dir() and returns the file's path.
inline std::string write_input(const std::string& name, const void* data, std::size_t size) {
  const auto path = (scratch_dir() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "attend fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

/// The demangled type of the exception being handled ("unknown" outside a handler).
inline std::string current_exception_type() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) return "unknown";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(type->name(), nullptr, nullptr, &status),
                                              std::free);
  return status == 0 && name ? name.get() : type->name();
}

/// Reports a finding on stderr ("attend fuzz: finding in <what>: <problem>") and
/// aborts, so libFuzzer saves the input as a crash.
[[noreturn]] inline void finding(const std::string& what, const std::string& problem) {
  std::fprintf(stderr, "\nattend fuzz: finding in %s: %s\n", what.c_str(), problem.c_str());
  std::fflush(stderr);
  std::abort();
}

/// Which exceptions a reader's contract allows besides attend::IoError.
enum class Allow { kIoErrorOnly, kIoErrorAndTorchCheck };

/// Runs `body` (one call of a reader); returns true when it returned, false when it
/// refused the input with an allowed error. Any other exception is a finding.
template <typename F>
bool accepts(const std::string& what, F&& body, Allow allow = Allow::kIoErrorOnly) {
  try {
    body();
    return true;
  } catch (const attend::IoError&) {
    return false;
  } catch (const c10::Error& e) {
    if (allow == Allow::kIoErrorAndTorchCheck) return false;
    finding(what, std::string("c10::Error escaped (the contract is attend::IoError): ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    finding(what, current_exception_type() + " escaped (the contract is attend::IoError): " + e.what());
  } catch (...) {
    finding(what, current_exception_type() + " escaped (the contract is attend::IoError)");
  }
}

}  // namespace attend::fuzz
