#pragma once
/// The Recurrent Attention Model (Mnih, Heess, Graves, Kavukcuoglu 2014).
///
/// At each of T steps the model looks at the image through the multi-resolution
/// retina at location l_{t-1}, updates a recurrent state h_t, and proposes the next
/// location from a Gaussian policy whose mean is computed from h_t. The class is
/// predicted from h_T. l_0 is the image centre.
///
/// Gradient routing (what the hybrid loss relies on):
/// - the location network and the baseline network read h_t detached, so REINFORCE
///   trains only the location network and the baseline MSE only the baseline network;
/// - sampled locations are detached, so no gradient flows through where the model
///   looked; classification NLL trains classifier, core and glimpse network.

#include <attend/attention/hard.h>
#include <attend/models/enum_names.h>
#include <attend/vision/glimpse.h>

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace attend::models {

enum class RamCore { kRnn, kLstm };
template <>
struct EnumNames<RamCore> {
  static constexpr const char* what = "ram core";
  static constexpr std::pair<RamCore, const char*> names[] = {{RamCore::kRnn, "rnn"}, {RamCore::kLstm, "lstm"}};
};

/// Where the first glimpse looks. kCentre: the image centre (the paper's setting);
/// kRandom: uniform over the image in passes that sample (training, Monte-Carlo
/// evaluation) and the centre, the mean of that distribution, in deterministic
/// passes; kLearned: a learned location (two parameters through tanh), the same for
/// every image.
enum class FirstLocation { kCentre, kRandom, kLearned };
template <>
struct EnumNames<FirstLocation> {
  static constexpr const char* what = "first location";
  static constexpr std::pair<FirstLocation, const char*> names[] = {
      {FirstLocation::kCentre, "centre"}, {FirstLocation::kRandom, "random"}, {FirstLocation::kLearned, "learned"}};
};

struct RamOptions {
  TORCH_ARG(std::int64_t, channels) = 1;         ///< image channels C
  TORCH_ARG(std::int64_t, classes) = 10;
  TORCH_ARG(std::int64_t, glimpse_size) = 8;     ///< retina patch side g
  TORCH_ARG(std::int64_t, scales) = 1;           ///< retina patches k
  TORCH_ARG(double, scale_ratio) = 2.0;          ///< side ratio s of successive patches
  TORCH_ARG(std::int64_t, glimpses) = 6;         ///< T
  TORCH_ARG(std::int64_t, what_size) = 128;      ///< h_g: retina features
  TORCH_ARG(std::int64_t, where_size) = 128;     ///< h_l: location features
  TORCH_ARG(std::int64_t, glimpse_features) = 256;
  TORCH_ARG(std::int64_t, hidden) = 256;         ///< core state size
  TORCH_ARG(RamCore, core) = RamCore::kRnn;      ///< ReLU RNN (as in the paper) or LSTM
  TORCH_ARG(double, location_std) = 0.15;        ///< std of the Gaussian policy
  /// Where l_0 is (JSON key "first_location", absent = centre, as checkpoints from
  /// before the option were trained).
  TORCH_ARG(FirstLocation, first_location) = FirstLocation::kCentre;


 public:
  vision::RetinaOptions retina() const {
    return vision::RetinaOptions().size(glimpse_size_).scales(scales_).ratio(scale_ratio_);
  }
  /// Throws c10::Error naming the first nonsensical option.
  void validate() const;
  nlohmann::json to_json() const;
  static RamOptions from_json(const nlohmann::json& j);
};

/// One recurrent step's results.
struct RamStep {
  torch::Tensor location;   ///< [B,2] where the next glimpse looks (detached)
  torch::Tensor log_prob;   ///< [B] log-probability of that location under the policy
  torch::Tensor baseline;   ///< [B] predicted reward
};

/// A whole episode. l_0 depends on RamOptions::first_location.
struct RamOutput {
  torch::Tensor logits;            ///< [B,classes] class scores from the final state
  torch::Tensor log_probs;         ///< [B,classes] their log-softmax
  torch::Tensor locations;         ///< [B,T,2] l_0 .. l_{T-1}: where each glimpse looked
  torch::Tensor policy_log_probs;  ///< [B,T-1] log pi(l_t | h_t) for t = 1..T-1
  torch::Tensor baselines;         ///< [B,T-1] b_t for the same steps
  torch::Tensor glimpses;          ///< [B,T,k,C,g,g] retina output, when requested
};

class RamImpl : public torch::nn::Cloneable<RamImpl> {
 public:
  explicit RamImpl(RamOptions options = {});
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// requires: images [B,C,H,W] float with C = options.channels().
  /// `sample`: draw locations from the policy (training, Monte-Carlo evaluation);
  /// otherwise follow the policy mean (deterministic). `keep_glimpses` fills
  /// RamOutput::glimpses for visualisation. `location_std` (> 0) replaces
  /// options.location_std for this pass, e.g. for an annealed std in training.
  RamOutput forward(const torch::Tensor& images, bool sample, std::optional<at::Generator> generator = std::nullopt,
                    bool keep_glimpses = false, std::optional<double> location_std = std::nullopt);

  RamOptions options;
  torch::nn::Linear what{nullptr}, where{nullptr}, what_out{nullptr}, where_out{nullptr};
  torch::nn::Linear core_input{nullptr}, core_hidden{nullptr};  // ReLU RNN core
  torch::nn::LSTMCell lstm{nullptr};                             // LSTM core
  torch::nn::Linear location_net{nullptr}, baseline_net{nullptr}, classifier{nullptr};
  torch::Tensor first_location;  ///< [2] before tanh; registered in FirstLocation::kLearned only
};
TORCH_MODULE(Ram);

/// Terms of the hybrid loss, each a scalar tensor, plus the reward.
struct RamLoss {
  torch::Tensor total;           ///< classification + baseline + reinforce_weight * reinforce
  torch::Tensor classification;  ///< NLL of the final prediction
  torch::Tensor baseline;        ///< MSE of b_t against the reward
  torch::Tensor reinforce;       ///< -mean_b sum_t log pi(l_t) (R - b_t), baseline detached
  torch::Tensor reward;          ///< [B] 1 for a correct final prediction, else 0
};

/// The policy std of training epoch `epoch` (0-based) of `epochs` when it is annealed
/// from `start` to `final` by half a cosine: `start` in the first epoch, `final` in
/// the last and after. start = 0 means no annealing: always `final`.
double annealed_location_std(double start, double final, std::int64_t epoch, std::int64_t epochs);

/// requires: targets [B] int64.
RamLoss ram_loss(const RamOutput& output, const torch::Tensor& targets, double reinforce_weight = 1.0);

/// Class log-probabilities averaged over `samples` trajectories: log of the mean of
/// the softmax outputs. samples = 0 follows the policy mean (one deterministic pass).
torch::Tensor ram_predict(Ram& model, const torch::Tensor& images, std::int64_t samples,
                          std::optional<at::Generator> generator = std::nullopt);

}  // namespace attend::models
