#include "attend/models/ram.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace attend::models {

void RamOptions::validate() const {
  TORCH_CHECK(channels_ >= 1 && channels_ <= 64, "ram: channels must be in 1..64, got ", channels_);
  TORCH_CHECK(classes_ >= 2, "ram: classes must be >= 2, got ", classes_);
  TORCH_CHECK(glimpse_size_ >= 1, "ram: glimpse size must be >= 1, got ", glimpse_size_);
  TORCH_CHECK(scales_ >= 1 && scales_ <= 16, "ram: scales must be in 1..16, got ", scales_);
  TORCH_CHECK(scale_ratio_ > 0, "ram: scale ratio must be > 0, got ", scale_ratio_);
  TORCH_CHECK(glimpses_ >= 1 && glimpses_ <= 1000, "ram: glimpses must be in 1..1000, got ", glimpses_);
  TORCH_CHECK(what_size_ >= 1 && where_size_ >= 1 && glimpse_features_ >= 1 && hidden_ >= 1,
              "ram: layer sizes must be >= 1");
  TORCH_CHECK(location_std_ > 0, "ram: location std must be > 0, got ", location_std_);
}

nlohmann::json RamOptions::to_json() const {
  nlohmann::json j = {{"channels", channels_},         {"classes", classes_},     {"glimpse_size", glimpse_size_},
          {"scales", scales_},             {"scale_ratio", scale_ratio_}, {"glimpses", glimpses_},
          {"what_size", what_size_},       {"where_size", where_size_}, {"glimpse_features", glimpse_features_},
          {"hidden", hidden_},             {"core", enum_name(core_)},           {"location_std", location_std_}};
  // Only when not the centre, so checkpoints from before the option match.
  if (first_location_ != FirstLocation::kCentre) j["first_location"] = enum_name(first_location_);
  return j;
}

RamOptions RamOptions::from_json(const nlohmann::json& j) {
  RamOptions o;
  o.channels(j.at("channels").get<std::int64_t>())
      .classes(j.at("classes").get<std::int64_t>())
      .glimpse_size(j.at("glimpse_size").get<std::int64_t>())
      .scales(j.at("scales").get<std::int64_t>())
      .scale_ratio(j.at("scale_ratio").get<double>())
      .glimpses(j.at("glimpses").get<std::int64_t>())
      .what_size(j.at("what_size").get<std::int64_t>())
      .where_size(j.at("where_size").get<std::int64_t>())
      .glimpse_features(j.at("glimpse_features").get<std::int64_t>())
      .hidden(j.at("hidden").get<std::int64_t>())
      .core(parse_enum<RamCore>(j.at("core").get<std::string>()))
      .location_std(j.at("location_std").get<double>())
      .first_location(parse_enum<FirstLocation>(j.value("first_location", std::string("centre"))));
  return o;
}

RamImpl::RamImpl(RamOptions options_) : options(std::move(options_)) { reset(); }

void RamImpl::reset() {
  options.validate();
  const auto& o = options;
  const auto retina_features = o.scales() * o.channels() * o.glimpse_size() * o.glimpse_size();
  what = register_module("what", torch::nn::Linear(retina_features, o.what_size()));
  where = register_module("where", torch::nn::Linear(2, o.where_size()));
  what_out = register_module("what_out", torch::nn::Linear(o.what_size(), o.glimpse_features()));
  where_out = register_module("where_out", torch::nn::Linear(o.where_size(), o.glimpse_features()));
  if (o.core() == RamCore::kLstm) {
    lstm = register_module("lstm", torch::nn::LSTMCell(o.glimpse_features(), o.hidden()));
  } else {
    core_input = register_module("core_input", torch::nn::Linear(o.glimpse_features(), o.hidden()));
    core_hidden = register_module("core_hidden", torch::nn::Linear(o.hidden(), o.hidden()));
  }
  location_net = register_module("location_net", torch::nn::Linear(o.hidden(), 2));
  baseline_net = register_module("baseline_net", torch::nn::Linear(o.hidden(), 1));
  classifier = register_module("classifier", torch::nn::Linear(o.hidden(), o.classes()));
  first_location = o.first_location() == FirstLocation::kLearned
                       ? register_parameter("first_location", torch::zeros({2}))
                       : torch::Tensor();
}

void RamImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "attend::models::Ram(glimpses=" << o.glimpses() << ", retina=" << o.scales() << "x" << o.glimpse_size()
         << "px ratio " << o.scale_ratio() << ", hidden=" << o.hidden() << ", core=" << enum_name(o.core())
         << ", std=" << o.location_std() << ")";
}

RamOutput RamImpl::forward(const torch::Tensor& images, bool sample, std::optional<at::Generator> generator,
                           bool keep_glimpses, std::optional<double> location_std) {
  const double policy_std = location_std.value_or(options.location_std());
  TORCH_CHECK(policy_std > 0 && std::isfinite(policy_std), "Ram: location std must be a number > 0, got ", policy_std);
  TORCH_CHECK(images.defined() && images.dim() == 4 && images.is_floating_point() &&
                  images.size(1) == options.channels(),
              "Ram: expected float images [B,", options.channels(), ",H,W], got ",
              images.defined() ? c10::str(images.sizes()) : std::string("an undefined tensor"));
  const auto b = images.size(0);
  const auto t_max = options.glimpses();
  const auto retina = options.retina();
  torch::Tensor location;
  switch (options.first_location()) {
    case FirstLocation::kLearned:
      location = torch::tanh(first_location).to(images.scalar_type()).unsqueeze(0).expand({b, 2});
      break;
    case FirstLocation::kRandom:
      if (sample) {
        location = generator ? torch::rand({b, 2}, *generator, images.options()) * 2 - 1
                             : torch::rand({b, 2}, images.options()) * 2 - 1;
        break;
      }
      [[fallthrough]];
    case FirstLocation::kCentre:
      location = torch::zeros({b, 2}, images.options());
      break;
  }
  auto h = torch::zeros({b, options.hidden()}, images.options());
  auto c = torch::zeros_like(h);
  std::vector<torch::Tensor> locations, log_probs, baselines, glimpses;
  for (std::int64_t t = 0; t < t_max; ++t) {
    locations.push_back(location);
    const auto patches = vision::extract_glimpses(images, location, retina);  // [B,k,C,g,g]
    if (keep_glimpses) glimpses.push_back(patches.detach());
    const auto hg = torch::relu(what(patches.flatten(1)));
    const auto hl = torch::relu(where(location));
    const auto g = torch::relu(what_out(hg) + where_out(hl));
    if (lstm) {
      std::tie(h, c) = lstm(g, std::make_tuple(h, c));
    } else {
      h = torch::relu(core_input(g) + core_hidden(h));
    }
    if (t + 1 < t_max) {
      const auto state = h.detach();
      const auto mean = torch::tanh(location_net(state));
      auto policy = attention::gaussian_location_policy(mean, policy_std, sample, generator);
      location = policy.location;
      log_probs.push_back(policy.log_prob);
      baselines.push_back(baseline_net(state).squeeze(1));
    }
  }
  RamOutput out;
  out.logits = classifier(h);
  out.log_probs = torch::log_softmax(out.logits, 1);
  out.locations = torch::stack(locations, 1);
  const auto none = torch::zeros({b, 0}, images.options());
  out.policy_log_probs = log_probs.empty() ? none : torch::stack(log_probs, 1);
  out.baselines = baselines.empty() ? none : torch::stack(baselines, 1);
  if (keep_glimpses) out.glimpses = torch::stack(glimpses, 1);
  return out;
}

double annealed_location_std(double start, double final, std::int64_t epoch, std::int64_t epochs) {
  if (start <= 0 || epochs <= 1 || epoch >= epochs - 1) return final;
  const double progress = static_cast<double>(std::max<std::int64_t>(epoch, 0)) / static_cast<double>(epochs - 1);
  return final + (start - final) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

RamLoss ram_loss(const RamOutput& output, const torch::Tensor& targets, double reinforce_weight) {
  TORCH_CHECK(targets.defined() && targets.dim() == 1 && targets.size(0) == output.log_probs.size(0),
              "ram_loss: expected targets [", output.log_probs.size(0), "], got ",
              targets.defined() ? c10::str(targets.sizes()) : std::string("an undefined tensor"));
  RamLoss loss;
  loss.classification = torch::nll_loss(output.log_probs, targets);
  loss.reward = (output.log_probs.detach().argmax(1) == targets).to(output.log_probs.scalar_type());
  if (output.baselines.size(1) == 0) {
    loss.baseline = torch::zeros({}, output.log_probs.options());
    loss.reinforce = torch::zeros({}, output.log_probs.options());
  } else {
    const auto reward = loss.reward.unsqueeze(1).expand_as(output.baselines);
    loss.baseline = torch::mse_loss(output.baselines, reward);
    const auto advantage = reward - output.baselines.detach();
    loss.reinforce = -(output.policy_log_probs * advantage).sum(1).mean();
  }
  loss.total = loss.classification + loss.baseline + reinforce_weight * loss.reinforce;
  return loss;
}

torch::Tensor ram_predict(Ram& model, const torch::Tensor& images, std::int64_t samples,
                          std::optional<at::Generator> generator) {
  TORCH_CHECK(samples >= 0 && samples <= 1000, "ram_predict: samples must be in 0..1000, got ", samples);
  if (samples == 0) return model->forward(images, /*sample=*/false, generator).log_probs;
  // Mean of probabilities over trajectories, computed in log space for stability.
  std::vector<torch::Tensor> runs;
  for (std::int64_t m = 0; m < samples; ++m) runs.push_back(model->forward(images, true, generator).log_probs);
  return torch::logsumexp(torch::stack(runs), 0) - std::log(static_cast<double>(samples));
}

}  // namespace attend::models
