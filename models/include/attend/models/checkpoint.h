#pragma once
/// Self-describing checkpoints. One file holds what is needed to rebuild a model
/// and to resume its training. Its description has three parts:
///   - model:    the kind ("ram", "cnn", ...) and its options, enough to rebuild it
///               through the model registry;
///   - training: how it is trained (optimizer, schedule, seed, ...) and the loop
///               state (epoch, step, running sums, best metric);
///   - data:     what it is trained on (a datasets::DataSpec as JSON), so evaluation
///               finds its test set and a resumed run is refused on other data;
/// then every parameter and buffer of the model, optionally the optimizer's state,
/// the state of LibTorch's default CPU generator and of every named generator the
/// caller hands over (a model's own, e.g. the RAM's location sampler).
///
/// Files are LibTorch archives (zip) written through attend::AtomicFile: a crash or
/// failed write never leaves a partial file and never damages the previous
/// checkpoint at that path. Loading checks everything (kind, parameter names,
/// shapes, dtypes, optimizer groups and state, generators) before it modifies the
/// model, the optimizer or any generator.
///
/// Format 1 (before the three parts) kept the training options and the data inside
/// the model options; it still loads: read_checkpoint_info splits it.

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace attend::models {

/// Format version written into every checkpoint.
constexpr std::int64_t kCheckpointFormat = 2;

/// What rebuilds a model: its registered kind and its complete options.
struct ModelDescription {
  std::string kind;                                   ///< e.g. "ram"
  nlohmann::json options = nlohmann::json::object();  ///< as ModelKind::make takes them
};

/// What a checkpoint says about itself.
struct CheckpointInfo {
  ModelDescription model;
  nlohmann::json training = nlohmann::json::object();  ///< optimizer, schedule, seed, ...
  nlohmann::json data = nlohmann::json::object();      ///< DataSpec JSON ({} = not recorded)
  nlohmann::json state = nlohmann::json::object();     ///< loop state of the engine
  std::int64_t step = 0;                               ///< optimizer steps taken
  std::int64_t epoch = 0;                              ///< epochs completed
  bool has_optimizer = false;                          ///< optimizer state is stored
  std::int64_t format = kCheckpointFormat;             ///< format the file was written in
};

/// Named generators saved beside the default one (restored by name).
using Generators = std::map<std::string, at::Generator>;

/// Writes `info`, the parameters and buffers of `model`, the optimizer state when
/// `optimizer` is given, the default generator's state and `generators` to `path`
/// atomically. Creates missing parent folders.
/// throws attend::IoError naming the path when it cannot be written.
void save_checkpoint(const std::string& path, const CheckpointInfo& info, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer = nullptr, const Generators& generators = {});

/// Reads only the description of a checkpoint.
/// throws attend::IoError naming the path for a missing, unreadable or foreign file.
CheckpointInfo read_checkpoint_info(const std::string& path);

struct LoadOptions {
  /// When not empty, the checkpoint's kind must equal this.
  std::string expected_kind;
  /// Restore LibTorch's default generator and `generators` (for bit-exact resume).
  bool restore_rng = false;
  /// Named generators to restore when restore_rng is set; each must be stored.
  Generators generators;
};

/// Loads weights into `model` (which must have the same parameter names, shapes and
/// dtypes, e.g. built from the stored options) and, when given, the optimizer state.
/// Nothing is modified unless the whole checkpoint matches.
/// throws attend::IoError naming the path and, for a mismatch, the kind, the missing
/// parameter, both shapes or both dtypes, or the optimizer's groups.
CheckpointInfo load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer = nullptr, const LoadOptions& options = {});

/// What warm_start copied.
struct WarmStart {
  std::string kind;                 ///< the checkpoint's model kind
  std::vector<std::string> copied;  ///< the model's tensors taken from the checkpoint
  std::vector<std::string> kept;    ///< the model's tensors left as they were
};

/// Initialises `model` from another model's checkpoint (a warm start: e.g. a SEAM
/// network from a trained CAM classifier, whose backbone blocks have the same names),
/// layer by layer: a submodule's own parameters and buffers are copied when the
/// checkpoint holds every one of them under the same dotted name, shape and dtype;
/// otherwise they are left as they are. Nothing is modified unless a layer fits.
/// throws attend::IoError naming the path for an unreadable file or when no tensor of
/// the checkpoint fits the model.
WarmStart warm_start(const std::string& path, torch::nn::Module& model);
/// Tensor names grouped by their first component, in order of appearance:
/// "convs (30 tensors), classifier (1 tensor)"; "none" for no names.
std::string summarise_tensor_names(const std::vector<std::string>& names);

/// The first place where two JSON values differ, as "key.sub: A here, B there"
/// wording's parts: the dotted path ("" when they are equal) and both values.
struct JsonDifference {
  std::string path;  ///< e.g. "options.glimpse_size"; "" = no difference
  std::string left, right;
};
JsonDifference first_difference(const nlohmann::json& left, const nlohmann::json& right,
                                const std::string& prefix = "");

}  // namespace attend::models
