#include "cli.h"
#include "distributed_run.h"

#include <attend/datasets/parallel.h>
#include <attend/io_error.h>
#include <attend/models/trainer.h>

#include <c10/util/Exception.h>
#include <ATen/Parallel.h>
#include <torch/utils.h>

#include <unistd.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <limits>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace attend::cli {
namespace {

constexpr int kLineWidth = 100;

po::options_description global_options(GlobalOptions& g) {
  po::options_description desc("Global options", kLineWidth);
  desc.add_options()
      ("threads", po::value<int>(&g.threads)->default_value(0)->value_name("N"),
       "threads for LibTorch's operations and OpenBLAS's matrix products (0 = one per core this "
       "process may use, by its affinity mask and CPU quota, shared among the workers of attend "
       "launch; OPENBLAS_NUM_THREADS, if set, then sizes OpenBLAS)")
      ("seed", po::value<std::uint64_t>(&g.seed)->default_value(1)->value_name("S"),
       "seed of everything random")
      ("help,h", "show help and exit");
  return desc;
}

/// Edit distance with adjacent transpositions (optimal string alignment).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

/// Checks every command applies to its options at the edge, whatever it reads:
/// a floating option must be finite (nan and inf parse as doubles but no option
/// means them, and JSON cannot store them), and --seed must not be negative (Boost
/// reads "-1" as 2^64-1 for an unsigned option).
void check_parsed_values(const po::variables_map& vm, const std::vector<std::string>& args) {
  for (const auto& [name, value] : vm) {
    if (const auto* d = boost::any_cast<double>(&value.value()); d != nullptr && !std::isfinite(*d)) {
      std::ostringstream text;
      text << *d;
      throw UsageError("--" + name + " must be a finite number, got " + text.str());
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    if (args[i] == "--seed" && i + 1 < args.size()) value = args[i + 1];
    if (args[i].rfind("--seed=", 0) == 0) value = args[i].substr(7);
    const auto first = value.find_first_not_of(" \t");
    if (first != std::string::npos && value[first] == '-') {
      throw UsageError("--seed must be a whole number from 0 to 18446744073709551615, got " + value);
    }
  }
}

}  // namespace

std::string closest_option(const std::string& typed, const std::vector<std::string>& names) {
  std::string word = typed;
  while (!word.empty() && word.front() == '-') word.erase(word.begin());
  if (const auto eq = word.find('='); eq != std::string::npos) word.resize(eq);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& name : names) {
    if (name.empty()) continue;
    // A typo (at most 2 edits, 1 for short names), or the name with a word more or
    // less at a hyphen (--batch-size for --batch).
    const size_t allowed = name.size() <= 4 ? 1 : 2;
    size_t distance = edit_distance(word, name);
    const bool extends = (word.size() > name.size() && word.rfind(name + "-", 0) == 0) ||
                         (name.size() > word.size() && name.rfind(word + "-", 0) == 0);
    if (distance > allowed && !extends) continue;
    if (extends) distance = std::min(distance, allowed);
    if (distance < best_distance) {
      best = name;
      best_distance = distance;
    }
  }
  return best;
}

namespace {

/// One line, no backtrace: LibTorch errors carry a C++ stack after the message.
std::string one_line(std::string text) {
  const auto cut = text.find("\nException raised from");
  if (cut != std::string::npos) text.resize(cut);
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && (text.back() == ' ' || text.back() == '.')) text.pop_back();
  return text;
}

void print_main_help(std::ostream& out, const std::vector<std::unique_ptr<Command>>& commands) {
  GlobalOptions g;
  out << "attend " << version() << " - visual attention on LibTorch and OpenCV\n\n"
      << "usage: attend [--threads N] [--seed S] <command> [options]\n"
      << "       attend <command> --help\n"
      << "       attend --version\n\n"
      << "Commands:\n";
  for (const auto& c : commands) out << "  " << std::left << std::setw(12) << c->name() << c->summary() << "\n";
  auto globals = global_options(g);
  globals.add_options()("version", "print the version and exit");
  out << "\n" << globals << "\n"
      << "Exit codes: 0 success, 1 failure, 2 usage error, 130 interrupted.\n\n"
      << "Examples:\n"
      << "  attend info\n"
      << "  attend data cluttered --source data/mnist --canvas 60 --fragments 4 --out out/cluttered\n";
}

void print_command_help(std::ostream& out, Command& command) {
  GlobalOptions g;
  out << "usage: " << command.usage() << "\n\n" << command.summary() << "\n\n";
  if (const auto text = command.description(); !text.empty()) out << text << "\n";
  for (const auto& group : command.help_options()) out << group << "\n";
  out << global_options(g) << "\nExamples:\n";
  for (const auto& e : command.examples()) out << "  " << e << "\n";
}

/// Splits argv into global options before the command, the command word, and the
/// rest. Global options may also follow the command.
struct Split {
  std::vector<std::string> global;
  std::string command;
  std::vector<std::string> rest;
};

Split split_args(int argc, const char* const argv[]) {
  Split s;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.empty() || a[0] != '-') break;
    s.global.push_back(a);
    if ((a == "--threads" || a == "--seed") && i + 1 < argc) s.global.push_back(argv[++i]);
  }
  if (i < argc) s.command = argv[i++];
  for (; i < argc; ++i) s.rest.emplace_back(argv[i]);
  return s;
}

/// LibTorch's intra-op thread count for one command, and OpenBLAS's, put back when it
/// ends, so a program calling run_cli keeps its own settings. OpenBLAS keeps a pool of
/// its own (one thread per core unless OPENBLAS_NUM_THREADS says otherwise): an
/// explicit --threads sizes it too, so that `--threads 1` runs on one core instead of
/// leaving a second one spinning; without --threads, a count OpenBLAS read from the
/// environment (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or OMP_NUM_THREADS, as `attend
/// launch` sets for its workers) is respected. Seeds are not set
/// process-wide: commands hand --seed to what draws random numbers.
class ThreadScope {
 public:
  explicit ThreadScope(const GlobalOptions& g)
      : previous_(at::get_num_threads()), previous_blas_(attend::datasets::blas_threads()) {
    if (g.threads < 0 || g.threads > 1024) {
      throw UsageError("--threads must be between 0 and 1024, got " + std::to_string(g.threads));
    }
    const int threads = g.threads == 0 ? default_threads() : g.threads;
    at::set_num_threads(threads);
    const bool blas_from_environment = std::getenv("OPENBLAS_NUM_THREADS") != nullptr ||
                                       std::getenv("GOTO_NUM_THREADS") != nullptr ||
                                       std::getenv("OMP_NUM_THREADS") != nullptr;
    if (previous_blas_ > 0 && (g.threads > 0 || !blas_from_environment)) {
      attend::datasets::set_blas_threads(threads);
    }
  }
  ~ThreadScope() {
    at::set_num_threads(previous_);
    if (previous_blas_ > 0) attend::datasets::set_blas_threads(previous_blas_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int previous_;
  int previous_blas_;
};

int dispatch(int argc, const char* const argv[], std::ostream& out, std::ostream& err) {
  auto commands = make_commands();
  const Split split = split_args(argc, argv);
  GlobalOptions global;

  // Options before the command word.
  {
    auto desc = global_options(global);
    desc.add_options()("version", "print the version");
    po::variables_map vm;
    po::store(po::command_line_parser(split.global).options(desc).run(), vm);
    po::notify(vm);
    if (vm.count("version")) {
      out << "attend " << version() << "\n";
      return kSuccess;
    }
    if (vm.count("help")) {
      print_main_help(out, commands);
      return kSuccess;
    }
    if (split.command.empty() && split.global.empty()) {
      print_main_help(err, commands);
      return kUsage;
    }
    if (split.command.empty()) throw UsageError("no command given");
  }
  if (split.command == "help" && split.rest.empty()) {
    print_main_help(out, commands);
    return kSuccess;
  }
  const std::string wanted = split.command == "help" ? split.rest.front() : split.command;
  auto it = std::find_if(commands.begin(), commands.end(), [&](const auto& c) { return c->name() == wanted; });
  if (it == commands.end()) {
    std::string names;
    for (const auto& c : commands) names += (names.empty() ? "" : ", ") + c->name();
    throw UsageError("unknown command '" + wanted + "' (commands: " + names + ")");
  }
  Command& command = split.command == "help"
                         ? (**it).resolve(std::vector<std::string>(split.rest.begin() + 1, split.rest.end()))
                         : (**it).resolve(split.rest);
  if (split.command == "help") {
    print_command_help(out, command);
    return kSuccess;
  }

  // From here on a usage error points to this command's help.
  try {
    po::options_description all("", kLineWidth);
    for (const auto& group : command.options()) all.add(group);
    GlobalOptions after;
    all.add(global_options(after));
    po::variables_map vm;
    // Re-parse the leading globals together with the command's own arguments so a
    // global option may appear on either side of the command word.
    std::vector<std::string> args = split.global;
    args.insert(args.end(), split.rest.begin(), split.rest.end());
    try {
      po::store(po::command_line_parser(args).options(all).positional(command.positionals()).run(), vm);
    } catch (const po::unknown_option& e) {
      std::vector<std::string> names;
      for (const auto& option : all.options()) names.push_back(option->long_name());
      const auto near = closest_option(e.get_option_name(), names);
      throw UsageError("unknown option " + e.get_option_name() + (near.empty() ? "" : "; did you mean --" + near + "?"));
    }
    if (vm.count("help")) {
      print_command_help(out, command);
      return kSuccess;
    }
    po::notify(vm);
    check_parsed_values(vm, args);
    after.seed_given = !vm["seed"].defaulted();
    ThreadScope threads(after);
    Streams io{out, err, &err == &std::cerr && ::isatty(STDERR_FILENO) == 1};
    return command.run(vm, after, io);
  } catch (const UsageError& e) {
    if (!e.command().empty()) throw;
    throw UsageError(e.what(), command.name());
  } catch (const po::error& e) {
    throw UsageError(e.what(), command.name());
  }
}

}  // namespace

const char* version() { return ATTEND_VERSION; }

std::vector<std::unique_ptr<Command>> make_commands() {
  std::vector<std::unique_ptr<Command>> commands;
  commands.push_back(make_info_command());
  commands.push_back(make_data_command());
  commands.push_back(make_train_command());
  commands.push_back(make_eval_command());
  commands.push_back(make_score_command());
  commands.push_back(make_classify_command());
  commands.push_back(make_caption_command());
  commands.push_back(make_saliency_command());
  commands.push_back(make_segment_command());
  commands.push_back(make_launch_command());
  return commands;
}

int run_cli(int argc, const char* const argv[], std::ostream& out, std::ostream& err) {
  try {
    return dispatch(argc, argv, out, err);
  } catch (const UsageError& e) {
    const auto help = e.command().empty() ? std::string("attend --help") : "attend " + e.command() + " --help";
    err << "attend: " << one_line(e.what()) << " (see '" << help << "')\n";
    return kUsage;
  } catch (const po::error& e) {
    err << "attend: " << one_line(e.what()) << " (see 'attend --help')\n";
    return kUsage;
  } catch (const Interrupted& e) {
    err << "attend: interrupted: " << one_line(e.what()) << "\n";
    return kInterrupted;
  } catch (const IoError& e) {
    err << "attend: error: " << one_line(e.what()) << "\n";
    return kFailure;
  } catch (const models::NonFiniteError& e) {
    err << "attend: error: " << one_line(e.what()) << " (lower --lr, add --clip, or skip such steps with --on-nonfinite skip)\n";
    return kFailure;
  } catch (const c10::Error& e) {
    err << "attend: error: " << one_line(e.what_without_backtrace()) << "\n";
    return kFailure;
  } catch (const std::bad_alloc&) {
    err << "attend: error: out of memory\n";
    return kFailure;
  } catch (const std::exception& e) {
    err << "attend: error: " << one_line(e.what()) << "\n";
    return kFailure;
  } catch (...) {
    err << "attend: error: unknown failure\n";
    return kFailure;
  }
}

}  // namespace attend::cli
