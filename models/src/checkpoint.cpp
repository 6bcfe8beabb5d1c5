#include "attend/models/checkpoint.h"

#include <attend/io_error.h>

#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

namespace attend::models {
namespace {

namespace fs = std::filesystem;
using torch::serialize::InputArchive;
using torch::serialize::OutputArchive;

constexpr const char* kMetaKey = "attend_meta";
constexpr const char* kModelKey = "model";
constexpr const char* kOptimizerKey = "optimizer";
constexpr const char* kRngKey = "rng_state";

/// First line of a LibTorch error, without its C++ backtrace.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

void write_all(int fd, const std::string& bytes, const std::string& path) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(path, std::string("write failed: ") + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

/// Writes bytes to path through "<path>.tmp": write, fsync, rename, fsync folder.
void write_atomically(const std::string& path, const std::string& bytes) {
  const fs::path target(path);
  std::error_code ec;
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw IoError(path, "cannot create folder " + target.parent_path().string() + ": " + ec.message());
  }
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path, "cannot create temporary file " + tmp + ": " + std::strerror(errno));
  try {
    write_all(fd, bytes, path);
    if (::fsync(fd) != 0) throw IoError(path, std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    fs::remove(tmp, ec);
    throw;
  }
  if (::close(fd) != 0) {
    fs::remove(tmp, ec);
    throw IoError(path, std::string("close failed: ") + std::strerror(errno));
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw IoError(path, "cannot rename the temporary file into place: " + ec.message());
  }
  const auto dir = target.has_parent_path() ? target.parent_path().string() : std::string(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // make the rename itself durable; best effort
    ::close(dfd);
  }
}

nlohmann::json info_to_json(const CheckpointInfo& info) {
  return {{"format", kCheckpointFormat}, {"kind", info.kind},       {"options", info.options},
          {"state", info.state},         {"step", info.step},       {"epoch", info.epoch},
          {"has_optimizer", info.has_optimizer}};
}

CheckpointInfo info_from_json(const nlohmann::json& j, const std::string& path) {
  try {
    const auto format = j.at("format").get<std::int64_t>();
    if (format != kCheckpointFormat) {
      throw IoError(path, "checkpoint format " + std::to_string(format) + " is not supported (this build reads " +
                              std::to_string(kCheckpointFormat) + ")");
    }
    CheckpointInfo info;
    info.kind = j.at("kind").get<std::string>();
    info.options = j.at("options");
    info.state = j.at("state");
    info.step = j.at("step").get<std::int64_t>();
    info.epoch = j.at("epoch").get<std::int64_t>();
    info.has_optimizer = j.at("has_optimizer").get<bool>();
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw IoError(path, std::string("corrupt checkpoint description: ") + e.what());
  }
}

InputArchive open_archive(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path, "no such checkpoint");
  if (fs::is_directory(path, ec)) throw IoError(path, "is a folder, expected a checkpoint file");
  InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const c10::Error& e) {
    throw IoError(path, "not a readable checkpoint: " + first_line(e.what_without_backtrace()));
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
/// torch::nn::Module::save) into `out` keyed by dotted name, checking shapes.
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
    out[name] = value;
  };
  for (const auto& p : module.named_parameters(/*recurse=*/false)) take(p.key(), p.value(), false);
  for (const auto& b : module.named_buffers(/*recurse=*/false)) take(b.key(), b.value(), true);
  for (const auto& child : module.named_children()) {
    InputArchive child_archive;
    if (!archive.try_read(child.key(), child_archive)) {
      throw IoError(path, "checkpoint has no submodule " + prefix + child.key() + " that the model needs");
    }
    collect_tensors(*child.value(), child_archive, prefix + child.key() + ".", out, path);
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointInfo& info, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer) {
  OutputArchive archive;
  auto meta = info;
  meta.has_optimizer = optimizer != nullptr;
  archive.write(kMetaKey, c10::IValue(info_to_json(meta).dump()));
  OutputArchive model_archive(archive.compilation_unit());
  model.save(model_archive);
  archive.write(kModelKey, model_archive);
  if (optimizer != nullptr) {
    OutputArchive optimizer_archive(archive.compilation_unit());
    optimizer->save(optimizer_archive);
    archive.write(kOptimizerKey, optimizer_archive);
  }
  auto generator = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write(kRngKey, generator.get_state(), /*is_buffer=*/true);
  }
  std::ostringstream bytes;
  try {
    archive.save_to(bytes);
  } catch (const c10::Error& e) {
    throw IoError(path, "cannot serialise checkpoint: " + first_line(e.what_without_backtrace()));
  }
  write_atomically(path, bytes.str());
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  auto archive = open_archive(path);
  return read_info(archive, path);
}

CheckpointInfo load_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                               const LoadOptions& options) {
  auto archive = open_archive(path);
  auto info = read_info(archive, path);
  if (!options.expected_kind.empty() && info.kind != options.expected_kind) {
    throw IoError(path, "is a checkpoint of a '" + info.kind + "' model, expected '" + options.expected_kind + "'");
  }
  if (optimizer != nullptr && !info.has_optimizer) {
    throw IoError(path, "holds no optimizer state to resume from");
  }
  InputArchive model_archive;
  if (!archive.try_read(kModelKey, model_archive)) throw IoError(path, "holds no model weights");
  // Read and check everything first, then assign: a mismatch leaves the model untouched.
  std::map<std::string, torch::Tensor> values;
  try {
    collect_tensors(model, model_archive, "", values, path);
  } catch (const c10::Error& e) {
    throw IoError(path, "corrupt model weights: " + first_line(e.what_without_backtrace()));
  }
  torch::Tensor rng_state;
  if (options.restore_rng && !archive.try_read(kRngKey, rng_state, /*is_buffer=*/true)) {
    throw IoError(path, "holds no generator state to resume from");
  }
  if (optimizer != nullptr) {
    InputArchive optimizer_archive;
    if (!archive.try_read(kOptimizerKey, optimizer_archive)) throw IoError(path, "holds no optimizer state");
    try {
      optimizer->load(optimizer_archive);
    } catch (const c10::Error& e) {
      throw IoError(path, "optimizer state does not fit this optimizer: " + first_line(e.what_without_backtrace()));
    }
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model.named_parameters(/*recurse=*/true)) p.value().copy_(values.at(p.key()));
    for (auto& b : model.named_buffers(/*recurse=*/true)) b.value().copy_(values.at(b.key()));
  }
  if (options.restore_rng) {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng_state);
  }
  return info;
}

}  // namespace attend::models
