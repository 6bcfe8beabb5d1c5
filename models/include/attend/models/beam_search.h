#pragma once
/// Beam search (and greedy decoding, beam 1) batched over images: B images x k beams
/// are B*k rows of one decoder call per step, never a loop over images. The search
/// is independent of the decoder: a decoder is a DecoderState that scores the next
/// token of every row and follows the rows the search keeps.

#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace attend::models {

/// One step of a decoder over R rows.
struct DecoderStep {
  torch::Tensor log_probs;  ///< [R,V] log-probabilities of the next token
  torch::Tensor alpha;      ///< [R,N] the attention weights that produced it, or undefined
  torch::Tensor beta;       ///< [R] the context gate, or undefined
};

/// A decoder during search. Rows are image-major: row b*k + j is beam j of image b.
class DecoderState {
 public:
  virtual ~DecoderState() = default;
  /// Consumes the previous token of every row [R] int64 and scores the next.
  virtual DecoderStep step(const torch::Tensor& tokens) = 0;
  /// Row r of the state becomes old row rows[r] ([R] int64), after the search chose
  /// which beams continue.
  virtual void reorder(const torch::Tensor& rows) = 0;
};

struct BeamSearchOptions {
  /// Beams per image k (1 = greedy).
  TORCH_ARG(std::int64_t, beam) = 3;
  /// Largest number of tokens generated per caption, <end> included.
  TORCH_ARG(std::int64_t, max_length) = 20;
  /// Finished captions are ranked by log-probability / length^length_penalty
  /// (0 = raw log-probability, 1 = per-word mean); length counts the words and <end>.
  TORCH_ARG(double, length_penalty) = 0.0;
  TORCH_ARG(std::int64_t, start_token) = 1;
  TORCH_ARG(std::int64_t, end_token) = 2;
};

/// The best caption of one image.
struct DecodedCaption {
  std::vector<std::int64_t> tokens;  ///< the words, without <start> and <end>
  torch::Tensor alphas;              ///< [L,N] float: the weights that produced each word (undefined without)
  torch::Tensor betas;               ///< [L] float, or undefined
  double log_prob = 0.0;             ///< sum of the log-probabilities of the words and <end> (if emitted)
  double score = 0.0;                ///< log_prob / length^length_penalty
  bool finished = false;             ///< emitted <end> within max_length
};

/// Searches `batch` images whose state holds batch * beam rows (each image's rows
/// identical at the start). At each step every unfinished beam of an image is
/// extended by every token; the image keeps the `beam` best by log-probability among
/// these and its finished beams (a finished beam stays, with its score, and never
/// grows). Stops when all beams of all images are finished or after max_length
/// tokens. Each image gets its best finished caption by score, or, when no beam
/// finished, the best unfinished one (never an empty result for lack of <end>).
/// Indices into the [k*V] candidates are split into beam and token in int64, so any
/// vocabulary size works.
/// requires: batch >= 1, 1 <= beam <= vocabulary size, max_length >= 1, a finite
/// length_penalty >= 0; the decoder's outputs of the shapes above.
std::vector<DecodedCaption> beam_search(DecoderState& state, std::int64_t batch, const BeamSearchOptions& options);

}  // namespace attend::models
