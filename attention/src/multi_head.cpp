#include "attend/attention/multi_head.h"

#include <attend/attention/dot_product.h>
#include <attend/attention/mask.h>

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>

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

// The (batch item, head) pairs of [B,H,...] operands in blocks: whole batch items
// while one item's H heads fit in `block_bytes`, else groups of heads of one item;
// either way a contiguous range of rows of [B*H,...]. Small blocks stay in cache
// between the products and the softmax.
struct HeadBlocks {
  std::int64_t b, h, items, heads;

  // `head_bytes`: one head's share of a block (its score matrices and operand rows).
  HeadBlocks(std::int64_t b_, std::int64_t h_, std::int64_t head_bytes, std::int64_t block_bytes)
      : b(b_), h(h_), items(b_), heads(h_) {
    head_bytes = std::max<std::int64_t>(head_bytes, 1);  // empty sequences
    const auto item_bytes = std::max<std::int64_t>(head_bytes * h, 1);  // no heads
    if (item_bytes <= block_bytes) {
      items = std::clamp<std::int64_t>(block_bytes / item_bytes, 1, std::max<std::int64_t>(b, 1));
    } else {
      items = 1;
      heads = std::clamp<std::int64_t>(block_bytes / head_bytes, 1, h);
    }
  }

  // Calls f(b0, nb, h0, nh) for each block.
  template <typename F>
  void each(F&& f) const {
    for (std::int64_t b0 = 0; b0 < b; b0 += items) {
      for (std::int64_t h0 = 0; h0 < h; h0 += heads) f(b0, std::min(items, b - b0), h0, std::min(heads, h - h0));
    }
  }

  // Rows [b0*H+h0, ...) of x [B,H,T,D] as [nb*nh,T,D]: a view when they are one
  // contiguous range, else a copy into `buffer` (allocated once, reused by every
  // block). (Passing one item's strided heads straight to the batched products
  // instead measured no faster.)
  torch::Tensor rows(const torch::Tensor& x, torch::Tensor& buffer, std::int64_t b0, std::int64_t nb, std::int64_t h0,
                     std::int64_t nh) const {
    auto block = x.narrow(0, b0, nb).narrow(1, h0, nh);
    if (block.is_contiguous()) return block.view({nb * nh, x.size(2), x.size(3)});
    if (!buffer.defined()) buffer = torch::empty({items * heads, x.size(2), x.size(3)}, x.options());
    auto dst = buffer.narrow(0, 0, nb * nh);
    dst.view({nb, nh, x.size(2), x.size(3)}).copy_(block);
    return dst;
  }

  // A block's share of a [items*heads, ...] scratch tensor, allocated on first use.
  torch::Tensor scratch(torch::Tensor& buffer, std::int64_t rows, std::int64_t t1, std::int64_t t2,
                        const torch::TensorOptions& options) const {
    if (!buffer.defined()) buffer = torch::empty({items * heads, t1, t2}, options);
    return buffer.narrow(0, 0, rows);
  }
};

// One head's share of a block: its score matrix, its q, k, v rows and its context;
// `score_matrices` = 2 for backward (scores and their gradient).
std::int64_t head_bytes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        std::int64_t score_matrices) {
  const auto tq = q.size(2), tk = k.size(2), d = q.size(3), dv = v.size(3);
  const auto operand = static_cast<std::int64_t>(c10::elementSize(q.scalar_type()));
  const auto weight = std::max<std::int64_t>(operand, 4);  // scores and weights in at least float32
  return score_matrices * tq * tk * weight + (tq * d + tk * d + tk * dv + tq * dv) * operand;
}

// Softmax of the scaled (and biased) scores of a block, in place where possible:
// scores [rows,tq,tk] -> weights [rows,tq,tk], float32 for reduced-precision scores.
torch::Tensor block_softmax(torch::Tensor scores, std::int64_t nb, std::int64_t nh, const torch::Tensor& mask,
                            const torch::Tensor& bias, std::int64_t b0, std::int64_t h0) {
  const auto rows = scores.size(0), tq = scores.size(1), tk = scores.size(2);
  auto scores4 = scores.view({nb, nh, tq, tk});
  if (bias.defined()) scores4.add_(block_of(bias, b0, nb, h0, nh));
  const bool exact = scores.scalar_type() == torch::kFloat || scores.scalar_type() == torch::kDouble;
  if (mask.defined() || !exact) return masked_softmax(scores4, block_of(mask, b0, nb, h0, nh)).view({rows, tq, tk});
  if (bias.defined() && tk > 0) {
    // A bias of -inf can block whole rows (additive_bias() passed without a mask):
    // those give zeros, as masked rows do, not softmax's 0/0. The block is in cache.
    const auto alive = torch::amax(scores, -1, /*keepdim=*/true) != -std::numeric_limits<double>::infinity();
    if (!alive.all().item<bool>()) {
      scores.masked_fill_(alive.logical_not(), 0.0);
      return at::softmax_out(scores, scores, -1).mul_(alive);
    }
  }
  return at::softmax_out(scores, scores, -1);  // in place: the kernel reads each row before writing it
}

// Dropout on the weights used for the context: each weight kept with probability
// 1 - p and then divided by 1 - p. `keep` [B,H,Tq,Tk] bool is what was kept, filled
// by blocked_forward when `record` (for backward), else drawn block by block.
struct WeightDropout {
  double p = 0;
  bool record = false;
  torch::Tensor keep;
};

// used = w * keep / (1 - p) of one block, into `out`.
torch::Tensor dropped(const torch::Tensor& w, const torch::Tensor& keep, double p, torch::Tensor out) {
  return at::mul_out(out, w, keep).mul_(1.0 / (1.0 - p));
}

// Attention of q [B,H,Tq,d] over k, v block by block, recording nothing for autograd
// (inference, and the forward pass of BlockedHeadAttention below), each block's
// scores, weights and context written straight into the results: the [B,H,Tq,Tk]
// scores never exist at once (unless per-head weights are asked for).
Attended blocked_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         const torch::Tensor& mask, const torch::Tensor& bias, double scale, bool per_head,
                         std::int64_t block_bytes, WeightDropout& dropout) {
  const auto b = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2), dv = v.size(3);
  const auto weight_type = q.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat32;
  const HeadBlocks blocks(b, h, head_bytes(q, k, v, dropout.p > 0 ? 2 : 1), block_bytes);
  Attended out;
  out.context = torch::empty({b, h, tq, dv}, q.options());
  const auto context3 = out.context.view({b * h, tq, dv});
  out.weights = per_head ? torch::empty({b, h, tq, tk}, q.options().dtype(weight_type))
                         : (blocks.heads < h ? torch::zeros({b, tq, tk}, q.options().dtype(weight_type))
                                             : torch::empty({b, tq, tk}, q.options().dtype(weight_type)));
  if (h == 0 && !per_head) out.weights.fill_(std::numeric_limits<double>::quiet_NaN());  // a mean of no heads
  if (dropout.p > 0 && dropout.record) dropout.keep = torch::empty({b, h, tq, tk}, q.options().dtype(torch::kBool));
  torch::Tensor q_buffer, k_buffer, v_buffer, score_buffer, keep_buffer, used_buffer;
  blocks.each([&](std::int64_t b0, std::int64_t nb, std::int64_t h0, std::int64_t nh) {
    const auto r0 = b0 * h + h0, rows = nb * nh;
    const auto qb = blocks.rows(q, q_buffer, b0, nb, h0, nh), vb = blocks.rows(v, v_buffer, b0, nb, h0, nh);
    const auto kbt = blocks.rows(k, k_buffer, b0, nb, h0, nh).transpose(1, 2);
    // Straight into the per-head result when it is wanted; else into a block buffer.
    auto scores = per_head && q.scalar_type() == weight_type
                            ? out.weights.view({b * h, tq, tk}).narrow(0, r0, rows)
                            : blocks.scratch(score_buffer, rows, tq, tk, q.options());
    // (Not baddbmm with beta = 0: LibTorch 1.13's small-matrix kernel still reads
    // the uninitialised output then.) The block is in cache for the scaling.
    at::bmm_out(scores, qb, kbt).mul_(scale);
    const auto w = block_softmax(scores, nb, nh, mask, bias, b0, h0);
    auto dst = context3.narrow(0, r0, rows);
    if (dropout.p > 0) {
      auto keep = dropout.record ? dropout.keep.view({b * h, tq, tk}).narrow(0, r0, rows)
                                 : blocks.scratch(keep_buffer, rows, tq, tk, q.options().dtype(torch::kBool));
      keep.bernoulli_(1.0 - dropout.p);
      const auto used = dropped(w, keep, dropout.p, blocks.scratch(used_buffer, rows, tq, tk, w.options()));
      at::bmm_out(dst, used.to(q.scalar_type()), vb);
    } else {
      at::bmm_out(dst, w.to(q.scalar_type()), vb);
    }
    const auto w4 = w.view({nb, nh, tq, tk});
    if (per_head) {
      if (!w.is_same(scores)) out.weights.narrow(0, b0, nb).narrow(1, h0, nh).copy_(w4);
    } else if (nh == h) {  // whole items: their mean over heads
      auto mean = out.weights.narrow(0, b0, nb);
      at::sum_out(mean, w4, c10::IntArrayRef{1}).div_(static_cast<double>(h));
    } else {  // a group of heads of item b0
      out.weights.narrow(0, b0, 1).add_(w4.sum(1), 1.0 / static_cast<double>(h));
    }
  });
  return out;
}

// Gradients of blocked_forward (float32 or float64 q, k, v) with respect to q, k and
// v, block by block: each block's weights are recomputed from q and k (in cache)
// instead of keeping all [B,H,Tq,Tk] of them from the forward pass, and every
// intermediate lives in block buffers reused across blocks. `grad_weights` is that
// of the returned weights (averaged or per head); either gradient may be undefined
// (zero).
std::array<torch::Tensor, 3> blocked_backward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                              const torch::Tensor& mask, const torch::Tensor& bias, double scale,
                                              bool per_head, std::int64_t block_bytes, const WeightDropout& dropout,
                                              const torch::Tensor& grad_context, const torch::Tensor& grad_weights,
                                              std::array<bool, 3> needed) {
  const auto b = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2), d = q.size(3), dv = v.size(3);
  std::array<torch::Tensor, 3> grads;
  if (needed[0]) grads[0] = torch::empty({b, h, tq, d}, q.options());
  if (needed[1]) grads[1] = torch::empty({b, h, tk, d}, k.options());
  if (needed[2]) grads[2] = grad_context.defined() ? torch::empty({b, h, tk, dv}, v.options()) : torch::zeros({b, h, tk, dv}, v.options());
  const bool scores_needed = needed[0] || needed[1];
  if (!scores_needed && !grad_context.defined()) return grads;
  const HeadBlocks blocks(b, h, head_bytes(q, k, v, 2), block_bytes);
  torch::Tensor q_buffer, k_buffer, v_buffer, g_buffer, score_buffer, grad_buffer, used_buffer, grad_score_buffer;
  blocks.each([&](std::int64_t b0, std::int64_t nb, std::int64_t h0, std::int64_t nh) {
    const auto r0 = b0 * h + h0, rows = nb * nh;
    const auto qb = blocks.rows(q, q_buffer, b0, nb, h0, nh), kb = blocks.rows(k, k_buffer, b0, nb, h0, nh);
    auto scores = blocks.scratch(score_buffer, rows, tq, tk, q.options());
    at::bmm_out(scores, qb, kb.transpose(1, 2)).mul_(scale);
    const auto w = block_softmax(scores, nb, nh, mask, bias, b0, h0);  // the forward's weights, bit for bit
    const auto keep = dropout.p > 0 ? dropout.keep.view({b * h, tq, tk}).narrow(0, r0, rows) : torch::Tensor();
    torch::Tensor gb;
    if (grad_context.defined()) {
      gb = blocks.rows(grad_context, g_buffer, b0, nb, h0, nh);
      if (needed[2]) {  // dV = U^T dC, U the weights used (after dropout)
        auto dst = grads[2].view({b * h, tk, dv}).narrow(0, r0, rows);
        const auto used =
            keep.defined() ? dropped(w, keep, dropout.p, blocks.scratch(used_buffer, rows, tq, tk, w.options())) : w;
        at::bmm_out(dst, used.transpose(1, 2), gb);
      }
    }
    if (!scores_needed) return;
    // dW = dC V^T (times keep / (1 - p) with dropout) plus the returned weights' own
    // gradient, then dS = W * (dW - rowsum(dW * W)).
    auto grad_w = blocks.scratch(grad_buffer, rows, tq, tk, q.options());
    if (grad_context.defined()) {
      at::bmm_out(grad_w, gb, blocks.rows(v, v_buffer, b0, nb, h0, nh).transpose(1, 2));
      if (keep.defined()) grad_w.mul_(keep).mul_(1.0 / (1.0 - dropout.p));
    } else {
      grad_w.zero_();
    }
    if (grad_weights.defined()) {
      auto grad_w4 = grad_w.view({nb, nh, tq, tk});
      if (per_head) {
        grad_w4.add_(grad_weights.narrow(0, b0, nb).narrow(1, h0, nh));
      } else {
        grad_w4.add_(grad_weights.narrow(0, b0, nb).unsqueeze(1), 1.0 / static_cast<double>(h));
      }
    }
    auto grad_scores = blocks.scratch(grad_score_buffer, rows, tq, tk, q.options());
    at::_softmax_backward_data_out(grad_scores, grad_w, w, -1, w.scalar_type()).mul_(scale);
    if (needed[0]) {  // dQ = dS K
      auto dst = grads[0].view({b * h, tq, d}).narrow(0, r0, rows);
      at::bmm_out(dst, grad_scores, kb);
    }
    if (needed[1]) {  // dK = dS^T Q
      auto dst = grads[1].view({b * h, tk, d}).narrow(0, r0, rows);
      at::bmm_out(dst, grad_scores.transpose(1, 2), qb);
    }
  });
  return grads;
}

// The mask and bias of a BlockedHeadAttention: not inputs of the autograd node
// (either may be undefined, which a node's inputs may not be; neither gets a gradient).
struct Constants {
  torch::Tensor mask, bias;
};

// Second-order gradients (backward with create_graph): the first-order gradients
// through LibTorch's ops on the same inputs, so that they have a graph themselves.
std::array<torch::Tensor, 3> differentiable_backward(const torch::autograd::variable_list& saved,
                                                     const torch::Tensor& keep, double p, double scale, bool per_head,
                                                     const torch::Tensor& grad_context,
                                                     const torch::Tensor& grad_weights, std::array<bool, 3> needed) {
  const auto &q = saved[0], &k = saved[1], &v = saved[2], &mask = saved[3], &bias = saved[4];
  auto scores = torch::matmul(q, k.transpose(2, 3)) * scale;
  if (bias.defined()) scores = scores + bias;
  const auto w = masked_softmax(scores, mask);
  const auto used = keep.defined() ? w * keep / (1.0 - p) : w;
  torch::autograd::variable_list outputs, grad_outputs, inputs;
  if (grad_context.defined()) outputs.push_back(torch::matmul(used, v)), grad_outputs.push_back(grad_context);
  if (grad_weights.defined()) outputs.push_back(per_head ? w : w.mean(1)), grad_outputs.push_back(grad_weights);
  for (int i = 0; i < 3; ++i) {
    if (needed[static_cast<size_t>(i)]) inputs.push_back(saved[static_cast<size_t>(i)]);
  }
  std::array<torch::Tensor, 3> result;
  if (outputs.empty() || inputs.empty()) return result;
  const auto grads = torch::autograd::grad(outputs, inputs, grad_outputs, /*retain_graph=*/true,
                                           /*create_graph=*/true, /*allow_unused=*/true);
  for (int i = 0, at = 0; i < 3; ++i) {
    if (needed[static_cast<size_t>(i)]) result[static_cast<size_t>(i)] = grads[static_cast<size_t>(at++)];
  }
  return result;
}

// attend_heads with gradients, for float32 and float64: the blocked forward pass,
// and blocked_backward (which recomputes the weights) for autograd. Saved: q, k, v
// (contiguous: attend_heads passes copies of strided views), the mask and bias (so
// changing any of them in place before backward is an error, as for LibTorch's ops),
// and with dropout which weights were kept, one byte each. The [B,H,Tq,Tk] weights
// are never kept. Unused outputs get no gradient (not materialised as zeros), so
// using only the context costs no [B,...,Tq,Tk] gradient.
struct BlockedHeadAttention : public torch::autograd::Function<BlockedHeadAttention> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q,
                                                const torch::Tensor& k, const torch::Tensor& v,
                                                const Constants& constants, double scale, bool per_head,
                                                std::int64_t block_bytes, double dropout_p) {
    ctx->set_materialize_grads(false);
    WeightDropout dropout{dropout_p, true, {}};
    auto out = blocked_forward(q, k, v, constants.mask, constants.bias, scale, per_head, block_bytes, dropout);
    ctx->save_for_backward({q, k, v, constants.mask, constants.bias});
    if (dropout.keep.defined()) ctx->saved_data["keep"] = dropout.keep;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["per_head"] = per_head;
    ctx->saved_data["block_bytes"] = block_bytes;
    ctx->saved_data["dropout"] = dropout_p;
    return {out.context, out.weights};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto keep_it = ctx->saved_data.find("keep");
    const WeightDropout dropout{ctx->saved_data["dropout"].toDouble(), true,
                                keep_it == ctx->saved_data.end() ? torch::Tensor() : keep_it->second.toTensor()};
    const double scale = ctx->saved_data["scale"].toDouble();
    const bool per_head = ctx->saved_data["per_head"].toBool();
    const std::array<bool, 3> needed{ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    torch::autograd::variable_list result(8);  // one per argument of forward
    if (!grads[0].defined() && !grads[1].defined()) return result;
    // Under create_graph the gradients must be differentiable again.
    const auto first =
        torch::GradMode::is_enabled()
            ? differentiable_backward(saved, dropout.keep, dropout.p, scale, per_head, grads[0], grads[1], needed)
            : blocked_backward(saved[0], saved[1], saved[2], saved[3], saved[4], scale, per_head,
                               ctx->saved_data["block_bytes"].toInt(), dropout, grads[0], grads[1], needed);
    std::copy(first.begin(), first.end(), result.begin());
    return result;
  }
};

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
  const auto b = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2);
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
  const double scale = options.scale().value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const bool per_head = options.weights() == HeadWeights::kPerHead;
  const bool dropout = options.training() && options.dropout() > 0.0;
  const bool record = torch::GradMode::is_enabled() &&
                      (q.requires_grad() || k.requires_grad() || v.requires_grad() ||
                       (bias.defined() && bias.requires_grad()));
  const bool exact_type = q.scalar_type() == torch::kFloat || q.scalar_type() == torch::kDouble;
  const double p = dropout ? options.dropout() : 0.0;
  if (!record) {
    WeightDropout drop{p, false, {}};
    return blocked_forward(q, k, v, mask, bias, scale, per_head, options.block_bytes(), drop);
  }
  if (exact_type && !(bias.defined() && bias.requires_grad())) {
    // Strided head views (of a packed projection) are copied once, by autograd-recorded
    // copies whose backward is the identity: the blocks of forward and backward are
    // then plain views, and second-order gradients still reach q, k and v.
    const auto outputs = BlockedHeadAttention::apply(q.contiguous(), k.contiguous(), v.contiguous(),
                                                     Constants{mask, bias}, scale, per_head, options.block_bytes(), p);
    return {outputs[0], outputs[1]};
  }

  // A bias that needs gradients, or reduced precision: the plain formulation, recorded
  // by autograd op by op (weights in at least float32, as masked_softmax gives them).
  auto out = scaled_dot_product_attention(q, k, v, mask, bias, options.dropout(), options.training(), scale);
  if (!per_head) out.weights = out.weights.mean(1);
  return out;
}

void KvCache::reorder(const torch::Tensor& index) {
  TORCH_CHECK(index.defined() && index.dim() == 1 && index.scalar_type() == torch::kLong,
              "KvCache::reorder: expected an int64 index [B'], got ",
              index.defined() ? c10::str(index.scalar_type(), " ", index.sizes()) : std::string("an undefined tensor"));
  if (!keys.defined()) return;
  const auto b = keys.size(0);
  if (index.numel() > 0) {
    const auto lowest = index.min().item<std::int64_t>(), highest = index.max().item<std::int64_t>();
    TORCH_CHECK(lowest >= 0 && highest < b, "KvCache::reorder: expected indices in [0, ", b,
                ") (the cached sequences), got values from ", lowest, " to ", highest);
  }
  const auto i = index.to(keys.device());
  keys = keys.index_select(0, i);
  values = values.index_select(0, i);
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
