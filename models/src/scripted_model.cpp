// TorchScript classifiers as SaliencyModels: form (a) chains the module's named
// children, form (b) calls a method returning (logits, activations...).
#include <attend/io_error.h>
#include <attend/models/scripted_model.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <utility>

namespace attend::models {

namespace {

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

std::string first_line_of(const std::string& text) { return text.substr(0, text.find('\n')); }

/// One line out of a LibTorch error: TorchScript interpreter errors open with a
/// generic sentence and a traceback, and end with the real one ("RuntimeError: ...").
std::string short_reason(const std::exception& error) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : error.what();
  for (const std::string marker : {"RuntimeError: ", "Exception: ", "Error: "}) {
    const auto at = text.rfind(marker);
    if (at != std::string::npos && contains(text, "TorchScript")) return first_line_of(text.substr(at + marker.size()));
  }
  return first_line_of(text);
}

std::string joined(const std::vector<std::string>& names, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i == 0 ? "" : separator) + names[i];
  return out;
}

/// "a tensor [1,5]", "a tuple (tensor [1,5], int)", "a GenericList".
std::string value_summary(const c10::IValue& value) {
  if (value.isTensor()) return "a tensor " + c10::str(value.toTensor().sizes());
  if (value.isTuple()) {
    std::string out = "a tuple (";
    const auto& elements = value.toTupleRef().elements();
    for (size_t i = 0; i < elements.size(); ++i) {
      out += i == 0 ? "" : ", ";
      out += elements[i].isTensor() ? "tensor " + c10::str(elements[i].toTensor().sizes()) : elements[i].tagKind();
    }
    return out + ")";
  }
  return "a " + value.tagKind();
}

/// The unqualified class name of a submodule ("Linear", "AdaptiveAvgPool2d").
std::string type_name(const torch::jit::Module& module) {
  const auto name = module.type()->name();
  return name ? name->name() : std::string();
}

torch::jit::Module load_module(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw IoError(path, "no such file");
  if (std::filesystem::is_directory(path, ec)) throw IoError(path, "is a folder, not a TorchScript file");
  try {
    return torch::jit::load(path);
  } catch (const std::exception& error) {
    throw IoError(path, "not a TorchScript file (" + short_reason(error) +
                            "; save one with torch.jit.script(model).save(path))");
  }
}

/// What both forms share: the module, options, normalisation, `forward` as logits.
class ScriptedModel : public SaliencyModel {
 public:
  ScriptedModel(torch::jit::Module module, ScriptedModelOptions options)
      : module_(std::move(module)), options_(std::move(options)), path_(options_.path()) {
    module_.eval();
    for (const auto& p : module_.parameters()) p.set_requires_grad(false);
    if (!options_.mean().empty()) {
      mean_ = torch::tensor(options_.mean(), torch::kFloat32).view({1, -1, 1, 1});
      std_ = torch::tensor(options_.std(), torch::kFloat32).view({1, -1, 1, 1});
    }
  }

  std::int64_t channels() const override { return options_.channels(); }
  std::int64_t height() const override { return options_.fixed_size() ? options_.probe_height() : 0; }
  std::int64_t width() const override { return options_.fixed_size() ? options_.probe_width() : 0; }
  std::vector<std::string> class_names() const override { return options_.class_names(); }

  torch::Tensor prepare(const torch::Tensor& images) const override {
    TORCH_CHECK(images.dim() == 4 && images.size(1) == channels(), path_, ": expected images [B,", channels(),
                ",H,W], got ", images.sizes());
    if (!mean_.defined()) return images;
    return (images - mean_.to(images.options())) / std_.to(images.options());
  }

  torch::Tensor logits(const torch::Tensor& inputs) override {
    check_inputs(inputs);
    torch::NoGradGuard no_grad;
    return logits_of(call_forward(inputs), "forward");
  }

 protected:
  void check_inputs(const torch::Tensor& inputs) const {
    TORCH_CHECK(inputs.dim() == 4 && inputs.size(1) == channels(), path_, ": expected model inputs [B,", channels(),
                ",H,W], got ", inputs.sizes());
  }

  c10::IValue call_forward(const torch::Tensor& x) {
    try {
      return module_.forward({x});
    } catch (const std::exception& error) {
      TORCH_CHECK(false, path_, ": forward fails on an input ", x.sizes(), ": ", short_reason(error));
    }
  }

  /// Checks that `value` (from `what`) is a 2-D tensor of logits.
  torch::Tensor logits_of(const c10::IValue& value, const std::string& what) const {
    TORCH_CHECK(value.isTensor(), path_, ": ", what, " returns ", value_summary(value),
                ", not a tensor of logits [B,classes]");
    auto logits = value.toTensor();
    TORCH_CHECK(logits.dim() == 2, path_, ": ", what, " gives logits ", logits.sizes(),
                ", expected [B,classes]");
    return logits;
  }

  torch::Tensor probe() const {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(0);
    return torch::randn({1, options_.channels(), options_.probe_height(), options_.probe_width()}, generator);
  }

  /// Compares the split's logits with forward's on the same probe input.
  void check_split(const torch::Tensor& forward_logits, const torch::Tensor& split_logits,
                   const std::string& split) {
    TORCH_CHECK(split_logits.sizes() == forward_logits.sizes(), path_, ": the split at ", split,
                " does not reproduce forward (logits ", split_logits.sizes(), " instead of ", forward_logits.sizes(),
                " on a probe input)");
    const double largest = (split_logits - forward_logits).abs().max().item<double>();
    const double scale = 1.0 + forward_logits.abs().max().item<double>();
    TORCH_CHECK(largest <= options_.tolerance() * scale, path_, ": the split at ", split,
                " does not reproduce forward (largest difference ", largest, " on a probe input)");
    const auto classes = forward_logits.size(1);
    TORCH_CHECK(options_.class_names().empty() || static_cast<std::int64_t>(options_.class_names().size()) == classes,
                path_, ": ", options_.class_names().size(), " class names given for ", classes, " classes");
  }

  /// throws c10::Error for a name not in `names`, listing them.
  size_t index_of(const std::string& layer, const std::vector<std::string>& names) const {
    const auto found = std::find(names.begin(), names.end(), layer);
    TORCH_CHECK(found != names.end(), "unknown layer '", layer, "' of ", path_, " (expected one of ",
                joined(names, ", "), ")");
    return static_cast<size_t>(found - names.begin());
  }

  torch::jit::Module module_;
  ScriptedModelOptions options_;
  std::string path_;
  torch::Tensor mean_, std_;
};

/// Form (a): `forward` is the chain of the named children.
class ChildrenModel : public ScriptedModel {
 public:
  ChildrenModel(torch::jit::Module module, ScriptedModelOptions options)
      : ScriptedModel(std::move(module), std::move(options)) {
    for (const auto& child : module_.named_children()) {
      const auto type = type_name(child.value);
      children_.push_back({child.name, child.value, type, contains(type, "Linear"), {}});
      names_.push_back(child.name);
    }
    TORCH_CHECK(!children_.empty(), path_,
                ": the module has no child modules to split at; name a method that returns (logits, activations...)");
    const auto x = probe();
    torch::NoGradGuard no_grad;
    const auto expected = logits_of(call_forward(x), "forward");
    auto y = x;
    for (size_t i = 0; i < children_.size(); ++i) {
      try {
        y = run_child(i, y);
      } catch (const c10::Error& error) {
        TORCH_CHECK(false, error.what_without_backtrace(),
                    " on a probe input; do its children chain like forward? (else name a method that returns "
                    "(logits, activations...))");
      }
      children_[i].probe_sizes = y.sizes().vec();
    }
    check_split(expected, logits_of(y, "the last child '" + names_.back() + "'"), "children");
    names_.pop_back();
    // The last feature map: a pooled [B,K,1,1] output only when there is no other.
    std::string last_map, last_pooled;
    for (size_t i = 0; i < names_.size(); ++i) {
      const auto& sizes = children_[i].probe_sizes;
      if (sizes.size() == 4) (sizes[2] * sizes[3] > 1 ? last_map : last_pooled) = names_[i];
    }
    default_layer_ = last_map.empty() ? last_pooled : last_map;
    TORCH_CHECK(!default_layer_.empty(), path_, ": no child but the last gives a feature map [B,K,h,w] on a probe input ",
                x.sizes());
  }

  std::string describe() const override {
    std::vector<std::string> all;
    for (const auto& c : children_) all.push_back(c.name);
    if (all.size() > 12) {
      all = {all[0], all[1], all[2], all[3], all[4], "...", all[all.size() - 2], all.back()};
    }
    return "TorchScript " + path_ + " (children " + joined(all, " ") + ")";
  }
  std::vector<std::string> layers() const override { return names_; }
  std::string default_layer() const override { return default_layer_; }

  SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& layers, bool track) override {
    std::vector<bool> requested(children_.size(), false);
    size_t earliest = children_.size();
    for (const auto& layer : layers) {
      const auto i = index_of(layer, names_);
      requested[i] = true;
      earliest = std::min(earliest, i);
    }
    check_inputs(inputs);
    const bool tracking = track && earliest < children_.size();
    std::vector<torch::Tensor> saved(children_.size());
    auto x = inputs;
    for (size_t i = 0; i < children_.size(); ++i) {
      {
        c10::AutoGradMode grad(tracking && i > earliest);
        x = run_child(i, x);
      }
      if (!requested[i]) continue;
      TORCH_CHECK(x.dim() == 4, path_, ": layer '", names_[i], "' gives ", x.sizes(),
                  ", not a feature map [B,K,h,w]");
      // The graph starts at the earliest requested activation.
      if (tracking && i == earliest) x = x.detach().requires_grad_(true);
      saved[i] = x;
      // The next child may work in place (torchvision's ReLU(inplace=True)); it gets
      // a copy, so the activation keeps its values and stays valid for autograd.
      c10::AutoGradMode grad(tracking);
      x = x.clone();
    }
    SplitForward out;
    out.logits = logits_of(x, "the last child '" + children_.back().name + "'");
    for (const auto& layer : layers) out.activations.push_back(saved[index_of(layer, names_)]);
    return out;
  }

  torch::Tensor cam_weights(const std::string& layer) override {
    const auto i = index_of(layer, names_);
    std::vector<size_t> head;
    for (size_t j = i + 1; j < children_.size(); ++j) {
      if (!contains(children_[j].type, "Flatten")) head.push_back(j);
    }
    if (head.size() != 2 || children_[i].probe_sizes.size() != 4) return {};
    const auto& pool = children_[head[0]];
    const auto& fc = children_[head[1]];
    const bool to_one = pool.probe_sizes.size() == 4 && pool.probe_sizes[2] == 1 && pool.probe_sizes[3] == 1;
    if (!contains(pool.type, "AvgPool") || !to_one || !fc.linear || !fc.module.hasattr("weight")) return {};
    const auto weight = fc.module.attr("weight").toTensor();
    if (weight.dim() != 2 || weight.size(1) != children_[i].probe_sizes[1]) return {};
    return weight.detach().clone();
  }

 private:
  struct Child {
    std::string name;
    torch::jit::Module module;
    std::string type;
    bool linear = false;
    std::vector<std::int64_t> probe_sizes;  ///< its output's sizes on the probe input
  };

  torch::Tensor run_child(size_t i, torch::Tensor x) {
    auto& child = children_[i];
    if (child.linear && x.dim() > 2) x = x.flatten(1);
    c10::IValue y;
    try {
      y = child.module.forward({x});
    } catch (const std::exception& error) {
      TORCH_CHECK(false, path_, ": child '", child.name, "' (", child.type, ") fails on an input ", x.sizes(), ": ",
                  short_reason(error));
    }
    TORCH_CHECK(y.isTensor(), path_, ": child '", child.name, "' returns ", value_summary(y),
                "; its children do not chain (name a method that returns (logits, activations...))");
    return y.toTensor();
  }

  std::vector<Child> children_;
  std::vector<std::string> names_;  ///< the targets: all children but the last
  std::string default_layer_;
};

/// Form (b): a method returning (logits, activation_1, ..., activation_n).
class MethodModel : public ScriptedModel {
 public:
  MethodModel(torch::jit::Module module, ScriptedModelOptions options)
      : ScriptedModel(std::move(module), std::move(options)) {
    const auto& name = options_.method();
    if (!module_.find_method(name)) {
      std::vector<std::string> methods;
      for (const auto& m : module_.get_methods()) methods.push_back(m.name());
      TORCH_CHECK(false, path_, ": the module has no method '", name, "' (its methods: ", joined(methods, ", "),
                  "; export one with @torch.jit.export)");
    }
    const auto x = probe();
    torch::NoGradGuard no_grad;
    const auto expected = logits_of(call_forward(x), "forward");
    const auto split = run(x);
    count_ = split.size() - 1;
    check_split(expected, split[0], "method '" + name + "'");
    for (size_t i = 1; i <= count_; ++i) names_.push_back(std::to_string(i));
  }

  std::string describe() const override {
    return "TorchScript " + path_ + " (method " + options_.method() + ", " + std::to_string(count_) +
           (count_ == 1 ? " activation)" : " activations)");
  }
  std::vector<std::string> layers() const override { return names_; }
  std::string default_layer() const override { return names_.back(); }

  SplitForward forward(const torch::Tensor& inputs, const std::vector<std::string>& layers, bool track) override {
    std::vector<size_t> indices;
    for (const auto& layer : layers) indices.push_back(index_of(layer, names_) + 1);
    check_inputs(inputs);
    c10::AutoGradMode grad(track);
    const auto split = run(track ? inputs.detach().requires_grad_(true) : inputs);
    TORCH_CHECK(split.size() == count_ + 1, path_, ": method '", options_.method(), "' returned ", split.size() - 1,
                " activations, on the probe input ", count_);
    SplitForward out;
    out.logits = split[0];
    for (const auto i : indices) out.activations.push_back(split[i]);
    return out;
  }

 private:
  /// The method's (logits, activations...) after checking what it returned.
  std::vector<torch::Tensor> run(const torch::Tensor& x) {
    const auto& name = options_.method();
    c10::IValue result;
    try {
      result = module_.get_method(name)({x});
    } catch (const std::exception& error) {
      TORCH_CHECK(false, path_, ": method '", name, "' fails on an input ", x.sizes(), ": ", short_reason(error));
    }
    bool fits = result.isTuple() && result.toTupleRef().elements().size() >= 2;
    std::vector<torch::Tensor> out;
    if (fits) {
      const auto& elements = result.toTupleRef().elements();
      for (size_t i = 0; i < elements.size() && fits; ++i) {
        fits = elements[i].isTensor() && elements[i].toTensor().dim() == (i == 0 ? 2 : 4);
        if (fits) out.push_back(elements[i].toTensor());
      }
    }
    TORCH_CHECK(fits, path_, ": method '", name, "' returns ", value_summary(result),
                ", expected a tuple (logits [B,classes], activations [B,K,h,w]...)");
    return out;
  }

  size_t count_ = 0;
  std::vector<std::string> names_;
};

}  // namespace

std::unique_ptr<SaliencyModel> open_scripted_model(const ScriptedModelOptions& options) {
  const auto& path = options.path();
  TORCH_CHECK(options.channels() >= 1 && options.probe_height() >= 1 && options.probe_width() >= 1, path,
              ": expected channels and probe size >= 1, got channels ", options.channels(), " and probe ",
              options.probe_height(), "x", options.probe_width());
  TORCH_CHECK(options.mean().size() == options.std().size() &&
                  (options.mean().empty() || static_cast<std::int64_t>(options.mean().size()) == options.channels()),
              path, ": expected mean and std of ", options.channels(), " values each (or both empty), got ",
              options.mean().size(), " and ", options.std().size());
  for (const auto s : options.std()) TORCH_CHECK(s > 0, path, ": expected std > 0, got ", s);
  TORCH_CHECK(options.tolerance() >= 0, path, ": expected tolerance >= 0, got ", options.tolerance());
  auto module = load_module(path);
  if (options.method().empty()) return std::make_unique<ChildrenModel>(std::move(module), options);
  return std::make_unique<MethodModel>(std::move(module), options);
}

}  // namespace attend::models
