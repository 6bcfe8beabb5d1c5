#include "attend/attention/multi_head.h"

#include <attend/attention/dot_product.h>
#include <attend/attention/mask.h>

#include <torch/torch.h>

namespace attend::attention {

MultiHeadAttentionImpl::MultiHeadAttentionImpl(const MultiHeadAttentionOptions& options_) : options(options_) {
  reset();
}

void MultiHeadAttentionImpl::reset() {
  const auto e = options.embed_dim(), h = options.num_heads();
  TORCH_CHECK(e >= 1 && h >= 1 && e % h == 0, "MultiHeadAttention: embed_dim (", e,
              ") must be a positive multiple of num_heads (", h, ")");
  TORCH_CHECK(options.kdim() >= 0 && options.vdim() >= 0, "MultiHeadAttention: kdim and vdim must be >= 0");
  TORCH_CHECK(options.dropout() >= 0 && options.dropout() < 1, "MultiHeadAttention: dropout must be in [0,1)");
  const auto kdim = options.kdim() > 0 ? options.kdim() : e;
  const auto vdim = options.vdim() > 0 ? options.vdim() : e;
  auto linear = [&](std::int64_t in) { return torch::nn::Linear(torch::nn::LinearOptions(in, e).bias(options.bias())); };
  q_proj = register_module("q_proj", linear(e));
  k_proj = register_module("k_proj", linear(kdim));
  v_proj = register_module("v_proj", linear(vdim));
  out_proj = register_module("out_proj", linear(e));
  // Same initialisation as LibTorch's module: xavier-uniform projections, zero biases.
  torch::NoGradGuard no_grad;
  for (auto& l : {q_proj, k_proj, v_proj}) {
    torch::nn::init::xavier_uniform_(l->weight);
    if (options.bias()) l->bias.zero_();
  }
  if (options.bias()) out_proj->bias.zero_();
}

void MultiHeadAttentionImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::MultiHeadAttention(embed_dim=" << options.embed_dim()
         << ", num_heads=" << options.num_heads() << ", kdim=" << k_proj->options.in_features()
         << ", vdim=" << v_proj->options.in_features() << ", dropout=" << options.dropout() << ")";
}

Attended MultiHeadAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& key,
                                         const torch::Tensor& value, const torch::Tensor& key_mask,
                                         const torch::Tensor& attn_mask, const torch::Tensor& bias,
                                         HeadWeights weights) {
  const auto e = options.embed_dim(), h = options.num_heads(), d = e / h;
  TORCH_CHECK(query.dim() == 3 && query.size(2) == e, "MultiHeadAttention: expected query [B,Tq,", e, "], got ",
              query.sizes());
  TORCH_CHECK(key.dim() == 3 && value.dim() == 3 && key.size(0) == query.size(0) && value.size(0) == query.size(0) &&
                  key.size(1) == value.size(1) && key.size(2) == k_proj->options.in_features() &&
                  value.size(2) == v_proj->options.in_features(),
              "MultiHeadAttention: expected key [B,Tk,", k_proj->options.in_features(), "] and value [B,Tk,",
              v_proj->options.in_features(), "] with B = ", query.size(0), ", got ", key.sizes(), " and ",
              value.sizes());
  const auto b = query.size(0), tq = query.size(1), tk = key.size(1);
  // Combine both bool masks into one [B,1,Tq,Tk] (broadcast over heads).
  torch::Tensor mask;
  if (key_mask.defined()) {
    TORCH_CHECK(key_mask.scalar_type() == torch::kBool && key_mask.dim() == 2 && key_mask.size(0) == b &&
                    key_mask.size(1) == tk,
                "MultiHeadAttention: expected a bool key_mask [", b, ",", tk, "] (true = may attend), got ",
                key_mask.scalar_type(), " ", key_mask.sizes());
    mask = key_mask.view({b, 1, 1, tk});
  }
  if (attn_mask.defined()) {
    TORCH_CHECK(attn_mask.scalar_type() == torch::kBool &&
                    ((attn_mask.dim() == 2 && attn_mask.size(0) == tq && attn_mask.size(1) == tk) ||
                     (attn_mask.dim() == 3 && attn_mask.size(0) == b && attn_mask.size(1) == tq &&
                      attn_mask.size(2) == tk)),
                "MultiHeadAttention: expected a bool attn_mask [", tq, ",", tk, "] or [", b, ",", tq, ",", tk,
                "] (true = may attend; use `bias` for float masks), got ", attn_mask.scalar_type(), " ",
                attn_mask.sizes());
    const auto m = attn_mask.dim() == 2 ? attn_mask.view({1, 1, tq, tk}) : attn_mask.view({b, 1, tq, tk});
    mask = mask.defined() ? mask.logical_and(m) : m;
  }
  torch::Tensor full_bias;
  if (bias.defined()) {
    TORCH_CHECK(bias.is_floating_point() && bias.dim() >= 2 && bias.dim() <= 4 && bias.size(-2) == tq &&
                    bias.size(-1) == tk,
                "MultiHeadAttention: expected a float bias [..,", tq, ",", tk, "], got ", bias.sizes());
    full_bias = bias.dim() == 3 ? bias.unsqueeze(1) : bias;
  }
  auto heads = [&](const torch::Tensor& x, std::int64_t t) { return x.view({b, t, h, d}).transpose(1, 2); };
  torch::Tensor q, k, v;
  if (query.is_same(key) && key.is_same(value)) {
    // Self-attention: one product with the three projections side by side.
    const auto w = torch::cat({q_proj->weight, k_proj->weight, v_proj->weight});
    const auto bias_qkv = options.bias() ? torch::cat({q_proj->bias, k_proj->bias, v_proj->bias}) : torch::Tensor();
    const auto qkv = torch::linear(query, w, bias_qkv).chunk(3, -1);
    q = heads(qkv[0], tq), k = heads(qkv[1], tk), v = heads(qkv[2], tk);
  } else {
    q = heads(q_proj(query), tq), k = heads(k_proj(key), tk), v = heads(v_proj(value), tk);
  }
  auto att = scaled_dot_product_attention(q, k, v, mask, full_bias, options.dropout(), is_training());
  Attended out;
  out.context = out_proj(att.context.transpose(1, 2).reshape({b, tq, e}));
  out.weights = weights == HeadWeights::kAverage ? att.weights.mean(1) : att.weights;
  return out;
}

Attended MultiHeadAttentionImpl::forward_step(const torch::Tensor& query, const torch::Tensor& new_key,
                                              const torch::Tensor& new_value, KvCache& cache, bool causal,
                                              HeadWeights weights) {
  const auto e = options.embed_dim(), h = options.num_heads(), d = e / h;
  TORCH_CHECK(query.dim() == 3 && query.size(2) == e && new_key.dim() == 3 && new_value.dim() == 3 &&
                  new_key.size(0) == query.size(0) && new_value.size(0) == query.size(0) &&
                  new_key.size(1) == new_value.size(1) && new_key.size(2) == k_proj->options.in_features() &&
                  new_value.size(2) == v_proj->options.in_features(),
              "MultiHeadAttention::forward_step: expected query [B,Tq,", e, "], new_key [B,Tn,",
              k_proj->options.in_features(), "], new_value [B,Tn,", v_proj->options.in_features(), "], got ",
              query.sizes(), ", ", new_key.sizes(), ", ", new_value.sizes());
  const auto b = query.size(0), tq = query.size(1), tn = new_key.size(1);
  TORCH_CHECK(!cache.keys.defined() || cache.keys.size(0) == b, "MultiHeadAttention::forward_step: the cache holds ",
              cache.keys.defined() ? cache.keys.size(0) : 0, " sequences but the batch has ", b);
  auto heads = [&](const torch::Tensor& x, std::int64_t t) { return x.view({b, t, h, d}).transpose(1, 2); };
  const auto k = heads(k_proj(new_key), tn), v = heads(v_proj(new_value), tn);
  cache.keys = cache.keys.defined() ? torch::cat({cache.keys, k}, 2) : k;
  cache.values = cache.values.defined() ? torch::cat({cache.values, v}, 2) : v;
  const auto tk = cache.length();
  TORCH_CHECK(!causal || tq <= tk, "MultiHeadAttention::forward_step: ", tq, " queries but only ", tk,
              " cached positions");
  const auto mask = causal ? causal_mask(tq, tk, query.device()).view({1, 1, tq, tk}) : torch::Tensor();
  auto att = scaled_dot_product_attention(heads(q_proj(query), tq), cache.keys, cache.values, mask, {},
                                          options.dropout(), is_training());
  Attended out;
  out.context = out_proj(att.context.transpose(1, 2).reshape({b, tq, e}));
  out.weights = weights == HeadWeights::kAverage ? att.weights.mean(1) : att.weights;
  return out;
}

void MultiHeadAttentionImpl::load_from(const torch::nn::MultiheadAttention& other) {
  const auto& o = other->options;
  const auto kdim = k_proj->options.in_features(), vdim = v_proj->options.in_features();
  TORCH_CHECK(o.embed_dim() == options.embed_dim() && o.num_heads() == options.num_heads() && o.kdim() == kdim &&
                  o.vdim() == vdim && o.bias() == options.bias(),
              "MultiHeadAttention::load_from: sizes differ (embed_dim ", o.embed_dim(), " vs ", options.embed_dim(),
              ", heads ", o.num_heads(), " vs ", options.num_heads(), ", kdim ", o.kdim(), " vs ", kdim, ", vdim ",
              o.vdim(), " vs ", vdim, ", bias ", o.bias(), " vs ", options.bias(), ")");
  TORCH_CHECK(!o.add_bias_kv() && !o.add_zero_attn(),
              "MultiHeadAttention::load_from: add_bias_kv and add_zero_attn are not supported");
  const auto e = options.embed_dim();
  torch::NoGradGuard no_grad;
  if (other->_qkv_same_embed_dim) {
    const auto w = other->in_proj_weight.chunk(3, 0);
    q_proj->weight.copy_(w[0]);
    k_proj->weight.copy_(w[1]);
    v_proj->weight.copy_(w[2]);
  } else {
    q_proj->weight.copy_(other->q_proj_weight);
    k_proj->weight.copy_(other->k_proj_weight);
    v_proj->weight.copy_(other->v_proj_weight);
  }
  if (options.bias()) {
    q_proj->bias.copy_(other->in_proj_bias.narrow(0, 0, e));
    k_proj->bias.copy_(other->in_proj_bias.narrow(0, e, e));
    v_proj->bias.copy_(other->in_proj_bias.narrow(0, 2 * e, e));
    out_proj->bias.copy_(other->out_proj->bias);
  }
  out_proj->weight.copy_(other->out_proj->weight);
}

}  // namespace attend::attention
