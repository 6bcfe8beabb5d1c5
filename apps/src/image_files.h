#pragma once
/// Image files named on the command line: a folder stands for the image files in it;
/// a file that cannot be read is reported and the others are still processed.

#include <attend/io_error.h>

#include <cstddef>
#include <iosfwd>
#include <set>
#include <string>
#include <vector>

namespace attend::cli {

/// `args` with each folder replaced by its image files (png, jpg, jpeg, bmp, pgm, ppm,
/// tif, tiff; sorted). Files are passed through unread, so a missing or bad one is
/// found (and reported) when a command reads it.
/// throws attend::IoError naming a folder without image files or one that cannot be listed.
std::vector<std::string> image_files(const std::vector<std::string>& args);

/// The input files a command could not read. Each is reported at once, on its own line,
/// as attend reports every error ("attend: error: <file>: <what>"), and the command goes
/// on with the others; at the end it exits with exit_code(): 1 if any was reported.
/// Only problems of one input belong here (missing, unreadable, truncated, too large,
/// wrong channels); a bad checkpoint, bad options or an unwritable output folder stop
/// the command at once instead.
class BadInputs {
 public:
  explicit BadInputs(std::ostream& err) : err_(err) {}

  /// Prints "attend: error: <e.what()>" unless e.path() was already reported (a file
  /// read twice, e.g. by the two passes of a globally normalised video).
  void report(const IoError& e);
  /// Files reported so far.
  std::size_t count() const noexcept { return reported_.size(); }
  /// kSuccess (0) when every input was read, else kFailure (1).
  int exit_code() const noexcept;

 private:
  std::ostream& err_;
  std::set<std::string> reported_;
};

}  // namespace attend::cli
