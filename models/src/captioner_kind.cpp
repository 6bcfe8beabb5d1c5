// Model kind "captioner": Show, Attend and Tell with its vocabulary in its options.
#include "kinds.h"

#include <attend/io_error.h>
#include <attend/models/caption_model.h>
#include <attend/models/trainer.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <optional>

namespace attend::models {

ModelKind captioner_kind() {
  ModelKind k;
  k.name = "captioner";
  k.summary = "Show, Attend and Tell: a CNN feature grid and an LSTM decoder attending over it (captions)";
  k.capabilities.caption = true;
  k.options = {
      int_list_option("filters", "filters", {32, 64, 128}, 1, 4096,
                      "encoder: filters of each block (two 3x3 conv + ReLU, 2x2 max-pool); the attention grid has "
                      "stride 2^blocks (3 blocks: 64x64 -> 8x8 cells)"),
      int_option("embed", "embed", 64, 1, 65536, "word embedding size"),
      int_option("hidden", "hidden", 256, 1, 65536, "LSTM state size"),
      int_option("attention_size", "attention-size", 128, 1, 65536, "additive attention's hidden size"),
      choice_option("attention", "attention", {"soft", "hard", "uniform", "none"},
                    "soft (weighted mean of the cells), hard (one sampled cell per word, REINFORCE), uniform "
                    "(alpha fixed at 1/N) or none (the image only through the initial state)",
                    "A"),
      choice_option("init", "init", {"zero", "mean"},
                    "initial LSTM state: zeros, or an MLP of the mean annotation (the paper's; on scenes the "
                    "model then names objects from it and ignores its attention, docs/results.md)",
                    "I"),
      choice_option("gate", "gate", {"on", "off"}, "the gating scalar beta_t on the context", "G"),
      choice_option("position", "position", {"on", "off"},
                    "append each cell's centre (x, y) to its annotation, so the context says where the model "
                    "looked (scene captions name places and relations)",
                    "P"),
      choice_option("query", "query", {"state", "word"},
                    "what attention looks with: the LSTM state h_{t-1} (the paper's), or h_{t-1} and the word "
                    "just read (a relation word then knows which object the caption began with)",
                    "Q"),
      choice_option("output", "output", {"deep-tanh", "deep", "linear"},
                    "deep output layer L_o(tanh(E y + L_h h + L_z z)) as the authors' code computes it, the same "
                    "without the tanh (the paper's eq. 7; learns faster at first, but says 'above' for 'below' "
                    "half the time on scenes, docs/results.md), or a linear layer on h",
                    "O"),
      real_option("dropout", "dropout", 0.0, 0.0, 0.95, "dropout before the output layer (the paper's: 0.5)", false,
                  "P"),
      real_option("lambda", "lambda", 0.0, 0.0, 1000.0,
                  "weight of the doubly stochastic regulariser (soft; the paper's: 1, which keeps attention spread "
                  "when captions are much shorter than the grid has cells)",
                  false, "L"),
      real_option("entropy", "entropy", 0.01, 0.0, 100.0, "hard attention: weight of the entropy bonus", false, "E"),
      real_option("baseline_decay", "baseline-decay", 0.9, 0.0, 0.999,
                  "hard attention: decay of the moving-average reward baseline", false, "D"),
      int_option("max_length", "max-length", 22, 3, 1000,
                 "longest caption in tokens with <start> and <end>; longer training captions are cut (with a "
                 "warning), and decoding stops there"),
  };
  k.make = [](const nlohmann::json& options) -> std::unique_ptr<Model> {
    return std::make_unique<CaptionModel>(options);
  };
  return k;
}

namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

/// Runs the named method or child module of a TorchScript module on images.
std::function<torch::Tensor(const torch::Tensor&)> script_runner(torch::jit::Module script, const std::string& output,
                                                                 const std::string& file) {
  if (output == "forward" || script.find_method(output)) {
    return [script, output, file](const torch::Tensor& x) mutable {
      auto result = script.get_method(output)({x});
      if (!result.isTensor()) throw IoError(file, "its " + output + " returns a " + result.tagKind() + ", not a tensor");
      return result.toTensor();
    };
  }
  for (const auto& child : script.named_children()) {
    if (child.name == output) {
      return [module = child.value, output, file](const torch::Tensor& x) mutable {
        auto result = module.forward({x});
        if (!result.isTensor()) {
          throw IoError(file, "its child module " + output + " returns a " + result.tagKind() + ", not a tensor");
        }
        return result.toTensor();
      };
    }
  }
  throw IoError(file, "has no method and no child module named '" + output + "' (see --encoder-output)");
}

}  // namespace

CaptionModel::CaptionModel(const nlohmann::json& o) : options_(o) {
  TORCH_CHECK(o.contains("vocabulary"), "captioner: the options hold no vocabulary");
  vocabulary_ = datasets::Vocabulary::from_json({{"words", o.at("vocabulary")}});
  channels_ = o.at("channels").get<std::int64_t>();
  height_ = o.at("height").get<std::int64_t>();
  width_ = o.at("width").get<std::int64_t>();
  max_length_ = o.at("max_length").get<std::int64_t>();
  TORCH_CHECK(max_length_ >= 3, "captioner: max_length must be at least 3, got ", max_length_);
  const auto output = o.at("output").get<std::string>();
  auto net_options = CaptionerOptions(vocabulary_.size())
                         .channels(channels_)
                         .encoder_filters(o.at("filters").get<std::vector<std::int64_t>>())
                         .embed_size(o.at("embed").get<std::int64_t>())
                         .hidden_size(o.at("hidden").get<std::int64_t>())
                         .attention_size(o.at("attention_size").get<std::int64_t>())
                         .attention(parse_enum<CaptionAttention>(o.at("attention").get<std::string>()))
                         .init_from_mean(o.at("init").get<std::string>() == "mean")
                         .gate(o.at("gate").get<std::string>() == "on")
                         .position(o.at("position").get<std::string>() == "on")
                         .word_query(o.value("query", std::string("state")) == "word")
                         .deep_output(output != "linear")
                         .deep_output_tanh(output == "deep-tanh")
                         .dropout(o.at("dropout").get<double>())
                         .doubly_stochastic(o.at("lambda").get<double>())
                         .entropy(o.at("entropy").get<double>())
                         .baseline_decay(o.at("baseline_decay").get<double>());
  std::optional<torch::jit::Module> script;
  std::function<torch::Tensor(const torch::Tensor&)> run;
  bool fine_tune = false;
  if (o.contains("encoder") && !o.at("encoder").is_null()) {
    const auto& e = o.at("encoder");
    const auto file = e.at("file").get<std::string>();
    const auto output = e.at("output").get<std::string>();
    fine_tune = e.at("fine_tune").get<bool>();
    try {
      script = torch::jit::load(file);
    } catch (const c10::Error& error) {
      std::error_code ec;
      throw IoError(file, std::filesystem::exists(file, ec)
                              ? "not a TorchScript file (save one with torch.jit.script(model).save(path))"
                              : "TorchScript encoder file does not exist");
    }
    script->eval();
    run = script_runner(*script, output, file);
    torch::Tensor probe;
    try {
      torch::NoGradGuard no_grad;
      probe = run(torch::zeros({1, channels_, height_, width_}));
    } catch (const c10::Error& error) {
      throw IoError(file, "its " + output + " fails on a [1," + std::to_string(channels_) + "," +
                              std::to_string(height_) + "," + std::to_string(width_) +
                              "] image: " + first_line(error.what_without_backtrace()));
    }
    if (probe.dim() != 4 || probe.size(2) < 1 || probe.size(3) < 1) {
      throw IoError(file, "its " + output + " gives a " + std::to_string(probe.dim()) + "-D output " +
                              c10::str(probe.sizes()) + ", not a feature map [B,C,H,W] (choose another --encoder-output)");
    }
    net_options.external_features(probe.size(1)).external_stride(std::max<std::int64_t>(1, height_ / probe.size(2)));
  }
  net = Captioner(net_options);
  if (script) {
    auto* owner = net.get();
    net->external_encoder = [script = *script, run, fine_tune, owner](const torch::Tensor& x) mutable {
      if (fine_tune) {
        script.train(owner->is_training());
        return run(x);
      }
      torch::NoGradGuard frozen;
      return run(x);
    };
    for (const auto& p : script->named_parameters()) {
      if (fine_tune) {
        auto name = "script_encoder_" + p.name;
        std::replace(name.begin(), name.end(), '.', '_');
        net->register_parameter(name, p.value);
      } else {
        p.value.set_requires_grad(false);
      }
    }
  }
  const auto stride = net->stride();
  TORCH_CHECK(height_ >= stride && width_ >= stride, "captioner: images of ", height_, "x", width_,
              " are smaller than the encoder's stride ", stride, " (fewer --filters blocks)");
  sampler_ = at::make_generator<at::CPUGeneratorImpl>(0);
  net->sampler = sampler_;
}

std::vector<DecodedCaption> CaptionModel::caption(const torch::Tensor& images, BeamSearchOptions search) {
  TORCH_CHECK(images.dim() == 4 && images.size(1) == channels_ && images.size(2) == height_ &&
                  images.size(3) == width_,
              "captioner: expected images [B,", channels_, ",", height_, ",", width_, "], got ", images.sizes());
  torch::NoGradGuard no_grad;
  ModeGuard evaluating(*net, false);
  return caption_encoded(net->encode(images), std::move(search));
}

std::vector<DecodedCaption> CaptionModel::caption_encoded(const torch::Tensor& annotations, BeamSearchOptions search) {
  const auto [rows, columns] = grid();
  TORCH_CHECK(annotations.dim() == 3 && annotations.size(1) == rows * columns,
              "captioner: expected annotations [B,", rows * columns, ",D] of ", height_, "x", width_,
              " images, got ", annotations.sizes());
  search.max_length(std::min(search.max_length(), max_length_ - 1))
      .start_token(datasets::Vocabulary::kStart)
      .end_token(datasets::Vocabulary::kEnd);
  return net->decode_encoded(annotations, search);
}

std::vector<std::string> CaptionModel::words(const DecodedCaption& caption) const {
  return vocabulary_.decode(caption.tokens);
}

std::unique_ptr<CaptionModel> load_captioner(const std::string& path, CheckpointInfo* info_out) {
  const auto info = read_checkpoint_info(path);
  const auto* kind = model_registry().find(info.model.kind);
  if (kind == nullptr || !kind->capabilities.caption) {
    throw IoError(path, "holds a '" + info.model.kind + "' model, not a captioner");
  }
  std::unique_ptr<CaptionModel> model;
  try {
    ScopedSeed untouched(0);
    auto built = make_model(info.model.kind, info.model.options);
    model.reset(dynamic_cast<CaptionModel*>(built.get()));
    TORCH_CHECK(model != nullptr, "kind '", info.model.kind, "' says it captions but builds no CaptionModel");
    built.release();
  } catch (const c10::Error& e) {
    throw IoError(path, std::string("stored options are invalid: ") + e.what_without_backtrace());
  }
  LoadOptions load;
  load.expected_kind = info.model.kind;
  auto loaded = load_checkpoint(path, model->module(), nullptr, load);
  if (info_out != nullptr) *info_out = loaded;
  return model;
}

}  // namespace attend::models
