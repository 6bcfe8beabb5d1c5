#include "attend/models/beam_search.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace attend::models {

std::vector<DecodedCaption> beam_search(DecoderState& state, std::int64_t batch, const BeamSearchOptions& options) {
  const auto k = options.beam();
  TORCH_CHECK(batch >= 1, "beam_search: expected at least one image, got ", batch);
  TORCH_CHECK(k >= 1, "beam_search: beam must be >= 1, got ", k);
  TORCH_CHECK(options.max_length() >= 1, "beam_search: max_length must be >= 1, got ", options.max_length());
  TORCH_CHECK(std::isfinite(options.length_penalty()) && options.length_penalty() >= 0,
              "beam_search: length_penalty must be a finite number >= 0, got ", options.length_penalty());
  torch::NoGradGuard no_grad;
  const auto rows = batch * k;
  const double inf = std::numeric_limits<double>::infinity();
  // Scores of the beams [B,k] (float64): only beam 0 of each image is live at the
  // start, so the first step does not pick the same token k times.
  auto scores = torch::full({batch, k}, -inf, torch::kFloat64);
  scores.select(1, 0).fill_(0.0);
  auto finished = torch::zeros({batch, k}, torch::kBool);
  auto lengths = torch::zeros({batch, k}, torch::kInt64);  // tokens generated, <end> included
  auto tokens = torch::full({rows}, options.start_token(), torch::kInt64);
  // What each beam has produced so far: tokens [B,k,t], alphas [B,k,t,N], betas [B,k,t].
  auto token_history = torch::empty({batch, k, 0}, torch::kInt64);
  torch::Tensor alpha_history, beta_history;

  for (std::int64_t t = 0; t < options.max_length(); ++t) {
    const auto out = state.step(tokens);
    TORCH_CHECK(out.log_probs.dim() == 2 && out.log_probs.size(0) == rows,
                "beam_search: the decoder returned log_probs of shape ", out.log_probs.sizes(), " for ", rows, " rows");
    const auto v = out.log_probs.size(1);
    TORCH_CHECK(options.end_token() >= 0 && options.end_token() < v, "beam_search: end token ", options.end_token(),
                " outside a vocabulary of ", v);
    TORCH_CHECK(k <= v, "beam_search: a beam of ", k, " is wider than the vocabulary of ", v);
    TORCH_CHECK(!out.alpha.defined() || (out.alpha.dim() == 2 && out.alpha.size(0) == rows),
                "beam_search: the decoder returned alpha of shape ", out.alpha.sizes(), " for ", rows, " rows");
    TORCH_CHECK(!out.beta.defined() || (out.beta.dim() == 1 && out.beta.size(0) == rows),
                "beam_search: the decoder returned beta of shape ", out.beta.sizes(), " for ", rows, " rows");
    auto step = out.log_probs.to(torch::kFloat64).reshape({batch, k, v}).clone();
    // A finished beam continues only by repeating <end> at no cost, keeping its score.
    const auto done = finished.unsqueeze(2).expand({batch, k, v});
    step.masked_fill_(done, -inf);
    step.select(2, options.end_token()).masked_fill_(finished, 0.0);
    const auto candidates = (scores.unsqueeze(2) + step).view({batch, k * v});
    const auto [best_values, best_indices] = candidates.topk(k, 1);
    const auto parent = best_indices.div(v, "floor");     // [B,k] int64
    const auto token = best_indices.remainder(v);         // [B,k]
    const auto row_base = torch::arange(batch, torch::kInt64).unsqueeze(1) * k;
    const auto parent_rows = (row_base + parent).view({rows});
    const auto was_finished = finished.gather(1, parent);
    scores = best_values;
    lengths = lengths.gather(1, parent) + (~was_finished).to(torch::kInt64);
    finished = was_finished | token.eq(options.end_token());
    // Histories follow the surviving beams, then grow by this step.
    auto follow = [&](const torch::Tensor& h) {
      auto index = parent;
      for (auto d = 2; d < h.dim(); ++d) index = index.unsqueeze(d);
      std::vector<std::int64_t> sizes(h.sizes().begin(), h.sizes().end());
      return h.gather(1, index.expand(sizes));
    };
    token_history = torch::cat(std::vector<torch::Tensor>{follow(token_history), token.unsqueeze(2)}, 2);
    if (out.alpha.defined()) {
      const auto n = out.alpha.size(1);
      const auto alpha = out.alpha.to(torch::kFloat32).reshape({batch, k, 1, n});
      const auto chosen_alpha = alpha.gather(1, parent.view({batch, k, 1, 1}).expand({batch, k, 1, n}));
      alpha_history = alpha_history.defined() ? torch::cat(std::vector<torch::Tensor>{follow(alpha_history), chosen_alpha}, 2) : chosen_alpha;
    }
    if (out.beta.defined()) {
      const auto beta = out.beta.to(torch::kFloat32).reshape({batch, k}).gather(1, parent).unsqueeze(2);
      beta_history = beta_history.defined() ? torch::cat(std::vector<torch::Tensor>{follow(beta_history), beta}, 2) : beta;
    }
    if (finished.all().item<bool>()) break;
    state.reorder(parent_rows);
    tokens = token.view({rows});
  }

  // Rank: finished beams by score (log-prob / length^penalty) first, else unfinished.
  const auto steps = token_history.size(2);
  const auto normalised = scores / lengths.to(torch::kFloat64).clamp_min(1).pow(options.length_penalty());
  const auto best_finished = normalised.masked_fill(~finished, -inf).argmax(1);
  const auto chosen = torch::where(finished.any(1), best_finished, normalised.argmax(1));
  std::vector<DecodedCaption> out(static_cast<size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    const auto j = chosen[b].item<std::int64_t>();
    auto& caption = out[static_cast<size_t>(b)];
    caption.finished = finished[b][j].item<bool>();
    caption.log_prob = scores[b][j].item<double>();
    caption.score = normalised[b][j].item<double>();
    const auto length = lengths[b][j].item<std::int64_t>();
    const auto words = caption.finished ? length - 1 : length;
    const auto seq = token_history[b][j];
    for (std::int64_t i = 0; i < words && i < steps; ++i) caption.tokens.push_back(seq[i].item<std::int64_t>());
    if (alpha_history.defined()) caption.alphas = alpha_history[b][j].narrow(0, 0, words).contiguous();
    if (beta_history.defined()) caption.betas = beta_history[b][j].narrow(0, 0, words).contiguous();
  }
  return out;
}

}  // namespace attend::models
