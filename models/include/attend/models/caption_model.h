#pragma once
/// The "captioner" model kind: a Show-Attend-Tell Captioner with its vocabulary, its
/// input size and its caption length, all in the options a checkpoint stores, so a
/// checkpoint alone is enough to caption.
///
/// Options (as the registry completes them, plus "vocabulary"):
///   filters, embed, hidden, attention_size, attention (soft|hard|uniform|none),
///   init (zero|mean), gate (on|off), position (on|off), output (deep|linear), dropout,
///   lambda, entropy,
///   baseline_decay, max_length, channels, height, width,
///   vocabulary: ["<pad>", "<start>", "<end>", "<unk>", words...] (index = id).

#include <attend/datasets/captions.h>
#include <attend/models/beam_search.h>
#include <attend/models/captioner.h>
#include <attend/models/classifier.h>

#include <memory>
#include <string>
#include <vector>

namespace attend::models {

class CaptionModel : public Model {
 public:
  /// throws c10::Error naming a missing or invalid option.
  explicit CaptionModel(const nlohmann::json& options);

  std::string kind() const override { return "captioner"; }
  nlohmann::json options() const override { return options_; }
  torch::nn::Module& module() override { return *net; }
  /// "attention": where hard attention draws its cells in training.
  std::map<std::string, at::Generator> generators() override { return {{"attention", sampler_}}; }

  const datasets::Vocabulary& vocabulary() const { return vocabulary_; }
  std::int64_t channels() const { return channels_; }
  std::int64_t height() const { return height_; }
  std::int64_t width() const { return width_; }
  /// Longest caption in tokens, <start> and <end> included: training truncates
  /// longer ones and decoding stops there.
  std::int64_t max_length() const { return max_length_; }
  /// Rows and columns of the attention grid for the model's input size.
  std::pair<std::int64_t, std::int64_t> grid() const { return net->grid(height_, width_); }

  /// Captions for images [B,C,H,W] float in [0,1] of the model's size: greedy (beam
  /// 1) or beam search over all images at once, at most max_length() - 1 generated
  /// tokens unless `search` asks for fewer. Each with its per-word alphas and betas.
  std::vector<DecodedCaption> caption(const torch::Tensor& images, BeamSearchOptions search);
  /// The same from annotations [B,N,D] of images of the model's size, encoded
  /// beforehand with net->encode (e.g. to use them for teacher forcing too).
  std::vector<DecodedCaption> caption_encoded(const torch::Tensor& annotations, BeamSearchOptions search);
  /// The words of a decoded caption.
  std::vector<std::string> words(const DecodedCaption& caption) const;

  Captioner net{nullptr};

 private:
  nlohmann::json options_;
  datasets::Vocabulary vocabulary_;
  std::int64_t channels_ = 1, height_ = 64, width_ = 64, max_length_ = 20;
  at::Generator sampler_;
};

class SaliencyModel;
/// The captioner's encoder as a saliency model (saliency.h): its target layers are the
/// encoder's blocks "block1".."blockN" (block outputs after pooling; "encoder" for an
/// external TorchScript encoder), default the last; its classes are the vocabulary's
/// words, and the score of word v for an image is the largest raw logit v gets at any
/// step of the model's own greedy caption of that image, up to its <end>
/// (CaptionerImpl::greedy_word_scores); the special tokens score -infinity. So Grad-CAM of a word shows where the encoder
/// found the evidence for saying it; the word's attention maps (`attend caption
/// --attention`) show where the decoder looked. The model is put in evaluation mode
/// and its parameters stop requiring gradients while the returned model lives.
std::unique_ptr<SaliencyModel> captioner_saliency_model(std::shared_ptr<CaptionModel> model, std::string description);

/// Rebuilds the captioner stored in a checkpoint and loads its weights.
/// throws attend::IoError naming the path for unreadable files, invalid stored
/// options, or a checkpoint of another kind ("holds a 'ram' model, not a captioner").
std::unique_ptr<CaptionModel> load_captioner(const std::string& path, CheckpointInfo* info = nullptr);

}  // namespace attend::models
