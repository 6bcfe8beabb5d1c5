#include "attend/models/checkpoint.h"

#include <attend/atomic_file.h>
#include <attend/io_error.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

namespace attend::models {
namespace {

namespace fs = std::filesystem;
using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

constexpr const char* kMetaKey = "attend_meta";
constexpr const char* kModelKey = "model";
constexpr const char* kOptimizerKey = "optimizer";
constexpr const char* kRngKey = "rng_state";
constexpr const char* kGeneratorsKey = "generators";

/// First line of a LibTorch error, without its C++ backtrace.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// The dotted key of the first non-finite number in `j` ("" when there is none):
/// JSON has no nan or inf (nlohmann writes null), so such a file could not be read.
std::string first_nonfinite(const nlohmann::json& j, const std::string& prefix) {
  if (j.is_number_float()) return std::isfinite(j.get<double>()) ? "" : (prefix.empty() ? "(value)" : prefix);
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (auto found = first_nonfinite(v, prefix.empty() ? k : prefix + "." + k); !found.empty()) return found;
    }
  }
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      if (auto found = first_nonfinite(j[i], prefix + "[" + std::to_string(i) + "]"); !found.empty()) return found;
    }
  }
  return "";
}

nlohmann::json info_to_json(const CheckpointInfo& info) {
  return {{"format", kCheckpointFormat},
          {"model", {{"kind", info.model.kind}, {"options", info.model.options}}},
          {"training", info.training},
          {"data", info.data},
          {"state", info.state},
          {"step", info.step},
          {"epoch", info.epoch},
          {"has_optimizer", info.has_optimizer}};
}

CheckpointInfo info_from_json(const nlohmann::json& j, const std::string& path) {
  try {
    CheckpointInfo info;
    info.format = j.at("format").get<std::int64_t>();
    if (info.format == 1) {
      // Format 1 kept the training options and the data description inside the
      // model options.
      info.model.kind = j.at("kind").get<std::string>();
      info.model.options = j.at("options");
      if (info.model.options.contains("training")) {
        info.training = info.model.options["training"];
        info.model.options.erase("training");
      }
      if (info.model.options.contains("data")) {
        info.data = info.model.options["data"];
        info.model.options.erase("data");
      }
    } else if (info.format == kCheckpointFormat) {
      info.model.kind = j.at("model").at("kind").get<std::string>();
      info.model.options = j.at("model").at("options");
      info.training = j.at("training");
      info.data = j.at("data");
    } else {
      throw IoError(path, "checkpoint format " + std::to_string(info.format) +
                              " is not supported (this build reads 1 and " + std::to_string(kCheckpointFormat) + ")");
    }
    info.state = j.at("state");
    info.step = j.at("step").get<std::int64_t>();
    info.epoch = j.at("epoch").get<std::int64_t>();
    info.has_optimizer = j.at("has_optimizer").get<bool>();
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw IoError(path, std::string("corrupt checkpoint description: ") + e.what());
  }
}

// ---- integrity: the zip records' CRC-32s --------------------------------------------
//
// A checkpoint is a zip archive (LibTorch's format) whose writer stores the CRC-32 of
// every record (the description, each tensor, the optimizer state, the generators)
// in the archive's central directory. LibTorch's reader does not check them, so a
// flipped byte inside a weight would load silently. verify_records() reads the
// central directory itself and checks every stored record's CRC before LibTorch
// sees the file.

std::uint32_t le16(const unsigned char* p) { return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8); }
std::uint32_t le32(const unsigned char* p) { return le16(p) | (le16(p + 2) << 16); }
std::uint64_t le64(const unsigned char* p) { return le32(p) | (static_cast<std::uint64_t>(le32(p + 4)) << 32); }

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw IoError(path, "corrupt: " + what);
}

/// CRC-32 of a raw deflate stream's output (zip method 8), or nullopt when the stream
/// is damaged or does not end where the directory says.
std::optional<std::uint32_t> inflated_crc(const unsigned char* data, std::uint64_t stored, std::uint64_t length,
                                          std::string* keep = nullptr) {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return std::nullopt;
  std::vector<unsigned char> out(1 << 16);
  uLong sum = crc32(0L, Z_NULL, 0);
  std::uint64_t produced = 0;
  z.next_in = const_cast<unsigned char*>(data);
  z.avail_in = static_cast<uInt>(std::min<std::uint64_t>(stored, 1u << 30));
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    const auto n = out.size() - z.avail_out;
    produced += n;
    if (produced > length) break;  // longer than declared: corrupt
    sum = crc32(sum, out.data(), static_cast<uInt>(n));
    if (keep != nullptr) keep->append(reinterpret_cast<const char*>(out.data()), n);
    if (rc == Z_BUF_ERROR && n > 0) rc = Z_OK;
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END || produced != length) return std::nullopt;
  return static_cast<std::uint32_t>(sum);
}

/// Whether a `code/*.py` record is what LibTorch's archive writer produces: class
/// headers and the declarations of parameters, buffers and attributes, nothing else.
/// LibTorch 1.13's TorchScript importer crashes (SIGSEGV in
/// ScriptTypeParser::parseClassConstant) on some other code, so a crafted or damaged
/// file whose checksums agree must not reach it. "" when it is, else the first line
/// that is not.
std::string foreign_code_line(const std::string& code) {
  static const std::string type = R"([A-Za-z_][A-Za-z0-9_.]*(\[[A-Za-z0-9_., \[\]]*\])?)";
  static const std::vector<std::regex> allowed{
      std::regex(R"(class [A-Za-z_][A-Za-z0-9_]*\([A-Za-z_][A-Za-z0-9_.]*\):)"),
      std::regex(R"(  __parameters__ = \[("[^"\\]*", )*\])"),
      std::regex(R"(  __buffers__ = \[("[^"\\]*", )*\])"),
      std::regex(R"(  __annotations__ = \[\])"),
      std::regex(R"(  __annotations__\["[^"\\]*"\] = )" + type),
      std::regex(R"(  [A-Za-z_][A-Za-z0-9_]* : )" + type),
  };
  std::size_t begin = 0;
  while (begin <= code.size()) {
    auto end = code.find('\n', begin);
    if (end == std::string::npos) end = code.size();
    const auto line = code.substr(begin, end - begin);
    if (!line.empty() && std::none_of(allowed.begin(), allowed.end(),
                                      [&](const std::regex& r) { return std::regex_match(line, r); })) {
      return line.size() > 60 ? line.substr(0, 60) + "..." : line;
    }
    begin = end + 1;
  }
  return "";
}

/// Checks the CRC-32 of every record of the zip archive `bytes`: stored records
/// directly, compressed ones (LibTorch deflates the code/ records) after inflating.
/// throws IoError(path, "corrupt: ...") naming the first record that does not match.
void verify_records(const std::string& bytes, const std::string& path) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint64_t size = bytes.size();
  auto fits = [&](std::uint64_t offset, std::uint64_t length) { return offset <= size && length <= size - offset; };
  // End of central directory: 22 bytes plus a comment of at most 65535.
  const auto unreadable = "not a readable checkpoint: no zip directory at its end (truncated, or not a checkpoint)";
  if (size < 22) throw IoError(path, unreadable);
  std::uint64_t eocd = size - 22;
  const std::uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  while (le32(data + eocd) != 0x06054b50u) {
    if (eocd == lowest) throw IoError(path, unreadable);
    --eocd;
  }
  // Entries on this disk and in all: one and the same in a checkpoint (LibTorch's
  // reader takes the first, so both are checked).
  if (le16(data + eocd + 8) != le16(data + eocd + 10)) corrupt(path, "zip directory entry counts disagree");
  std::uint64_t entries = le16(data + eocd + 10);
  std::uint64_t directory_size = le32(data + eocd + 12);
  std::uint64_t directory = le32(data + eocd + 16);
  const bool saturated = entries == 0xffff || directory_size == 0xffffffffu || directory == 0xffffffffu;
  // Zip64: a locator just before the end record points to the 64-bit record, which
  // LibTorch writes right before the locator. Its reader (miniz) takes the 64-bit
  // figures whenever the locator is there, whatever the 32-bit ones say, so the
  // directory checked must be the one they name: the 32-bit figures may only repeat
  // them or hold the zip64 marks.
  const bool has_locator = eocd >= 20 + 56 && le32(data + eocd - 20) == 0x07064b50u;
  if (saturated && !has_locator) corrupt(path, "zip64 locator missing");
  if (has_locator) {
    const auto record = le64(data + eocd - 20 + 8);
    if (record != eocd - 20 - 56 || le32(data + record) != 0x06064b50u) corrupt(path, "zip64 directory record missing");
    if (le32(data + eocd - 20 + 16) != 1 || le32(data + record + 16) != 0 || le32(data + record + 20) != 0) {
      corrupt(path, "zip64 directory spans several disks");
    }
    if (le64(data + record + 24) != le64(data + record + 32)) corrupt(path, "zip directory entry counts disagree");
    const auto entries64 = le64(data + record + 32), size64 = le64(data + record + 40),
               directory64 = le64(data + record + 48);
    if ((entries != 0xffff && entries != entries64) || (directory_size != 0xffffffffu && directory_size != size64) ||
        (directory != 0xffffffffu && directory != directory64)) {
      corrupt(path, "zip directory and zip64 directory record disagree");
    }
    entries = entries64;
    directory_size = size64;
    directory = directory64;
  }
  if (!fits(directory, directory_size)) corrupt(path, "zip directory lies outside the file (truncated?)");
  std::uint64_t at = directory;
  const std::uint64_t end = directory + directory_size;
  for (std::uint64_t i = 0; i < entries; ++i) {
    if (at > end || end - at < 46 || le32(data + at) != 0x02014b50u) corrupt(path, "damaged zip directory");
    const auto method = le16(data + at + 10);
    const auto crc = le32(data + at + 16);
    std::uint64_t stored = le32(data + at + 20);
    std::uint64_t length = le32(data + at + 24);
    const auto name_length = le16(data + at + 28);
    const auto extra_length = le16(data + at + 30);
    const auto comment_length = le16(data + at + 32);
    std::uint64_t local = le32(data + at + 42);
    const std::uint64_t entry_size = 46ull + name_length + extra_length + comment_length;
    if (end - at < entry_size) corrupt(path, "damaged zip directory");
    const std::string name(reinterpret_cast<const char*>(data + at + 46), name_length);
    // LibTorch's reader (miniz) takes an entry named with a trailing '/' or carrying the
    // DOS folder attribute for a folder and reads it as empty, whatever its checksum
    // covers: a tensor or generator state would then be read from nothing.
    if ((!name.empty() && name.back() == '/') || (le32(data + at + 38) & 0x10u) != 0) {
      corrupt(path, "record " + name + " is marked as a folder");
    }
    // Zip64 sizes and offset, in this order, for the fields that hold 0xffffffff.
    for (std::uint64_t e = at + 46 + name_length; e + 4 <= at + 46 + name_length + extra_length;) {
      const auto id = le16(data + e), field_size = le16(data + e + 2);
      if (e + 4 + field_size > at + 46 + name_length + extra_length) corrupt(path, "damaged zip directory entry of " + name);
      if (id == 0x0001) {
        std::uint64_t f = e + 4;
        const std::uint64_t f_end = f + field_size;
        auto take = [&](std::uint64_t& value) {
          if (value != 0xffffffffu) return;
          if (f + 8 > f_end) corrupt(path, "damaged zip64 field of " + name);
          value = le64(data + f);
          f += 8;
        };
        take(length);
        take(stored);
        take(local);
      }
      e += 4ull + field_size;
    }
    if (!fits(local, 30) || le32(data + local) != 0x04034b50u) corrupt(path, "record " + name + " is missing");
    const std::uint64_t start = local + 30 + le16(data + local + 26) + le16(data + local + 28);
    if (!fits(start, stored)) corrupt(path, "record " + name + " is cut short (truncated?)");
    // TorchScript code: small, and checked line by line below.
    const bool is_code = name.find("/code/") != std::string::npos && name.size() > 3 &&
                         name.compare(name.size() - 3, 3, ".py") == 0;
    if (is_code && length > (1u << 20)) corrupt(path, "record " + name + " is too large for archive code");
    std::string code;
    if (method == 0) {
      if (stored != length) corrupt(path, "record " + name + " has inconsistent sizes");
      uLong sum = crc32(0L, Z_NULL, 0);
      for (std::uint64_t done = 0; done < length;) {
        const auto chunk = static_cast<uInt>(std::min<std::uint64_t>(length - done, 1u << 30));
        sum = crc32(sum, data + start + done, chunk);
        done += chunk;
      }
      if (static_cast<std::uint32_t>(sum) != crc) corrupt(path, "checksum mismatch in record " + name);
      if (is_code) code.assign(reinterpret_cast<const char*>(data + start), length);
    } else if (method == 8) {
      const auto sum = inflated_crc(data + start, stored, length, is_code ? &code : nullptr);
      if (!sum) corrupt(path, "record " + name + " is not a valid compressed stream");
      if (*sum != crc) corrupt(path, "checksum mismatch in record " + name);
    } else {
      corrupt(path, "record " + name + " uses zip method " + std::to_string(method) + ", which LibTorch never writes");
    }
    if (is_code) {
      const auto line = foreign_code_line(code);
      if (!line.empty()) corrupt(path, "record " + name + " holds code attend never writes: '" + line + "'");
    }
    at += entry_size;
  }
  // Every byte of the directory belongs to an entry that was checked.
  if (at != end) corrupt(path, "zip directory holds more than its entry count says");
}

InputArchive open_archive(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path, "no such checkpoint");
  if (fs::is_directory(path, ec)) throw IoError(path, "is a folder, expected a checkpoint file");
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path, std::string("cannot open: ") + std::strerror(errno));
    std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) throw IoError(path, "read failed");
    verify_records(bytes, path);
  }
  InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw IoError(path, "not a readable checkpoint: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    // LibTorch's TorchScript reader throws others too (torch::jit::ErrorReport for a
    // damaged code record, whose text starts with a newline; std::runtime_error).
    std::string text = e.what();
    text.erase(0, std::min(text.size(), text.find_first_not_of(" \n")));
    throw IoError(path, "not a readable checkpoint: " + first_line(text));
  }
  return archive;
}

CheckpointInfo read_info(InputArchive& archive, const std::string& path) {
  c10::IValue meta;
  if (!archive.try_read(kMetaKey, meta) || !meta.isString()) {
    throw IoError(path, "not an attend checkpoint (no description record)");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(meta.toStringRef());
  } catch (const nlohmann::json::exception& e) {
    throw IoError(path, std::string("corrupt checkpoint description: ") + e.what());
  }
  return info_from_json(j, path);
}

/// Reads every parameter and buffer of `module` (recursively, in the layout of
/// torch::nn::Module::save) into `out` keyed by dotted name, checking shapes and dtypes.
void collect_tensors(const torch::nn::Module& module, InputArchive& archive, const std::string& prefix,
                     std::map<std::string, torch::Tensor>& out, const std::string& path) {
  auto take = [&](const std::string& key, const torch::Tensor& target, bool is_buffer) {
    torch::Tensor value;
    const auto name = prefix + key;
    if (!archive.try_read(key, value, is_buffer)) {
      throw IoError(path, std::string("checkpoint has no ") + (is_buffer ? "buffer " : "parameter ") + name +
                              " that the model needs (is it a checkpoint of another configuration?)");
    }
    if (value.sizes() != target.sizes()) {
      throw IoError(path, name + " has shape " + c10::str(value.sizes()) + " in the checkpoint but " +
                              c10::str(target.sizes()) + " in the model");
    }
    if (value.scalar_type() != target.scalar_type()) {
      throw IoError(path, name + " is " + c10::toString(value.scalar_type()) + " in the checkpoint but " +
                              c10::toString(target.scalar_type()) + " in the model");
    }
    out[name] = value;
  };
  for (const auto& p : module.named_parameters(/*recurse=*/false)) take(p.key(), p.value(), false);
  for (const auto& b : module.named_buffers(/*recurse=*/false)) take(b.key(), b.value(), true);
  for (const auto& child : module.named_children()) {
    // A submodule without tensors (a Functional or ReLU layer of a Sequential) leaves
    // nothing in the archive that reads back: there is nothing to load into it.
    if (child.value()->parameters(/*recurse=*/true).empty() && child.value()->buffers(/*recurse=*/true).empty()) {
      continue;
    }
    InputArchive child_archive;
    if (!archive.try_read(child.key(), child_archive)) {
      throw IoError(path, "checkpoint has no submodule " + prefix + child.key() + " that the model needs");
    }
    collect_tensors(*child.value(), child_archive, prefix + child.key() + ".", out, path);
  }
}

/// For warm_start: module by module, the checkpoint's tensors for `module`'s own
/// parameters and buffers into `found` when every one of them fits (same dotted name,
/// shape and dtype), else their names into `kept` (a layer is taken whole or not at
/// all: no batch-norm counter without its statistics).
void collect_matching(const torch::nn::Module& module, InputArchive* archive, const std::string& prefix,
                      std::map<std::string, torch::Tensor>& found, std::vector<std::string>& kept) {
  std::vector<std::pair<std::string, torch::Tensor>> own;
  bool fits = archive != nullptr;
  auto take = [&](const std::string& key, const torch::Tensor& target, bool is_buffer) {
    torch::Tensor value;
    fits = fits && archive->try_read(key, value, is_buffer) && value.sizes() == target.sizes() &&
           value.scalar_type() == target.scalar_type();
    own.emplace_back(prefix + key, value);
  };
  for (const auto& p : module.named_parameters(/*recurse=*/false)) take(p.key(), p.value(), false);
  for (const auto& b : module.named_buffers(/*recurse=*/false)) take(b.key(), b.value(), true);
  for (auto& [name, value] : own) {
    if (fits) {
      found[name] = value;
    } else {
      kept.push_back(name);
    }
  }
  for (const auto& child : module.named_children()) {
    InputArchive child_archive;
    const bool present = archive != nullptr && archive->try_read(child.key(), child_archive);
    collect_matching(*child.value(), present ? &child_archive : nullptr, prefix + child.key() + ".", found, kept);
  }
}

std::string serialise(const torch::optim::Optimizer& optimizer) {
  OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

void restore(torch::optim::Optimizer& optimizer, const std::string& bytes) {
  // LibTorch's loader adds or overwrites one entry per parameter and removes none:
  // clear what a failed load added before putting the old state back.
  optimizer.state().clear();
  std::istringstream in(bytes);
  InputArchive archive;
  archive.load_from(in);
  optimizer.load(archive);
}

/// After a load: every state tensor the optimizers attend builds keep per parameter
/// has that parameter's shape. "" when it does, else what does not fit.
std::string optimizer_state_problem(torch::optim::Optimizer& optimizer) {
  for (size_t g = 0; g < optimizer.param_groups().size(); ++g) {
    const auto& params = optimizer.param_groups()[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& p = params[i];
      const auto it = optimizer.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == optimizer.state().end()) continue;
      std::vector<torch::Tensor> tensors;
      if (const auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(it->second.get())) {
        tensors = {adam->exp_avg(), adam->exp_avg_sq()};
        if (adam->max_exp_avg_sq().defined() && adam->max_exp_avg_sq().numel() > 0) {
          tensors.push_back(adam->max_exp_avg_sq());
        }
      } else if (const auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(it->second.get())) {
        tensors = {sgd->momentum_buffer()};
      }
      for (const auto& t : tensors) {
        if (t.defined() && (t.sizes() != p.sizes() || t.scalar_type() != p.scalar_type())) {
          return "state of parameter " + std::to_string(i) + " of group " + std::to_string(g) + " is " +
                 c10::toString(t.scalar_type()) + c10::str(t.sizes()) + " but the parameter is " +
                 c10::toString(p.scalar_type()) + c10::str(p.sizes());
        }
      }
    }
  }
  return "";
}

torch::Tensor generator_state(at::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

/// Reads the stored state of `generator` (the default one when name is empty) and
/// checks it has the size of its current state. Undefined when it is not stored
/// and not `required`.
torch::Tensor read_generator_state(InputArchive& archive, const std::string& name, at::Generator generator,
                                   bool required, const std::string& path) {
  torch::Tensor state;
  bool found = false;
  if (name.empty()) {
    found = archive.try_read(kRngKey, state, /*is_buffer=*/true);
  } else {
    InputArchive generators;
    found = archive.try_read(kGeneratorsKey, generators) && generators.try_read(name, state, /*is_buffer=*/true);
  }
  const std::string who = name.empty() ? "the default generator" : "generator '" + name + "'";
  if (!found && !required) return {};
  if (!found) throw IoError(path, "holds no state of " + who + " to resume from");
  const auto current = generator_state(generator);
  if (state.scalar_type() != current.scalar_type() || state.numel() != current.numel()) {
    throw IoError(path, "corrupt state of " + who + ": " + std::to_string(state.numel()) +
                            " bytes, expected " + std::to_string(current.numel()));
  }
  // The generator checks the state itself (an unseeded Mersenne twister, a position
  // outside its 624 words): tried on a scratch generator of the same kind, so that a
  // bad one is found before the model, the optimizer or any generator is changed (not
  // on Generator::clone(), which leaks in LibTorch 1.13).
  if (generator.device().is_cpu()) {
    try {
      auto probe = at::make_generator<at::CPUGeneratorImpl>();
      probe.set_state(state);
    } catch (const c10::Error& e) {
      throw IoError(path, "corrupt state of " + who + ": " + first_line(e.what_without_backtrace()));
    }
  }
  return state;
}

}  // namespace

JsonDifference first_difference(const nlohmann::json& left, const nlohmann::json& right, const std::string& prefix) {
  if (left == right) return {};
  const auto join = [&](const std::string& key) { return prefix.empty() ? key : prefix + "." + key; };
  if (left.is_object() && right.is_object()) {
    std::set<std::string> keys;
    for (const auto& [k, v] : left.items()) keys.insert(k);
    for (const auto& [k, v] : right.items()) keys.insert(k);
    for (const auto& k : keys) {
      const bool in_left = left.contains(k), in_right = right.contains(k);
      if (!in_left || !in_right) {
        return {join(k), in_left ? left.at(k).dump() : "(absent)", in_right ? right.at(k).dump() : "(absent)"};
      }
      auto d = first_difference(left.at(k), right.at(k), join(k));
      if (!d.path.empty()) return d;
    }
  }
  return {prefix.empty() ? std::string("(top level)") : prefix, left.dump(), right.dump()};
}

void save_checkpoint(const std::string& path, const CheckpointInfo& info, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const Generators& generators) {
  OutputArchive archive;
  auto meta = info;
  meta.has_optimizer = optimizer != nullptr;
  const auto description = info_to_json(meta);
  if (const auto key = first_nonfinite(description, ""); !key.empty()) {
    throw IoError(path, "cannot write a checkpoint whose description holds a non-finite number at " + key);
  }
  archive.write(kMetaKey, c10::IValue(description.dump()));
  OutputArchive model_archive(archive.compilation_unit());
  model.save(model_archive);
  archive.write(kModelKey, model_archive);
  if (optimizer != nullptr) {
    OutputArchive optimizer_archive(archive.compilation_unit());
    optimizer->save(optimizer_archive);
    archive.write(kOptimizerKey, optimizer_archive);
  }
  auto default_generator = at::detail::getDefaultCPUGenerator();
  archive.write(kRngKey, generator_state(default_generator), /*is_buffer=*/true);
  if (!generators.empty()) {
    OutputArchive generators_archive(archive.compilation_unit());
    for (const auto& [name, generator] : generators) {
      auto g = generator;
      generators_archive.write(name, generator_state(g), /*is_buffer=*/true);
    }
    archive.write(kGeneratorsKey, generators_archive);
  }
  std::ostringstream bytes;
  try {
    archive.save_to(bytes);
  } catch (const c10::Error& e) {
    throw IoError(path, "cannot serialise checkpoint: " + first_line(e.what_without_backtrace()));
  }
  AtomicFile::remove_stale_temporaries(path);
  write_file_atomically(path, bytes.str());
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  auto archive = open_archive(path);
  return read_info(archive, path);
}

CheckpointInfo load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                               const LoadOptions& options) {
  auto archive = open_archive(path);
  auto info = read_info(archive, path);
  if (!options.expected_kind.empty() && info.model.kind != options.expected_kind) {
    throw IoError(path, "is a checkpoint of a '" + info.model.kind + "' model, expected '" + options.expected_kind +
                            "'");
  }
  if (optimizer != nullptr && !info.has_optimizer) {
    throw IoError(path, "holds no optimizer state to resume from");
  }
  // Read and check everything first, then assign: a mismatch leaves the model,
  // the optimizer and the generators untouched.
  InputArchive model_archive;
  if (!archive.try_read(kModelKey, model_archive)) throw IoError(path, "holds no model weights");
  std::map<std::string, torch::Tensor> values;
  try {
    collect_tensors(model, model_archive, "", values, path);
  } catch (const c10::Error& e) {
    throw IoError(path, "corrupt model weights: " + first_line(e.what_without_backtrace()));
  } catch (const IoError&) {
    throw;
  } catch (const std::exception& e) {
    throw IoError(path, "corrupt model weights: " + first_line(e.what()));
  }
  torch::Tensor default_state;
  std::map<std::string, torch::Tensor> generator_states;
  if (options.restore_rng) {
    default_state = read_generator_state(archive, "", at::detail::getDefaultCPUGenerator(), true, path);
    // Format 1 saved the default generator only: the others keep their state.
    for (const auto& [name, generator] : options.generators) {
      auto state = read_generator_state(archive, name, generator, info.format > 1, path);
      if (state.defined()) generator_states[name] = state;
    }
  }
  if (optimizer != nullptr) {
    InputArchive optimizer_archive;
    if (!archive.try_read(kOptimizerKey, optimizer_archive)) throw IoError(path, "holds no optimizer state");
    // Loading an optimizer is not all-or-nothing in LibTorch: keep its state to put
    // back when anything does not fit.
    const auto backup = serialise(*optimizer);
    std::string problem;
    try {
      optimizer->load(optimizer_archive);
      problem = optimizer_state_problem(*optimizer);
    } catch (const c10::Error& e) {
      problem = first_line(e.what_without_backtrace());
    } catch (const std::exception& e) {
      problem = first_line(e.what());
    }
    if (!problem.empty()) {
      restore(*optimizer, backup);
      throw IoError(path, "optimizer state does not fit this optimizer: " + problem);
    }
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.named_parameters(/*recurse=*/true)) p.value().copy_(values.at(p.key()));
    for (auto& b : model.named_buffers(/*recurse=*/true)) b.value().copy_(values.at(b.key()));
  }
  if (options.restore_rng) {
    auto generator = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(default_state);
    }
    for (const auto& [name, state] : generator_states) {
      auto g = options.generators.at(name);
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(state);
    }
  }
  return info;
}

WarmStart warm_start(const std::string& path, torch::nn::Module& model) {
  auto archive = open_archive(path);
  const auto info = read_info(archive, path);
  InputArchive model_archive;
  if (!archive.try_read(kModelKey, model_archive)) throw IoError(path, "holds no model weights");
  WarmStart result;
  result.kind = info.model.kind;
  std::map<std::string, torch::Tensor> found;
  try {
    collect_matching(model, &model_archive, "", found, result.kept);
  } catch (const c10::Error& e) {
    throw IoError(path, "corrupt model weights: " + first_line(e.what_without_backtrace()));
  }
  if (found.empty()) {
    throw IoError(path, "no parameter or buffer of this '" + info.model.kind +
                            "' checkpoint fits the model (none has one of its names with the same shape)");
  }
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters(/*recurse=*/true)) {
    if (auto it = found.find(p.key()); it != found.end()) {
      p.value().copy_(it->second);
      result.copied.push_back(p.key());
    }
  }
  for (auto& b : model.named_buffers(/*recurse=*/true)) {
    if (auto it = found.find(b.key()); it != found.end()) {
      b.value().copy_(it->second);
      result.copied.push_back(b.key());
    }
  }
  return result;
}

std::string summarise_tensor_names(const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, int>> groups;  // in order of first appearance
  for (const auto& name : names) {
    const auto head = name.substr(0, name.find('.'));
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == head; });
    if (it == groups.end()) it = groups.insert(groups.end(), std::make_pair(head, 0));
    ++it->second;
  }
  std::string text;
  for (const auto& [head, count] : groups) {
    if (!text.empty()) text += ", ";
    text += head + " (" + std::to_string(count) + (count == 1 ? " tensor)" : " tensors)");
  }
  return text.empty() ? "none" : text;
}

}  // namespace attend::models
