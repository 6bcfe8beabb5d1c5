#include "attend/models/captioner.h"

#include <attend/attention/hard.h>
#include <attend/models/trainer.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace attend::models {

void CaptionerOptions::validate() const {
  TORCH_CHECK(vocab_size_ >= 5 && vocab_size_ <= 10'000'000, "captioner: vocabulary size must be in 5..10000000, got ",
              vocab_size_);
  TORCH_CHECK(channels_ == 1 || channels_ == 3, "captioner: channels must be 1 or 3, got ", channels_);
  TORCH_CHECK(!encoder_filters_.empty() && encoder_filters_.size() <= 6, "captioner: 1..6 encoder blocks, got ",
              encoder_filters_.size());
  for (auto f : encoder_filters_) TORCH_CHECK(f >= 1 && f <= 4096, "captioner: encoder filters must be in 1..4096");
  TORCH_CHECK(!deep_output_tanh_ || deep_output_, "captioner: deep_output_tanh needs the deep output layer");
  for (auto [name, v] : {std::pair{"embed size", embed_size_}, std::pair{"hidden size", hidden_size_},
                         std::pair{"attention size", attention_size_}}) {
    TORCH_CHECK(v >= 1 && v <= 65536, "captioner: ", name, " must be in 1..65536, got ", v);
  }
  TORCH_CHECK(std::isfinite(dropout_) && dropout_ >= 0 && dropout_ < 1, "captioner: dropout must be in [0,1), got ",
              dropout_);
  TORCH_CHECK(std::isfinite(doubly_stochastic_) && doubly_stochastic_ >= 0,
              "captioner: the doubly stochastic lambda must be a finite number >= 0, got ", doubly_stochastic_);
  TORCH_CHECK(std::isfinite(entropy_) && entropy_ >= 0, "captioner: the entropy weight must be a finite number >= 0, got ",
              entropy_);
  TORCH_CHECK(std::isfinite(baseline_decay_) && baseline_decay_ >= 0 && baseline_decay_ < 1,
              "captioner: the baseline decay must be in [0,1), got ", baseline_decay_);
  TORCH_CHECK(external_features_ >= 0 && external_features_ <= 65536,
              "captioner: external feature channels must be in 0..65536, got ", external_features_);
  TORCH_CHECK(external_stride_ >= 1 && external_stride_ <= 4096, "captioner: external stride must be in 1..4096, got ",
              external_stride_);
  TORCH_CHECK(attention_ != CaptionAttention::kNone || init_from_mean_,
              "captioner: without attention the image enters only through the initial state; it needs init from "
              "the mean annotation");
}

nlohmann::json CaptionerOptions::to_json() const {
  return {{"vocab_size", vocab_size_},
          {"channels", channels_},
          {"encoder_filters", encoder_filters_},
          {"embed_size", embed_size_},
          {"hidden_size", hidden_size_},
          {"attention_size", attention_size_},
          {"init_from_mean", init_from_mean_},
          {"gate", gate_},
          {"deep_output", deep_output_},
          {"deep_output_tanh", deep_output_tanh_},
          {"dropout", dropout_},
          {"doubly_stochastic", doubly_stochastic_},
          {"attention", enum_name(attention_)},
          {"position", position_},
          {"word_query", word_query_},
          {"external_features", external_features_},
          {"external_stride", external_stride_},
          {"entropy", entropy_},
          {"baseline_decay", baseline_decay_}};
}

CaptionerOptions CaptionerOptions::from_json(const nlohmann::json& j) {
  try {
    auto o = CaptionerOptions(j.at("vocab_size").get<std::int64_t>())
                 .channels(j.at("channels").get<std::int64_t>())
                 .encoder_filters(j.at("encoder_filters").get<std::vector<std::int64_t>>())
                 .embed_size(j.at("embed_size").get<std::int64_t>())
                 .hidden_size(j.at("hidden_size").get<std::int64_t>())
                 .attention_size(j.at("attention_size").get<std::int64_t>())
                 .init_from_mean(j.at("init_from_mean").get<bool>())
                 .gate(j.at("gate").get<bool>())
                 .deep_output(j.at("deep_output").get<bool>())
                 .deep_output_tanh(j.value("deep_output_tanh", false))
                 .dropout(j.at("dropout").get<double>())
                 .doubly_stochastic(j.at("doubly_stochastic").get<double>())
                 .attention(parse_enum<CaptionAttention>(j.at("attention").get<std::string>()))
                 .position(j.value("position", false))
                 .word_query(j.value("word_query", false))
                 .external_features(j.value("external_features", std::int64_t{0}))
                 .external_stride(j.value("external_stride", std::int64_t{8}))
                 .entropy(j.at("entropy").get<double>())
                 .baseline_decay(j.at("baseline_decay").get<double>());
    o.validate();
    return o;
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, "captioner options: ", e.what());
  }
}

CaptionerImpl::CaptionerImpl(const CaptionerOptions& o) : options(o) {
  options.validate();
  reset();
}

void CaptionerImpl::reset() {
  const auto& o = options;
  encoder = torch::nn::Sequential();
  std::int64_t in = o.channels();
  // He initialisation: LibTorch's default (uniform with variance 1/(3 fan_in)) shrinks
  // the signal by about 6x per ReLU layer, and after six layers the annotations were
  // too faint for the decoder to learn from (training stalled at the grammar).
  auto conv = [](std::int64_t from, std::int64_t to) {
    torch::nn::Conv2d c(torch::nn::Conv2dOptions(from, to, 3).padding(1));
    torch::NoGradGuard no_grad;
    torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanIn, torch::kReLU);
    c->bias.zero_();
    return c;
  };
  for (auto f : o.external_features() > 0 ? std::vector<std::int64_t>{} : o.encoder_filters()) {
    encoder->push_back(conv(in, f));
    encoder->push_back(torch::nn::ReLU());
    encoder->push_back(conv(f, f));
    encoder->push_back(torch::nn::ReLU());
    encoder->push_back(torch::nn::MaxPool2d(2));
    in = f;
  }
  const auto d = (o.external_features() > 0 ? o.external_features() : in) + (o.position() ? 2 : 0);
  const auto e = o.embed_size(), h = o.hidden_size();
  const bool context = o.attention() != CaptionAttention::kNone;
  register_module("encoder", encoder);
  embedding = register_module("embedding", torch::nn::Embedding(o.vocab_size(), e));
  const auto query = h + (o.word_query() ? e : 0);
  attention = register_module("attention", attention::AdditiveAttention(query, d, o.attention_size()));
  lstm = register_module("lstm", torch::nn::LSTMCell(context ? e + d : e, h));
  if (o.init_from_mean()) {
    init_h = register_module("init_h", torch::nn::Linear(d, h));
    init_c = register_module("init_c", torch::nn::Linear(d, h));
  }
  if (o.gate() && context) f_beta = register_module("f_beta", torch::nn::Linear(h, 1));
  if (o.deep_output()) {
    out_h = register_module("out_h", torch::nn::Linear(h, e));
    if (context) out_z = register_module("out_z", torch::nn::Linear(d, e));
    out_words = register_module("out_words", torch::nn::Linear(e, o.vocab_size()));
  } else {
    out_words = register_module("out_words", torch::nn::Linear(h, o.vocab_size()));
  }
  dropout = register_module("dropout", torch::nn::Dropout(o.dropout()));
  reward_baseline = register_buffer("reward_baseline", torch::zeros({2}));
}

void CaptionerImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::models::Captioner(vocab=" << options.vocab_size() << ", hidden=" << options.hidden_size()
         << ", attention=" << enum_name(options.attention()) << (options.gate() ? ", gate" : "")
         << (options.word_query() ? ", word query" : "")
         << (options.deep_output() ? (options.deep_output_tanh() ? ", deep output (tanh)" : ", deep output") : "")
         << ", lambda=" << options.doubly_stochastic() << ")";
}

std::int64_t CaptionerImpl::stride() const {
  return options.external_features() > 0 ? options.external_stride()
                                         : std::int64_t{1} << options.encoder_filters().size();
}

std::pair<std::int64_t, std::int64_t> CaptionerImpl::grid(std::int64_t height, std::int64_t width) const {
  return {height / stride(), width / stride()};
}

torch::Tensor CaptionerImpl::encode(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == options.channels(), "captioner: expected images [B,",
              options.channels(), ",H,W], got ", images.sizes());
  TORCH_CHECK(images.size(2) >= stride() && images.size(3) >= stride(), "captioner: images of ", images.size(2), "x",
              images.size(3), " are smaller than the encoder's stride ", stride());
  // A few images at a time: the first block's activations of a whole batch (33 MB for
  // 64 grey 64x64 images) leave the caches and, above glibc's mmap threshold, are
  // faulted in afresh at every call; 8 at a time ran 7x faster (bench/caption_bench).
  constexpr std::int64_t kChunk = 8;
  std::vector<torch::Tensor> parts;
  for (std::int64_t begin = 0; begin < images.size(0); begin += kChunk) {
    const auto chunk = images.narrow(0, begin, std::min(kChunk, images.size(0) - begin));
    if (options.external_features() > 0) {
      TORCH_CHECK(static_cast<bool>(external_encoder), "captioner: the external encoder is not set");
      auto map = external_encoder(chunk);
      TORCH_CHECK(map.dim() == 4 && map.size(0) == chunk.size(0) && map.size(1) == options.external_features(),
                  "captioner: the external encoder gave ", map.sizes(), " for ", chunk.sizes(),
                  ", not a feature map [B,", options.external_features(), ",h,w]");
      parts.push_back(map.to(torch::kFloat32));
    } else {
      parts.push_back(encoder->forward(chunk));
    }
  }
  return annotations_of(parts.size() == 1 ? parts[0] : torch::cat(parts, 0));
}

torch::Tensor CaptionerImpl::annotations_of(const torch::Tensor& features) const {
  TORCH_CHECK(features.dim() == 4, "captioner: expected a feature map [B,D,h,w], got ", features.sizes());
  auto annotations = features.flatten(2).transpose(1, 2);  // [B,N,D]
  if (options.position()) {
    const auto rows = features.size(2), columns = features.size(3);
    const auto o = torch::TensorOptions().dtype(annotations.scalar_type());
    // Cell centres in [-1,1]: (2 * index + 1) / cells - 1.
    const auto y = (torch::arange(rows, o) * 2 + 1) / static_cast<double>(rows) - 1;
    const auto x = (torch::arange(columns, o) * 2 + 1) / static_cast<double>(columns) - 1;
    const auto grid = torch::stack({x.unsqueeze(0).expand({rows, columns}), y.unsqueeze(1).expand({rows, columns})}, 2)
                          .reshape({1, rows * columns, 2})
                          .expand({annotations.size(0), rows * columns, 2});
    annotations = torch::cat({annotations, grid}, 2);
  }
  return annotations.contiguous();
}

std::pair<torch::Tensor, torch::Tensor> CaptionerImpl::initial_state(const torch::Tensor& annotations) {
  const auto b = annotations.size(0);
  if (!options.init_from_mean()) {
    auto zeros = torch::zeros({b, options.hidden_size()}, annotations.options());
    return {zeros, zeros.clone()};
  }
  const auto mean = annotations.mean(1);
  return {torch::tanh(init_h->forward(mean)), torch::tanh(init_c->forward(mean))};
}

CaptionerImpl::Step CaptionerImpl::step(const torch::Tensor& annotations, const torch::Tensor& projected,
                                        const torch::Tensor& tokens, const torch::Tensor& h, const torch::Tensor& c,
                                        const torch::Tensor& alpha_override) {
  const auto b = annotations.size(0), n = annotations.size(1), d = annotations.size(2);
  const auto rows = h.size(0);
  const auto q = rows / b;  // rows (beams) per image
  Step out;
  torch::Tensor context;
  const auto embedded = embedding->forward(tokens);
  const auto query = (options.word_query() ? torch::cat({h, embedded}, 1) : h).view({b, q, -1});
  switch (options.attention()) {
    case CaptionAttention::kSoft: {
      // [B,q,H] queries against keys projected once per image: the beams share them.
      if (alpha_override.defined()) {
        TORCH_CHECK(alpha_override.sizes() == torch::IntArrayRef({rows, n}), "captioner: alpha override must be [",
                    rows, ",", n, "], got ", alpha_override.sizes());
        out.alpha = alpha_override.to(annotations.scalar_type());
        context = torch::bmm(out.alpha.view({b, q, n}), annotations).reshape({rows, d});
        break;
      }
      const auto attended = attention->forward_projected(query, projected, annotations);
      context = attended.context.reshape({rows, d});
      out.alpha = attended.weights.reshape({rows, n});
      break;
    }
    case CaptionAttention::kHard: {
      TORCH_CHECK(!alpha_override.defined(), "captioner: alpha override needs soft attention");
      const auto attended = attention->forward_projected(query, projected, annotations);
      out.alpha = attended.weights.reshape({rows, n});
      // alpha is the policy; log alpha as logits gives the same distribution.
      const auto policy = attention::categorical_policy(torch::log(out.alpha.clamp_min(1e-30)), {}, is_training(),
                                                        sampler);
      const auto image_of_row = torch::arange(rows, policy.index.options()).div(q, "floor");
      context = annotations.index({image_of_row, policy.index});  // [rows,D]
      out.location_log_prob = policy.log_prob;
      out.entropy = policy.entropy;
      break;
    }
    case CaptionAttention::kUniform:
      context = annotations.mean(1).unsqueeze(1).expand({b, q, d}).reshape({rows, d});
      out.alpha = torch::full({rows, n}, 1.0 / static_cast<double>(n), annotations.options());
      break;
    case CaptionAttention::kNone:
      break;
  }
  torch::Tensor z;
  if (context.defined()) {
    out.beta = options.gate() ? torch::sigmoid(f_beta->forward(h)).squeeze(1) : torch::ones({rows}, h.options());
    z = options.gate() ? context * out.beta.unsqueeze(1) : context;
  }
  const auto input = z.defined() ? torch::cat({embedded, z}, 1) : embedded;
  const auto state = lstm->forward(input, std::make_tuple(h, c));
  out.h = std::get<0>(state);
  out.c = std::get<1>(state);
  if (options.deep_output()) {
    auto deep = embedded + out_h->forward(out.h);
    if (z.defined()) deep = deep + out_z->forward(z);
    if (options.deep_output_tanh()) deep = torch::tanh(deep);
    out.logits = out_words->forward(dropout->forward(deep));
  } else {
    out.logits = out_words->forward(dropout->forward(out.h));
  }
  return out;
}

CaptionerOutput CaptionerImpl::forward(const torch::Tensor& images, const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == images.size(0),
              "captioner: expected tokens [B,T] int64 with T >= 2 for ", images.size(0), " images, got ",
              tokens.sizes(), " ", tokens.scalar_type());
  return forward_encoded(encode(images), tokens);
}

CaptionerOutput CaptionerImpl::forward_encoded(const torch::Tensor& annotations, const torch::Tensor& tokens) {
  TORCH_CHECK(annotations.dim() == 3, "captioner: expected annotations [B,N,D], got ", annotations.sizes());
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == annotations.size(0) && tokens.size(1) >= 2 &&
                  tokens.scalar_type() == torch::kInt64,
              "captioner: expected tokens [B,T] int64 with T >= 2 for ", annotations.size(0), " images, got ",
              tokens.sizes(), " ", tokens.scalar_type());
  TORCH_CHECK(tokens.numel() == 0 || (tokens.min().item<std::int64_t>() >= 0 &&
                                      tokens.max().item<std::int64_t>() < options.vocab_size()),
              "captioner: token ids outside 0..", options.vocab_size() - 1);
  const auto projected = attention->project_keys(annotations);
  auto [h, c] = initial_state(annotations);
  std::vector<torch::Tensor> logits, alphas, betas, log_probs, entropies;
  for (std::int64_t t = 0; t + 1 < tokens.size(1); ++t) {
    auto s = step(annotations, projected, tokens.select(1, t), h, c);
    h = s.h;
    c = s.c;
    logits.push_back(s.logits);
    if (s.alpha.defined()) alphas.push_back(s.alpha);
    if (s.beta.defined()) betas.push_back(s.beta);
    if (s.location_log_prob.defined()) {
      log_probs.push_back(s.location_log_prob);
      entropies.push_back(s.entropy);
    }
  }
  CaptionerOutput out;
  out.logits = torch::stack(logits, 1);
  if (!alphas.empty()) out.alphas = torch::stack(alphas, 1);
  out.betas = betas.empty() ? torch::ones({tokens.size(0), tokens.size(1) - 1}, out.logits.options())
                            : torch::stack(betas, 1);
  if (!log_probs.empty()) {
    out.location_log_probs = torch::stack(log_probs, 1);
    out.entropies = torch::stack(entropies, 1);
  }
  return out;
}

torch::Tensor CaptionerImpl::greedy_word_scores(const torch::Tensor& annotations, std::int64_t max_steps,
                                                std::int64_t start_token, std::int64_t end_token) {
  TORCH_CHECK(!is_training(), "captioner: word scores are taken in evaluation mode");
  TORCH_CHECK(annotations.dim() == 3, "captioner: expected annotations [B,N,D], got ", annotations.sizes());
  TORCH_CHECK(max_steps >= 1, "captioner: at least one decoding step, got ", max_steps);
  const auto b = annotations.size(0);
  const auto projected = attention->project_keys(annotations);
  auto [h, c] = initial_state(annotations);
  auto tokens = torch::full({b}, start_token, torch::kInt64);
  auto live = torch::ones({b, 1}, torch::kBool);  // rows that have not emitted <end> yet
  const auto lowest = -std::numeric_limits<float>::infinity();
  torch::Tensor scores;
  for (std::int64_t t = 0; t < max_steps; ++t) {
    auto s = step(annotations, projected, tokens, h, c);
    h = s.h;
    c = s.c;
    const auto counted = torch::where(live, s.logits, torch::full({}, lowest, s.logits.options()));
    scores = scores.defined() ? torch::maximum(scores, counted) : counted;
    tokens = std::get<1>(s.logits.detach().max(1));
    live = live & (tokens != end_token).unsqueeze(1);
    if (!live.any().item<bool>()) break;
  }
  return scores;
}

CaptionLoss CaptionerImpl::loss(const torch::Tensor& images, const torch::Tensor& tokens,
                                const torch::Tensor& lengths) {
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == tokens.size(0), "captioner: expected lengths [B], got ",
              lengths.sizes());
  TORCH_CHECK(lengths.min().item<std::int64_t>() >= 2 && lengths.max().item<std::int64_t>() <= tokens.size(1),
              "captioner: lengths must be in 2..", tokens.size(1), " (<start> and <end> counted)");
  const auto out = forward(images, tokens);
  const auto steps = tokens.size(1) - 1;
  // Step t predicts token t+1, which belongs to the caption when t+1 < length.
  const auto valid = torch::arange(steps, lengths.options()).unsqueeze(0) < (lengths - 1).unsqueeze(1);  // [B,T-1]
  const auto targets = tokens.narrow(1, 1, steps);
  const auto per_word = torch::nn::functional::cross_entropy(
      out.logits.reshape({-1, out.logits.size(2)}), targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const auto mask = valid.reshape({-1}).to(per_word.scalar_type());
  CaptionLoss l;
  l.words = valid.sum().item<std::int64_t>();
  l.cross_entropy = (per_word * mask).sum() / static_cast<double>(std::max<std::int64_t>(1, l.words));
  const auto zero = torch::zeros({}, l.cross_entropy.options());
  const auto words = static_cast<double>(std::max<std::int64_t>(1, l.words));
  const auto valid_f = valid.to(per_word.scalar_type());
  l.doubly_stochastic = zero;
  l.reinforce = zero;
  l.entropy = zero;
  if (options.doubly_stochastic() > 0 && options.attention() == CaptionAttention::kSoft) {
    const auto attention_sum = (out.alphas * valid_f.unsqueeze(2)).sum(1);  // [B,N]
    l.doubly_stochastic = options.doubly_stochastic() * (1.0 - attention_sum).pow(2).sum() / words;
  }
  l.total = l.cross_entropy + l.doubly_stochastic;
  if (out.location_log_probs.defined()) {
    l.entropy = (out.entropies * valid_f).sum() / words;
    if (is_training()) {
      // Reward: each caption's log-likelihood under the cells it drew.
      const auto reward = -(per_word.detach().view({tokens.size(0), steps}) * valid_f).sum(1);  // [B]
      const double mean_reward = reward.mean().item<double>();
      // The first batch has no history: its own mean is the baseline.
      const bool seen = reward_baseline[1].item<double>() > 0;
      const double baseline = seen ? reward_baseline[0].item<double>() : mean_reward;
      {
        torch::NoGradGuard no_grad;
        const double decay = options.baseline_decay();
        reward_baseline[0].fill_(seen ? decay * baseline + (1 - decay) * mean_reward : mean_reward);
        reward_baseline[1].add_(1);
      }
      const auto advantage = (reward - baseline).unsqueeze(1);  // [B,1]
      l.reinforce = -(advantage * out.location_log_probs * valid_f).sum() / words;
      l.total = l.total + l.reinforce - options.entropy() * l.entropy;
    }
  }
  return l;
}

namespace {

/// The captioner as a DecoderState over B*k rows.
class CaptionerSearch : public DecoderState {
 public:
  CaptionerSearch(CaptionerImpl& model, torch::Tensor annotations, std::int64_t beams)
      : model_(model), annotations_(std::move(annotations)) {
    projected_ = model_.attention->project_keys(annotations_);
    auto [h, c] = model_.initial_state(annotations_);
    h_ = h.repeat_interleave(beams, 0);
    c_ = c.repeat_interleave(beams, 0);
  }
  DecoderStep step(const torch::Tensor& tokens) override {
    auto s = model_.step(annotations_, projected_, tokens, h_, c_);
    h_ = s.h;
    c_ = s.c;
    return {torch::log_softmax(s.logits, 1), s.alpha, s.beta};
  }
  void reorder(const torch::Tensor& rows) override {
    h_ = h_.index_select(0, rows);
    c_ = c_.index_select(0, rows);
  }

 private:
  CaptionerImpl& model_;
  torch::Tensor annotations_, projected_, h_, c_;
};

}  // namespace

std::unique_ptr<DecoderState> CaptionerImpl::search_state(const torch::Tensor& annotations, std::int64_t beams) {
  return std::make_unique<CaptionerSearch>(*this, annotations, beams);
}

std::vector<DecodedCaption> CaptionerImpl::decode(const torch::Tensor& images, const BeamSearchOptions& search) {
  torch::NoGradGuard no_grad;
  ModeGuard evaluating(*this, false);
  return decode_encoded(encode(images), search);
}

std::vector<DecodedCaption> CaptionerImpl::decode_encoded(const torch::Tensor& annotations,
                                                          const BeamSearchOptions& search) {
  TORCH_CHECK(annotations.dim() == 3, "captioner: expected annotations [B,N,D], got ", annotations.sizes());
  torch::NoGradGuard no_grad;
  ModeGuard evaluating(*this, false);
  const auto state = search_state(annotations, search.beam());
  return beam_search(*state, annotations.size(0), search);
}

}  // namespace attend::models
