#pragma once
/// The attend command line: git-style subcommands behind one small interface.
/// Only apps/ parses options, prints, and turns errors into exit codes.

#include <boost/program_options.hpp>

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace attend::cli {

namespace po = boost::program_options;

/// Exit codes of the attend binary.
enum ExitCode : int { kSuccess = 0, kFailure = 1, kUsage = 2, kInterrupted = 130 };

/// A mistake in how the command was called (exit 2). `command` names the command
/// whose help the message points to ("" = attend's own help).
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& what, std::string command = "")
      : std::runtime_error(what), command_(std::move(command)) {}
  const std::string& command() const noexcept { return command_; }

 private:
  std::string command_;
};

/// Thrown when the user interrupted the work (exit 130) after it was saved.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Options every command understands.
struct GlobalOptions {
  int threads = 0;          ///< intra-op threads; 0 = one per core this process may use
  std::uint64_t seed = 1;   ///< seed of everything random
  bool seed_given = false;
};

/// Output streams of a command, so tests can capture them.
struct Streams {
  std::ostream& out;
  std::ostream& err;
  bool err_is_tty = false;
};

class Command {
 public:
  virtual ~Command() = default;
  /// Word that selects the command ("info").
  virtual std::string name() const = 0;
  /// One line for `attend --help`.
  virtual std::string summary() const = 0;
  /// Synopsis after "usage: ", e.g. "attend info [options]".
  virtual std::string usage() const = 0;
  /// Paste-able examples, one per line, shown at the end of `--help`.
  virtual std::vector<std::string> examples() const = 0;
  /// Option groups of this command (global options are added by the CLI).
  virtual std::vector<po::options_description> options() = 0;
  /// Option groups as help shows them (default: options()).
  virtual std::vector<po::options_description> help_options() { return options(); }
  /// Text shown in help between the summary and the options ("" = none).
  virtual std::string description() const { return ""; }
  /// Positional arguments, by option name.
  virtual po::positional_options_description positionals() const { return {}; }
  /// The command that handles `args` (the words after the command's): this one, or a
  /// more specific one that then parses, helps and runs in its place (`train
  /// captioner`, `eval` of a captioner's checkpoint). Must not throw.
  virtual Command& resolve(const std::vector<std::string>& /*args*/) { return *this; }
  /// Runs with parsed options; returns an exit code or throws.
  virtual int run(const po::variables_map& vm, const GlobalOptions& global, Streams& io) = 0;
};

std::unique_ptr<Command> make_info_command();
std::unique_ptr<Command> make_data_command();
std::unique_ptr<Command> make_train_command();
std::unique_ptr<Command> make_eval_command();
std::unique_ptr<Command> make_score_command();
std::unique_ptr<Command> make_classify_command();
std::unique_ptr<Command> make_caption_command();
std::unique_ptr<Command> make_saliency_command();
std::unique_ptr<Command> make_segment_command();
std::unique_ptr<Command> make_launch_command();
/// `attend train captioner` and `attend eval` of a captioner (reached through resolve).
std::unique_ptr<Command> make_caption_train_command();
std::unique_ptr<Command> make_caption_eval_command();

/// All commands, in the order `attend --help` lists them.
std::vector<std::unique_ptr<Command>> make_commands();

/// Parses argv, runs the command, and maps every error to one line on `err` and
/// an exit code. Never throws.
int run_cli(int argc, const char* const argv[], std::ostream& out, std::ostream& err);

/// The option name among `names` (long names without "--") closest to what the user
/// typed ("--batch-size"): a typo of at most two edits (one for names of up to four
/// letters), or the name with a hyphenated word more or less; "" when none is close.
std::string closest_option(const std::string& typed, const std::vector<std::string>& names);

/// Version string of this build.
const char* version();

/// What `attend info` warns of a measured matrix-product speed (`gflops` on n x n
/// matrices with the BLAS `kind` running `blas_threads` threads), or "" when it is as
/// fast as it should be. A reference BLAS reaches a few GFLOP/s, OpenBLAS 30 or more
/// per thread on any AVX2 core; sizes below 512 are too small to tell.
std::string blas_speed_warning(double gflops, std::int64_t n, const std::string& kind, int blas_threads);

}  // namespace attend::cli
