#pragma once
/// Self-describing checkpoints. One file holds what is needed to rebuild a model
/// and to resume its training:
///   - the model kind ("ram", "cnn", ...) and its options as JSON,
///   - free-form training state as JSON (step, epoch, best metric, vocabulary, ...),
///   - every parameter and buffer of the model,
///   - optionally the optimizer's state,
///   - the state of LibTorch's default CPU generator.
/// Files are LibTorch archives (zip), written to a temporary file in the same folder,
/// synced, and renamed into place: a crash or failed write never leaves a partial
/// file and never damages the previous checkpoint at that path.

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace attend::models {

/// Format version written into every checkpoint.
constexpr std::int64_t kCheckpointFormat = 1;

/// What a checkpoint says about itself.
struct CheckpointInfo {
  std::string kind;                                   ///< model kind, e.g. "ram"
  nlohmann::json options = nlohmann::json::object();  ///< the model's options
  nlohmann::json state = nlohmann::json::object();    ///< training state
  std::int64_t step = 0;                              ///< optimizer steps taken
  std::int64_t epoch = 0;                             ///< epochs completed
  bool has_optimizer = false;                         ///< optimizer state is stored
};

/// Writes `info`, the parameters and buffers of `model`, the optimizer state when
/// `optimizer` is given, and the default generator's state to `path` atomically.
/// Creates missing parent folders.
/// throws attend::IoError naming the path when it cannot be written.
void save_checkpoint(const std::string& path, const CheckpointInfo& info, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer = nullptr);

/// Reads only the description of a checkpoint.
/// throws attend::IoError naming the path for a missing, unreadable or foreign file.
CheckpointInfo read_checkpoint_info(const std::string& path);

struct LoadOptions {
  /// When not empty, the checkpoint's kind must equal this.
  std::string expected_kind;
  /// Restore LibTorch's default generator (for bit-exact resume).
  bool restore_rng = false;
};

/// Loads weights into `model` (which must have the same parameter names and
/// shapes, e.g. built from the stored options) and, when given, the optimizer state.
/// Nothing is modified unless the whole checkpoint matches.
/// throws attend::IoError naming the path and, for a mismatch, the kind, the missing
/// parameter, or both shapes.
CheckpointInfo load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer = nullptr, const LoadOptions& options = {});

}  // namespace attend::models
