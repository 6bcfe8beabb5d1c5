#include "attend/attention/multi_head.h"

#include <attend/attention/dot_product.h>
#include <attend/attention/mask.h>

#include <torch/torch.h>

namespace attend::attention {

namespace {

bool fits_head_operand(const torch::Tensor& t, std::int64_t b, std::int64_t h) {
  return !t.defined() || (t.dim() == 4 && (t.size(0) == 1 || t.size(0) == b) && (t.size(1) == 1 || t.size(1) == h));
}

// The part of a [B|1, H|1, ...] mask or bias that applies to batch items
// [b0, b0+nb) and heads [h0, h0+nh).
torch::Tensor block_of(const torch::Tensor& t, std::int64_t b0, std::int64_t nb, std::int64_t h0, std::int64_t nh) {
  if (!t.defined()) return t;
  auto out = t.size(0) == 1 ? t : t.narrow(0, b0, nb);
  return out.size(1) == 1 ? out : out.narrow(1, h0, nh);
}

}  // namespace

Attended attend_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                      const torch::Tensor& mask, const torch::Tensor& bias, const HeadAttentionOptions& options) {
  TORCH_CHECK(q.defined() && k.defined() && v.defined() && q.dim() == 4 && k.dim() == 4 && v.dim() == 4 &&
                  k.size(0) == q.size(0) && v.size(0) == q.size(0) && k.size(1) == q.size(1) &&
                  v.size(1) == q.size(1) && k.size(3) == q.size(3) && v.size(2) == k.size(2),
              "attend_heads: expected q [B,H,Tq,d], k [B,H,Tk,d], v [B,H,Tk,dv], got ", q.sizes(), ", ", k.sizes(),
              ", ", v.sizes());
  TORCH_CHECK(q.is_floating_point() && k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "attend_heads: expected q, k and v of one floating dtype, got ", q.scalar_type(), ", ", k.scalar_type(),
              ", ", v.scalar_type());
  const auto b = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2), d = q.size(3), dv = v.size(3);
  TORCH_CHECK(!mask.defined() || (mask.scalar_type() == torch::kBool && fits_head_operand(mask, b, h) &&
                                  (mask.size(2) == 1 || mask.size(2) == tq) && mask.size(3) == tk),
              "attend_heads: expected a bool mask [B|1,H|1,Tq|1,Tk] = [", b, "|1,", h, "|1,", tq, "|1,", tk,
              "] (true = may attend), got ", mask.defined() ? c10::str(mask.scalar_type(), " ", mask.sizes()) : "");
  TORCH_CHECK(!bias.defined() || (bias.is_floating_point() && fits_head_operand(bias, b, h) &&
                                  (bias.size(2) == 1 || bias.size(2) == tq) && bias.size(3) == tk),
              "attend_heads: expected a float bias [B|1,H|1,Tq|1,Tk] = [", b, "|1,", h, "|1,", tq, "|1,", tk,
              "], got ", bias.defined() ? c10::str(bias.scalar_type(), " ", bias.sizes()) : "");
  TORCH_CHECK(options.dropout() >= 0.0 && options.dropout() < 1.0, "attend_heads: dropout must be in [0,1), got ",
              options.dropout());
  TORCH_CHECK(options.block_bytes() >= 1, "attend_heads: block_bytes must be >= 1, got ", options.block_bytes());
  const double scale = options.scale().value_or(1.0 / std::sqrt(static_cast<double>(d)));
  const bool per_head = options.weights() == HeadWeights::kPerHead;
  const bool dropout = options.training() && options.dropout() > 0.0;
  // Weights (and softmax) in at least float32.
  const auto weight_type = q.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat32;
  const bool record = torch::GradMode::is_enabled() &&
                      (q.requires_grad() || k.requires_grad() || v.requires_grad() ||
                       (bias.defined() && bias.requires_grad()));

  // Blocks: whole batch items while one item's H heads fit in block_bytes, else
  // groups of heads of one item; either way a contiguous range of rows of [B*H,...].
  // A head's share: its score matrix, its q, k, v rows and its context. With
  // gradients every block's scores are kept for backward anyway, so one block does.
  const std::int64_t head_bytes =
      (tq * tk + tq * d + tk * d + tk * dv + tq * dv) * static_cast<std::int64_t>(c10::elementSize(weight_type));
  std::int64_t items = b, heads = h;
  if (!record && head_bytes * h <= options.block_bytes()) {
    items = std::clamp<std::int64_t>(options.block_bytes() / (head_bytes * h), 1, b);
  } else if (!record) {
    items = 1;
    heads = std::clamp<std::int64_t>(options.block_bytes() / head_bytes, 1, h);
  }
  // Rows [b0*H+h0, ...) of x [B,H,T,D] as [nb*nh,T,D]. With gradients (one block) a
  // reshape; without, a copy into a buffer reused across blocks, so it stays in cache.
  auto rows_of = [&](const torch::Tensor& x, torch::Tensor& buffer, std::int64_t b0, std::int64_t nb,
                     std::int64_t h0, std::int64_t nh) {
    if (record) return x.reshape({b * h, x.size(2), x.size(3)});
    auto block = x.narrow(0, b0, nb).narrow(1, h0, nh);
    if (block.is_contiguous()) return block.view({nb * nh, x.size(2), x.size(3)});
    if (!buffer.defined()) buffer = torch::empty({items * heads, x.size(2), x.size(3)}, x.options());
    auto dst = buffer.narrow(0, 0, nb * nh);
    dst.view({nb, nh, x.size(2), x.size(3)}).copy_(block);
    return dst;
  };
  torch::Tensor q_buffer, k_buffer, v_buffer;
  // With gradients, scale q once (cheaper than scaling the scores); the product also
  // makes head views of a packed projection contiguous, so no further copy is needed.
  const auto q_in = record ? (q * scale).contiguous() : q;

  Attended out;
  torch::Tensor context3, scratch;
  std::vector<torch::Tensor> contexts, weights;
  if (!record) {
    context3 = torch::empty({b * h, tq, dv}, q.options());
    out.weights = per_head ? torch::empty({b, h, tq, tk}, q.options().dtype(weight_type))
                           : (heads < h ? torch::zeros({b, tq, tk}, q.options().dtype(weight_type))
                                        : torch::empty({b, tq, tk}, q.options().dtype(weight_type)));
  }
  for (std::int64_t b0 = 0; b0 < b; b0 += items) {
    const auto nb = std::min(items, b - b0);
    for (std::int64_t h0 = 0; h0 < h; h0 += heads) {
      const auto nh = std::min(heads, h - h0);
      const auto r0 = b0 * h + h0, rows = nb * nh;
      const auto qb = rows_of(q_in, q_buffer, b0, nb, h0, nh), vb = rows_of(v, v_buffer, b0, nb, h0, nh);
      const auto kbt = rows_of(k, k_buffer, b0, nb, h0, nh).transpose(1, 2);
      torch::Tensor scores;
      if (record) {
        scores = torch::bmm(qb, kbt);
      } else {
        // Straight into the per-head result when it is wanted; else into a block buffer.
        if (per_head && q.scalar_type() == weight_type) {
          scores = out.weights.view({b * h, tq, tk}).narrow(0, r0, rows);
        } else {
          if (!scratch.defined()) scratch = torch::empty({items * heads, tq, tk}, q.options());
          scores = scratch.narrow(0, 0, rows);
        }
        // (Not baddbmm with beta = 0: LibTorch 1.13's small-matrix kernel still reads
        // the uninitialised output then.) The block is in cache for the scaling.
        at::bmm_out(scores, qb, kbt).mul_(scale);
      }
      auto scores4 = scores.view({nb, nh, tq, tk});
      if (bias.defined()) scores4.add_(block_of(bias, b0, nb, h0, nh));
      torch::Tensor w;  // [rows,tq,tk] in weight_type
      if (mask.defined() || scores.scalar_type() != weight_type) {
        w = masked_softmax(scores4, block_of(mask, b0, nb, h0, nh)).view({rows, tq, tk});
      } else if (record) {
        w = torch::softmax(scores, -1);
      } else {
        w = at::softmax_out(scores, scores, -1);  // in place: the kernel reads each row before writing it
      }
      const auto used = dropout ? torch::dropout(w, options.dropout(), true) : w;
      if (record) {
        contexts.push_back(torch::bmm(used.to(q.scalar_type()), vb));
      } else {
        auto dst = context3.narrow(0, r0, rows);
        at::bmm_out(dst, used.to(q.scalar_type()), vb);
      }
      const auto w4 = w.view({nb, nh, tq, tk});
      if (per_head) {
        if (record) {
          weights.push_back(w4);
        } else if (!w.is_same(scores)) {
          out.weights.narrow(0, b0, nb).narrow(1, h0, nh).copy_(w4);
        }
      } else if (nh == h) {  // whole items: their mean over heads
        if (record) {
          weights.push_back(w4.sum(1).div_(static_cast<double>(h)));
        } else {
          auto dst = out.weights.narrow(0, b0, nb);
          at::sum_out(dst, w4, c10::IntArrayRef{1}).div_(static_cast<double>(h));
        }
      } else {  // a group of heads of item b0 (only without gradients: one block with them)
        out.weights.narrow(0, b0, 1).add_(w4.sum(1), 1.0 / static_cast<double>(h));
      }
    }
  }
  if (record) {
    context3 = contexts.size() == 1 ? contexts[0] : torch::cat(contexts);
    out.weights = weights.size() == 1 ? weights[0] : torch::cat(weights);
    if (per_head) out.weights = out.weights.view({b, h, tq, tk});
  }
  out.context = context3.view({b, h, tq, dv});
  return out;
}

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
  in_proj_weight = q_proj_weight = k_proj_weight = v_proj_weight = in_proj_bias = torch::Tensor();
  // Same initialisation as LibTorch's module: xavier-uniform input projections (the
  // packed matrix as one), default Linear output projection, zero biases.
  if (kdim == e && vdim == e) {
    in_proj_weight = register_parameter("in_proj_weight", torch::nn::init::xavier_uniform_(torch::empty({3 * e, e})));
  } else {
    q_proj_weight = register_parameter("q_proj_weight", torch::nn::init::xavier_uniform_(torch::empty({e, e})));
    k_proj_weight = register_parameter("k_proj_weight", torch::nn::init::xavier_uniform_(torch::empty({e, kdim})));
    v_proj_weight = register_parameter("v_proj_weight", torch::nn::init::xavier_uniform_(torch::empty({e, vdim})));
  }
  if (options.bias()) in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * e}));
  out_proj = register_module("out_proj", torch::nn::Linear(torch::nn::LinearOptions(e, e).bias(options.bias())));
  if (options.bias()) {
    torch::NoGradGuard no_grad;
    out_proj->bias.zero_();
  }
}

void MultiHeadAttentionImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::MultiHeadAttention(embed_dim=" << options.embed_dim()
         << ", num_heads=" << options.num_heads() << ", kdim=" << projection_weight(1).size(1)
         << ", vdim=" << projection_weight(2).size(1) << ", dropout=" << options.dropout() << ")";
}

torch::Tensor MultiHeadAttentionImpl::projection_weight(int which) const {
  TORCH_CHECK(which >= 0 && which <= 2, "MultiHeadAttention: projection 0 (query), 1 (key) or 2 (value), got ", which);
  const auto e = options.embed_dim();
  if (packed()) return in_proj_weight.narrow(0, which * e, e);
  return which == 0 ? q_proj_weight : which == 1 ? k_proj_weight : v_proj_weight;
}

torch::Tensor MultiHeadAttentionImpl::projection_bias(int which) const {
  TORCH_CHECK(which >= 0 && which <= 2, "MultiHeadAttention: projection 0 (query), 1 (key) or 2 (value), got ", which);
  return in_proj_bias.defined() ? in_proj_bias.narrow(0, which * options.embed_dim(), options.embed_dim())
                                : torch::Tensor();
}

torch::Tensor MultiHeadAttentionImpl::project(const torch::Tensor& x, int which) const {
  return torch::linear(x, projection_weight(which), projection_bias(which));
}

Attended MultiHeadAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& key,
                                         const torch::Tensor& value, const torch::Tensor& key_mask,
                                         const torch::Tensor& attn_mask, const torch::Tensor& bias,
                                         HeadWeights weights) {
  const auto e = options.embed_dim(), h = options.num_heads(), d = e / h;
  TORCH_CHECK(query.dim() == 3 && query.size(2) == e, "MultiHeadAttention: expected query [B,Tq,", e, "], got ",
              query.sizes());
  TORCH_CHECK(key.dim() == 3 && value.dim() == 3 && key.size(0) == query.size(0) && value.size(0) == query.size(0) &&
                  key.size(1) == value.size(1) && key.size(2) == projection_weight(1).size(1) &&
                  value.size(2) == projection_weight(2).size(1),
              "MultiHeadAttention: expected key [B,Tk,", projection_weight(1).size(1), "] and value [B,Tk,",
              projection_weight(2).size(1), "] with B = ", query.size(0), ", got ", key.sizes(), " and ",
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
                    bias.size(-1) == tk && (bias.dim() < 3 || bias.size(0) == b) &&
                    (bias.dim() < 4 || bias.size(1) == h),
                "MultiHeadAttention: expected a float bias [", tq, ",", tk, "], [", b, ",", tq, ",", tk, "] or [", b,
                ",", h, ",", tq, ",", tk, "], got ", bias.sizes());
    full_bias = bias.dim() == 2 ? bias.reshape({1, 1, tq, tk}) : bias.dim() == 3 ? bias.unsqueeze(1) : bias;
  }
  // Projections into head views [B,H,T,d] (strided; attend_heads copies block by block).
  auto heads = [&](const torch::Tensor& x, std::int64_t t) { return x.view({b, t, h, d}).transpose(1, 2); };
  torch::Tensor q, k, v;
  if (packed() && query.is_same(key) && key.is_same(value)) {
    // Self-attention: one product with the packed projections.
    const auto qkv = torch::linear(query, in_proj_weight, in_proj_bias).chunk(3, -1);
    q = heads(qkv[0], tq), k = heads(qkv[1], tk), v = heads(qkv[2], tk);
  } else if (packed() && key.is_same(value)) {
    // One memory for keys and values (encoder-decoder attention): one product for both.
    q = heads(project(query, 0), tq);
    const auto kv = torch::linear(key, in_proj_weight.narrow(0, e, 2 * e),
                                  in_proj_bias.defined() ? in_proj_bias.narrow(0, e, 2 * e) : torch::Tensor())
                        .chunk(2, -1);
    k = heads(kv[0], tk), v = heads(kv[1], tk);
  } else {
    q = heads(project(query, 0), tq), k = heads(project(key, 1), tk), v = heads(project(value, 2), tk);
  }
  const auto att = attend_heads(q, k, v, mask, full_bias, head_options(weights));
  Attended out;
  out.context = out_proj(att.context.transpose(1, 2).reshape({b, tq, e}));
  out.weights = att.weights;
  return out;
}

HeadAttentionOptions MultiHeadAttentionImpl::head_options(HeadWeights weights) const {
  return HeadAttentionOptions().dropout(options.dropout()).training(is_training()).weights(weights);
}

Attended MultiHeadAttentionImpl::forward_step(const torch::Tensor& query, const torch::Tensor& new_key,
                                              const torch::Tensor& new_value, KvCache& cache, bool causal,
                                              HeadWeights weights) {
  const auto e = options.embed_dim(), h = options.num_heads(), d = e / h;
  TORCH_CHECK(query.dim() == 3 && query.size(2) == e && new_key.dim() == 3 && new_value.dim() == 3 &&
                  new_key.size(0) == query.size(0) && new_value.size(0) == query.size(0) &&
                  new_key.size(1) == new_value.size(1) && new_key.size(2) == projection_weight(1).size(1) &&
                  new_value.size(2) == projection_weight(2).size(1),
              "MultiHeadAttention::forward_step: expected query [B,Tq,", e, "], new_key [B,Tn,",
              projection_weight(1).size(1), "], new_value [B,Tn,", projection_weight(2).size(1), "], got ",
              query.sizes(), ", ", new_key.sizes(), ", ", new_value.sizes());
  const auto b = query.size(0), tq = query.size(1), tn = new_key.size(1);
  TORCH_CHECK(!cache.keys.defined() || cache.keys.size(0) == b, "MultiHeadAttention::forward_step: the cache holds ",
              cache.keys.defined() ? cache.keys.size(0) : 0, " sequences but the batch has ", b);
  auto heads = [&](const torch::Tensor& x, std::int64_t t) { return x.view({b, t, h, d}).transpose(1, 2); };
  const auto k = heads(project(new_key, 1), tn), v = heads(project(new_value, 2), tn);
  cache.keys = cache.keys.defined() ? torch::cat({cache.keys, k}, 2) : k;
  cache.values = cache.values.defined() ? torch::cat({cache.values, v}, 2) : v;
  const auto tk = cache.length();
  TORCH_CHECK(!causal || tq <= tk, "MultiHeadAttention::forward_step: ", tq, " queries but only ", tk,
              " cached positions");
  const auto mask = causal ? causal_mask(tq, tk, query.device()).view({1, 1, tq, tk}) : torch::Tensor();
  const auto att = attend_heads(heads(project(query, 0), tq), cache.keys, cache.values, mask, {}, head_options(weights));
  Attended out;
  out.context = out_proj(att.context.transpose(1, 2).reshape({b, tq, e}));
  out.weights = att.weights;
  return out;
}

void MultiHeadAttentionImpl::load_from(const torch::nn::MultiheadAttention& other) {
  const auto& o = other->options;
  const auto kdim = projection_weight(1).size(1), vdim = projection_weight(2).size(1);
  TORCH_CHECK(o.embed_dim() == options.embed_dim() && o.num_heads() == options.num_heads() && o.kdim() == kdim &&
                  o.vdim() == vdim && o.bias() == options.bias(),
              "MultiHeadAttention::load_from: sizes differ (embed_dim ", o.embed_dim(), " vs ", options.embed_dim(),
              ", heads ", o.num_heads(), " vs ", options.num_heads(), ", kdim ", o.kdim(), " vs ", kdim, ", vdim ",
              o.vdim(), " vs ", vdim, ", bias ", o.bias(), " vs ", options.bias(), ")");
  TORCH_CHECK(!o.add_bias_kv() && !o.add_zero_attn(),
              "MultiHeadAttention::load_from: add_bias_kv and add_zero_attn are not supported");
  torch::NoGradGuard no_grad;
  // Both modules pack exactly when kdim == vdim == embed_dim.
  if (packed()) {
    in_proj_weight.copy_(other->in_proj_weight);
  } else {
    q_proj_weight.copy_(other->q_proj_weight);
    k_proj_weight.copy_(other->k_proj_weight);
    v_proj_weight.copy_(other->v_proj_weight);
  }
  if (options.bias()) {
    in_proj_bias.copy_(other->in_proj_bias);
    out_proj->bias.copy_(other->out_proj->bias);
  }
  out_proj->weight.copy_(other->out_proj->weight);
}

}  // namespace attend::attention
