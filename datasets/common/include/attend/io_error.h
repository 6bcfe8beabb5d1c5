#pragma once
/// attend::IoError: the one exception for file and data problems, shared by every
/// library folder (header-only, no dependencies beyond the standard library).

#include <stdexcept>
#include <string>

namespace attend {

/// Thrown when a file cannot be read or written, or holds data that does not match
/// what its format declares. `what()` is one line: "<path>: <problem>".
class IoError : public std::runtime_error {
 public:
  IoError(std::string path, const std::string& problem)
      : std::runtime_error(path + ": " + problem), path_(std::move(path)) {}

  /// The file (or folder) the problem is about.
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

}  // namespace attend
