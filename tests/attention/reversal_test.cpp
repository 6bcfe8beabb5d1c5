// Integration: a tiny encoder-decoder with attention learns to reverse sequences in a
// few seconds, and its attention aligns each output with the mirrored input position.
#include <attend/attention/additive.h>
#include <attend/attention/luong.h>

#include <torch/torch.h>

#include <gtest/gtest.h>

namespace aa = attend::attention;

namespace {

constexpr std::int64_t kVocab = 12, kLength = 6, kEmbed = 16, kHidden = 32, kBos = 0;

/// Random sequences of distinct tokens 1..kVocab-1, so every output token has
/// exactly one source position to look at.
torch::Tensor sequences(std::int64_t batch, at::Generator& gen) {
  auto keys = torch::rand({batch, kVocab - 1}, gen);
  return keys.argsort(/*dim=*/1, /*descending=*/false).narrow(1, 0, kLength) + 1;
}

struct Seq2SeqImpl : torch::nn::Module {
  explicit Seq2SeqImpl(bool luong)
      : embed(register_module("embed", torch::nn::Embedding(kVocab, kEmbed))),
        encoder(register_module("encoder", torch::nn::GRU(torch::nn::GRUOptions(kEmbed, kHidden)
                                                              .batch_first(true)
                                                              .bidirectional(true)))),
        decoder(register_module("decoder", torch::nn::GRUCell(kEmbed + 2 * kHidden, kHidden))),
        out(register_module("out", torch::nn::Linear(kHidden + 2 * kHidden, kVocab))) {
    if (luong) {
      luong_att = register_module("att", aa::LuongAttention(aa::LuongAttentionOptions(kHidden, 2 * kHidden)));
    } else {
      additive_att = register_module("att", aa::AdditiveAttention(kHidden, 2 * kHidden, kHidden));
    }
  }

  /// Teacher-forced decoding: logits [B,T,V] and attention weights [B,T,L].
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& source, const torch::Tensor& target) {
    const auto b = source.size(0);
    const auto memory = std::get<0>(encoder->forward(embed(source)));  // [B,L,2H]
    const auto projected = additive_att ? additive_att->project_keys(memory) : torch::Tensor();
    auto h = torch::zeros({b, kHidden});
    auto context = torch::zeros({b, 2 * kHidden});
    auto previous = torch::full({b}, kBos, torch::kInt64);
    std::vector<torch::Tensor> logits, weights;
    for (std::int64_t t = 0; t < kLength; ++t) {
      h = decoder(torch::cat({embed(previous), context}, 1), h);
      const auto att = additive_att ? additive_att->forward_projected(h, projected, memory)
                                    : luong_att->forward(h, memory, memory);
      context = att.context;
      logits.push_back(out(torch::cat({h, context}, 1)));
      weights.push_back(att.weights);
      previous = target.select(1, t);
    }
    return {torch::stack(logits, 1), torch::stack(weights, 1)};
  }

  torch::nn::Embedding embed;
  torch::nn::GRU encoder;
  torch::nn::GRUCell decoder;
  torch::nn::Linear out;
  aa::AdditiveAttention additive_att{nullptr};
  aa::LuongAttention luong_att{nullptr};
};
TORCH_MODULE(Seq2Seq);

}  // namespace

class SequenceReversal : public ::testing::TestWithParam<bool> {};

TEST_P(SequenceReversal, AttentionLandsOnTheMirroredSourcePosition) {
  torch::manual_seed(0);
  at::set_num_threads(1);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  Seq2Seq model(GetParam());
  torch::optim::Adam opt(model->parameters(), 1e-2);
  for (int step = 0; step < 250; ++step) {
    const auto source = sequences(64, gen);
    const auto target = source.flip(1);
    const auto [logits, weights] = model->forward(source, target);
    auto loss = torch::cross_entropy_loss(logits.reshape({-1, kVocab}), target.reshape(-1));
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  torch::NoGradGuard no_grad;
  const auto source = sequences(200, gen);
  const auto [logits, weights] = model->forward(source, source.flip(1));
  const auto expected = (kLength - 1 - torch::arange(kLength)).unsqueeze(0).expand({200, kLength});
  const double aligned = (weights.argmax(2) == expected).to(torch::kFloat64).mean().item<double>();
  const double correct = (logits.argmax(2) == source.flip(1)).to(torch::kFloat64).mean().item<double>();
  RecordProperty("aligned_percent", std::to_string(100 * aligned));
  RecordProperty("correct_percent", std::to_string(100 * correct));
  EXPECT_GE(aligned, 0.95) << "attention argmax on the mirrored position for " << 100 * aligned << "% of tokens";
  EXPECT_GE(correct, 0.95) << "tokens reversed correctly: " << 100 * correct << "%";
}

INSTANTIATE_TEST_SUITE_P(AdditiveAndLuong, SequenceReversal, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "LuongGeneral" : "Additive");
                         });
