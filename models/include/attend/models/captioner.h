#pragma once
/// Show, Attend and Tell (Xu et al. 2015), soft attention: a CNN encoder gives a grid
/// of annotation vectors a_i; an LSTM decoder attends over them at every word.
///
/// For word t (y_0 = <start>), with h_{t-1}, c_{t-1} the LSTM state:
///   alpha_t = softmax_i(v^T tanh(W_h h_{t-1} + W_a a_i + b))   (additive attention;
///             the W_a a_i projected once per image; with `word_query` the query is
///             [h_{t-1}; E y_{t-1}])
///   z_t     = beta_t * sum_i alpha_ti a_i,  beta_t = sigmoid(f_beta(h_{t-1}))  (gate)
///   h_t, c_t = LSTM([E y_{t-1}; z_t], h_{t-1}, c_{t-1})
///   p(y_t)  = softmax(L_o(dropout(E y_{t-1} + L_h h_t + L_z z_t)))          (deep output;
///             with `deep_output_tanh`, L_o(dropout(tanh(...))) as the authors' code)
/// h_0 = tanh(f_init,h(mean_i a_i)), c_0 = tanh(f_init,c(mean_i a_i)).
/// Switches reproduce the common simplified variant: no gate (beta = 1), a plain
/// output layer (softmax(W dropout(h_t))), zero initial state, and for ablations
/// uniform attention (alpha fixed at 1/N: z_t is the mean annotation) and no
/// attention (no z_t: the image enters only through h_0, c_0).
/// Hard attention (the paper's stochastic variant): the same alpha_t is a categorical
/// policy over the cells; in training a cell s_t ~ alpha_t is drawn (from `sampler`)
/// and z_t = beta_t a_{s_t}; in evaluation s_t = argmax alpha_t.
/// Training loss (teacher forcing on padded batches, nothing counted past a caption's
/// end): the paper's per-caption loss -sum_t log p(y_t) + lambda sum_i (1 - sum_t
/// alpha_ti)^2 (t over the caption's steps; the regulariser for soft attention only),
/// summed over the batch and divided by the number of words in it. (Dividing the
/// regulariser by the batch instead would weigh it caption-length times more than
/// the paper does; with 8x8 cells and 7-word captions it would swamp the words.) For hard attention, REINFORCE instead: with the reward R_b the
/// caption's log-likelihood log p(y_b | s_b) and b a moving average of R (decay
/// `baseline_decay`, kept in the buffer "reward_baseline" and so in checkpoints),
///   - sum_b (R_b - b) sum_t log alpha_t(s_bt) / words - entropy * mean_t H(alpha_t).

#include <attend/attention/additive.h>
#include <attend/models/beam_search.h>
#include <attend/models/enum_names.h>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace attend::models {

enum class CaptionAttention { kSoft, kHard, kUniform, kNone };
template <>
struct EnumNames<CaptionAttention> {
  static constexpr const char* what = "caption attention";
  static constexpr std::pair<CaptionAttention, const char*> names[] = {{CaptionAttention::kSoft, "soft"},
                                                                       {CaptionAttention::kHard, "hard"},
                                                                       {CaptionAttention::kUniform, "uniform"},
                                                                       {CaptionAttention::kNone, "none"}};
};

struct CaptionerOptions {
  explicit CaptionerOptions(std::int64_t vocab_size = 4) : vocab_size_(vocab_size) {}
  /// Words, the four specials (<pad> <start> <end> <unk>) included.
  TORCH_ARG(std::int64_t, vocab_size);
  /// Image channels (1 grey, 3 RGB).
  TORCH_ARG(std::int64_t, channels) = 1;
  /// Encoder blocks (two 3x3 convolutions with ReLU, then 2x2 max pooling) and their
  /// filters: the grid has stride 2^blocks (3 blocks: 64x64 -> 8x8 cells).
  TORCH_ARG(std::vector<std::int64_t>, encoder_filters) = std::vector<std::int64_t>{32, 64, 128};
  TORCH_ARG(std::int64_t, embed_size) = 64;
  TORCH_ARG(std::int64_t, hidden_size) = 256;
  TORCH_ARG(std::int64_t, attention_size) = 128;
  /// h_0, c_0 from the mean annotation (else zeros).
  TORCH_ARG(bool, init_from_mean) = true;
  /// The gating scalar beta_t (else 1).
  TORCH_ARG(bool, gate) = true;
  /// The deep output layer (else a linear layer on h_t).
  TORCH_ARG(bool, deep_output) = true;
  /// tanh on the deep output's sum before L_o, as the authors' code computes it
  /// (arctic-captions: prev2out and ctx2out, then tanh and dropout); the paper's
  /// eq. 7 prints it without. The tanh makes it a hidden layer, so the word can depend
  /// on products of the word just read, h_t and z_t (which object was named first and
  /// where each one is, for "above" against "below").
  TORCH_ARG(bool, deep_output_tanh) = false;
  TORCH_ARG(double, dropout) = 0.5;
  /// lambda of the doubly stochastic regulariser (0 = off).
  TORCH_ARG(double, doubly_stochastic) = 1.0;
  TORCH_ARG(CaptionAttention, attention) = CaptionAttention::kSoft;
  /// Append each cell's centre (x, y in [-1,1]) to its annotation vector, so that a
  /// context z_t says where the model looked, not only what it saw there. (Not in the
  /// paper, whose captions rarely depend on positions; scene captions do.)
  TORCH_ARG(bool, position) = false;
  /// The attention query is [h_{t-1}; E y_{t-1}] instead of h_{t-1}: the model looks
  /// knowing the word it has just read. (Not in the paper. With h_{t-1} alone, the
  /// step that reads "a 3 ..." and must say "left" or "above" chooses where to look
  /// before it knows which object the caption began with, since the teacher's or the
  /// search's choice of that word comes after h_{t-1}; see docs/results.md.)
  TORCH_ARG(bool, word_query) = false;
  /// > 0: the annotations come from an external encoder (a user's TorchScript
  /// backbone, set as CaptionerImpl::external_encoder) with this many channels, and
  /// there is no built-in encoder; encoder_filters is then unused.
  TORCH_ARG(std::int64_t, external_features) = 0;
  /// The external encoder's stride in pixels (image side / grid side).
  TORCH_ARG(std::int64_t, external_stride) = 8;
  /// Hard attention: weight of the policy's entropy bonus.
  TORCH_ARG(double, entropy) = 0.01;
  /// Hard attention: decay of the moving-average reward baseline, in [0,1).
  TORCH_ARG(double, baseline_decay) = 0.9;

 public:
  /// throws c10::Error naming the first invalid option.
  void validate() const;
  nlohmann::json to_json() const;
  /// throws c10::Error naming a missing or invalid field.
  static CaptionerOptions from_json(const nlohmann::json& j);
};

/// Teacher-forced outputs for tokens [B,T]: step t reads tokens[:,t] and predicts
/// tokens[:,t+1], for t < T-1.
struct CaptionerOutput {
  torch::Tensor logits;  ///< [B,T-1,V]
  torch::Tensor alphas;  ///< [B,T-1,N]
  torch::Tensor betas;   ///< [B,T-1] (ones without the gate)
  torch::Tensor location_log_probs;  ///< [B,T-1] hard attention: log alpha_t(s_t); else undefined
  torch::Tensor entropies;           ///< [B,T-1] hard attention: H(alpha_t); else undefined
};

struct CaptionLoss {
  torch::Tensor total;              ///< cross_entropy + doubly_stochastic
  torch::Tensor cross_entropy;      ///< mean per predicted word (<end> included)
  torch::Tensor doubly_stochastic;  ///< lambda * sum_b sum_i (1 - sum_t alpha)^2 / words
  torch::Tensor reinforce;          ///< hard attention in training: the REINFORCE term (else 0)
  torch::Tensor entropy;            ///< hard attention: mean policy entropy per word (else 0)
  std::int64_t words = 0;           ///< predicted tokens counted
};

class CaptionerImpl : public torch::nn::Cloneable<CaptionerImpl> {
 public:
  explicit CaptionerImpl(const CaptionerOptions& options);
  void reset() override;
  void pretty_print(std::ostream& stream) const override;

  /// images [B,C,H,W] float -> annotations [B,N,D], N = (H/s)(W/s) cells in reading
  /// order, s = 2^blocks, D = the last filter count (+ 2 with `position`).
  torch::Tensor encode(const torch::Tensor& images);
  /// The encoder's last feature map [B,D,h,w] -> annotations [B,N,D] (the last step of
  /// encode: cells in reading order, position channels appended with `position`).
  torch::Tensor annotations_of(const torch::Tensor& features) const;
  /// Greedy decoding that keeps every step's raw word scores: scores[b,v] = the largest
  /// logit word v gets at any step t of image b's greedy caption, up to and including
  /// the step that emits <end> (or `max_steps`). Differentiable with respect to
  /// `annotations` (the greedy choices themselves are not); in evaluation mode.
  torch::Tensor greedy_word_scores(const torch::Tensor& annotations, std::int64_t max_steps,
                                   std::int64_t start_token, std::int64_t end_token);
  /// Cells of the grid for an image of height x width: {rows, columns}.
  std::pair<std::int64_t, std::int64_t> grid(std::int64_t height, std::int64_t width) const;
  std::int64_t stride() const;

  /// Teacher forcing. requires tokens [B,T] int64, T >= 2, ids < vocab_size.
  /// (alphas undefined for attention none.)
  CaptionerOutput forward(const torch::Tensor& images, const torch::Tensor& tokens);
  /// The same from annotations [B,N,D] encoded beforehand (encode), so that one
  /// encoding can serve teacher forcing and decoding.
  CaptionerOutput forward_encoded(const torch::Tensor& annotations, const torch::Tensor& tokens);
  /// The training loss. requires lengths [B] int64 in 2..T (<start> and <end> counted).
  CaptionLoss loss(const torch::Tensor& images, const torch::Tensor& tokens, const torch::Tensor& lengths);
  /// Greedy (beam 1) or beam search for every image at once (B*k rows per step), in
  /// evaluation mode and without gradients; each caption with the alpha and beta of
  /// each of its words.
  std::vector<DecodedCaption> decode(const torch::Tensor& images, const BeamSearchOptions& search);
  /// The same from annotations [B,N,D] encoded beforehand.
  std::vector<DecodedCaption> decode_encoded(const torch::Tensor& annotations, const BeamSearchOptions& search);

  /// One decoding step from the state of rows: the building block of forward and
  /// decode (exposed for tests). annotations/projected [B,N,*]; h, c [B*q,H] with q
  /// rows (beams) per image; tokens [B*q].
  struct Step {
    torch::Tensor logits, alpha, beta, h, c;
    torch::Tensor location_log_prob, entropy;  ///< hard attention only
  };
  /// `alpha_override` [B*q,N] (soft attention only; undefined = none) replaces the
  /// computed weights: the context is then the annotations weighted by it (for
  /// interventions that test whether the words follow the attention).
  Step step(const torch::Tensor& annotations, const torch::Tensor& projected, const torch::Tensor& tokens,
            const torch::Tensor& h, const torch::Tensor& c, const torch::Tensor& alpha_override = {});
  /// The decoder as a DecoderState for beam_search: `beams` rows per image of
  /// `annotations` [B,N,D] (encoded beforehand), each starting from h_0, c_0.
  std::unique_ptr<DecoderState> search_state(const torch::Tensor& annotations, std::int64_t beams);
  /// h_0, c_0 [B,H] for annotations [B,N,D].
  std::pair<torch::Tensor, torch::Tensor> initial_state(const torch::Tensor& annotations);

  CaptionerOptions options;
  torch::nn::Sequential encoder{nullptr};
  torch::nn::Embedding embedding{nullptr};
  attention::AdditiveAttention attention{nullptr};
  torch::nn::LSTMCell lstm{nullptr};
  torch::nn::Linear init_h{nullptr}, init_c{nullptr}, f_beta{nullptr};
  torch::nn::Linear out_h{nullptr}, out_z{nullptr}, out_words{nullptr};  ///< L_h, L_z, L_o (or W)
  torch::nn::Dropout dropout{nullptr};
  /// Hard attention: [value, updates] of the moving-average reward baseline.
  torch::Tensor reward_baseline;
  /// Hard attention draws its cells from this generator in training (default: LibTorch's).
  std::optional<at::Generator> sampler;
  /// With options.external_features > 0: images [B,C,H,W] -> feature map [B,D,h,w].
  std::function<torch::Tensor(const torch::Tensor&)> external_encoder;
};
TORCH_MODULE(Captioner);

}  // namespace attend::models
