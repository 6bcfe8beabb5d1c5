#pragma once
/// The model the checkpoint fuzzer loads into and make_corpus saves the checkpoint
/// seeds from: parameters, buffers (batch norm) and nesting, as in
/// tests/models/checkpoint_test.cpp, and a few KB of weights, so a seed stays small.

#include <attend/models/checkpoint.h>

#include <torch/torch.h>

namespace attend::fuzz {

struct CheckpointNetImpl : torch::nn::Module {
  CheckpointNetImpl()
      : fc1(register_module("fc1", torch::nn::Linear(4, 8))),
        bn(register_module("bn", torch::nn::BatchNorm1d(8))),
        fc2(register_module("fc2", torch::nn::Linear(8, 3))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(bn(fc1(x)))); }
  torch::nn::Linear fc1;
  torch::nn::BatchNorm1d bn;
  torch::nn::Linear fc2;
};
TORCH_MODULE(CheckpointNet);

/// The kind and options the seeds record (the registry's "fc" layout; the fuzzer
/// builds CheckpointNet itself, so no registry is linked).
inline models::CheckpointInfo checkpoint_seed_info() {
  models::CheckpointInfo info;
  info.model = {"fc", {{"channels", 1}, {"height", 2}, {"width", 2}, {"hidden", {8}}, {"classes", 3}}};
  info.training = {{"optimizer", "adam"}, {"lr", 0.001}, {"seed", 1}};
  info.data = {{"kind", "idx"}, {"dir", "data/mnist"}};
  info.state = {{"epoch", 1}, {"step_in_epoch", 0}, {"global_step", 2}};
  info.step = 2;
  info.epoch = 1;
  return info;
}

/// The name of the model's own generator in the seeds (as the RAM's location sampler).
constexpr const char* kSeedGeneratorName = "sampler";

}  // namespace attend::fuzz
