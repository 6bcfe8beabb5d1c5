#include "attend/attention/additive.h"

#include <attend/attention/mask.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

// The tanh below finds round(x) by adding and subtracting 1.5 * 2^23, which
// value-changing floating-point optimisations would fold away.
#if defined(__FAST_MATH__)
#error "attention/src/additive.cpp must not be compiled with -ffast-math"
#endif

namespace attend::attention {

namespace {

// The decoding step without gradients, float32: scores s[b,n] = sum_h v[h]
// tanh(kp[b,n,h] + qp[b,h]) in 8-float vectors, fused with an online softmax and the
// context (decode_loop below), so each projected key and value is read once; in
// 16-float vectors where the CPU has AVX-512.
// LibTorch 1.13's CPU tanh is not vectorised (7.3 ms for 3.2 M floats here, against
// 2.1 ms for its sigmoid), hence a tanh of our own:
//
// tanh(a) for a = |x| clamped to 10 (float tanh is exactly 1 from 9.011 on)
// is m / (m + 2) with m = e^{2a} - 1, the sign put back afterwards. With
// n = round(2a / ln 2) and r = 2a - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in two so
// that n ln 2 is exact), m = 2^n (e^r - 1) + (2^n - 1), and e^r - 1 is its Taylor
// series to r^7 (relative error < 2e-8), evaluated in r / 2. For n = 0 (a < 0.17)
// this is r times a polynomial, so small arguments keep full relative precision down
// to subnormals.
// NaN stays NaN, -0 stays -0, +-inf give +-1. At most 2 ulp from tanh rounded from
// double (tested: detail::decoding_tanh); the 2 ulp come from rounding m + 2.
//
// The helpers below are always inlined into the loops, so passing 32- and 64-byte
// vectors by value never crosses an ABI boundary (-Wno-psabi in CMakeLists.txt).
// W floats per vector: 8 (AVX2, or two SSE halves) or 16 (AVX-512).
template <int W>
struct Lanes {
  typedef float Floats __attribute__((vector_size(4 * W)));
  typedef std::int32_t Ints __attribute__((vector_size(4 * W)));
  typedef std::uint32_t Bits __attribute__((vector_size(4 * W)));
};

template <int W>
__attribute__((always_inline)) inline typename Lanes<W>::Floats splat(float x) {
  return typename Lanes<W>::Floats{} + x;
}

template <int W>
__attribute__((always_inline)) inline typename Lanes<W>::Floats vector_tanh(typename Lanes<W>::Floats x) {
  using Floats = typename Lanes<W>::Floats;
  using Ints = typename Lanes<W>::Ints;
  using Bits = typename Lanes<W>::Bits;
  Ints bits_x;
  std::memcpy(&bits_x, &x, sizeof x);
  const Ints sign = bits_x & static_cast<std::int32_t>(0x80000000u);
  const Ints bits_a = bits_x ^ sign;
  Floats a;
  std::memcpy(&a, &bits_a, sizeof a);
  a = splat<W>(10.0f) < a ? splat<W>(10.0f) : a;  // one min; NaN passes through
  // n = round(2a / ln 2) in [0, 29] by adding 1.5 * 2^23, which leaves n in the low
  // mantissa bits of `shifted` (rounding to nearest); NaN stays NaN in nf and s.
  const Floats shifted = a * (2 * 1.44269504088896341f) + 12582912.0f;
  const Floats nf = shifted - 12582912.0f;
  // s = r / 2 = a - n ln2 / 2, with the halves of the split ln 2 (exact).
  const Floats s = (a - nf * (0.693145751953125f / 2)) - nf * (1.428606820309417232e-6f / 2);
  // e^r - 1 = r sum_k r^k / (k+1)!, evaluated in s = r / 2 with each coefficient
  // times 2^(k+1): every step is the r-form's scaled by a power of two, so the result
  // is bit for bit the same, without forming r = 2a - n ln 2.
  Floats p = splat<W>((1.0f / 5040) * 128);
  p = p * s + (1.0f / 720) * 64;
  p = p * s + (1.0f / 120) * 32;
  p = p * s + (1.0f / 24) * 16;
  p = p * s + (1.0f / 6) * 8;
  p = p * s + 2.0f;
  p = p * s + 2.0f;
  const Floats expm1_r = p * s;
  // 2^n: n's bits shifted into the exponent field (1.5 * 2^23 has zeros in the 9
  // low bits that the shift keeps), plus the bias.
  Bits bits_two_n;
  std::memcpy(&bits_two_n, &shifted, sizeof bits_two_n);
  bits_two_n = (bits_two_n << 23) + (127u << 23);
  Floats two_n;
  std::memcpy(&two_n, &bits_two_n, sizeof two_n);
  const Floats m = two_n * expm1_r + (two_n - 1.0f);
  const Floats t = m / (m + 2.0f);
  Ints bits_t;
  std::memcpy(&bits_t, &t, sizeof t);
  bits_t ^= sign;
  Floats result;
  std::memcpy(&result, &bits_t, sizeof result);
  return result;
}

// out[i] += w * row[i] over d floats.
template <int W>
__attribute__((always_inline)) inline void add_scaled(float* out, float w, const float* row, std::int64_t d) {
  using Floats = typename Lanes<W>::Floats;
  std::int64_t i = 0;
  for (; i + W <= d; i += W) {
    Floats o, x;
    std::memcpy(&o, out + i, sizeof o);
    std::memcpy(&x, row + i, sizeof x);
    o += x * w;
    std::memcpy(out + i, &o, sizeof o);
  }
  for (; i < d; ++i) out[i] += row[i] * w;
}

// Software prefetch of a value row, spread over the vector steps of a score:
// `lines_per_step` 64-byte lines per step from `begin` until `end`.
struct Ahead {
  const char* begin = nullptr;
  const char* end = nullptr;
  std::int64_t lines_per_step = 0;
};

// The previous row's weighted values, still to be added into the context:
// ctx += w * row over dv floats, `per_step` vectors per step of a score.
struct Pending {
  float* ctx = nullptr;
  const float* row = nullptr;
  float w = 0;
  std::int64_t dv = 0, per_step = 0;
};

// One (b, n) row: sum_h v[h] tanh(k[h] + q[h]). Meanwhile it adds the pending value
// row into the context a few vectors per step, so that those loads from memory wait
// in the shadow of the tanh arithmetic instead of after it, and prefetches `ahead`.
template <int W>
__attribute__((always_inline)) inline float row_score(const float* k, const float* q, const float* v, std::int64_t h,
                                                      const Pending& pending = {}, Ahead ahead = {}) {
  using Floats = typename Lanes<W>::Floats;
  Floats acc{};
  const char* line = ahead.begin;
  const std::int64_t whole = pending.row != nullptr ? pending.dv / W * W : 0;
  std::int64_t d = 0;
  std::int64_t i = 0;
  for (; i + W <= h; i += W) {
    for (std::int64_t l = 0; l < ahead.lines_per_step && line < ahead.end; ++l, line += 64) __builtin_prefetch(line);
    const std::int64_t part = std::min(pending.per_step * W, whole - d);  // whole vectors
    add_scaled<W>(pending.ctx + d, pending.w, pending.row + d, part);
    d += part;
    Floats kx, qx, vx;
    std::memcpy(&kx, k + i, sizeof kx);
    std::memcpy(&qx, q + i, sizeof qx);
    std::memcpy(&vx, v + i, sizeof vx);
    acc += vx * vector_tanh<W>(kx + qx);
  }
  if (i < h) {  // the tail, padded with zeros (v = 0 there)
    Floats kx{}, qx{}, vx{};
    std::memcpy(&kx, k + i, (h - i) * sizeof(float));
    std::memcpy(&qx, q + i, (h - i) * sizeof(float));
    std::memcpy(&vx, v + i, (h - i) * sizeof(float));
    acc += vx * vector_tanh<W>(kx + qx);
  }
  for (; line < ahead.end; line += 64) __builtin_prefetch(line);  // short rows: the rest
  if (pending.row != nullptr) add_scaled<W>(pending.ctx + d, pending.w, pending.row + d, pending.dv - d);
  float total = 0;
  for (int l = 0; l < W; ++l) total += acc[l];
  return total;
}

// One decoding step: T queries per item (one for a plain step, k for k beams, T for a
// teacher-forced sequence) against the item's keys and values. Strides are in
// elements; every row (the last dimension) is contiguous, nothing else need be, so
// strided views (e.g. of a batch expanded over beams) are read in place.
struct DecodeStep {
  const float* kp;       // [B,N,H]
  const float* qp;       // [B,T,H]
  const float* v;        // [H], contiguous
  const float* values;   // [B,N,Dv]
  const bool* mask;      // [B,T,N] (mask_t = 0 for one mask per item) or null
  float* weights;        // [B,T,N], contiguous
  float* context;        // [B,T,Dv], contiguous
  std::int64_t b, t, n, h, dv;
  std::int64_t kp_b, kp_n, qp_b, qp_t, values_b, values_n, mask_b, mask_t, mask_n;
};

// The whole step in one pass per (item, query) pair, as an online softmax: each
// allowed row's score, and its weighted value row added into the context while the
// next row's score is computed (software pipelining: the value loads from memory then
// wait beside the tanh arithmetic, not after it); the context is rescaled whenever the
// running maximum grows. Each projected key and value is read once per query.
// Weights are normalised at the end; rows with nothing allowed (or only -inf scores)
// give zeros, as masked_softmax does.
// Pairs [begin, end) of the B*T (item, query) pairs.
template <int W>
__attribute__((always_inline)) inline void decode_loop(const DecodeStep& s, std::int64_t begin, std::int64_t end) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  // A value row spans at most dv * 4 / 64 + 2 cache lines (when not aligned to one);
  // spread them over the score's whole vector steps (integer divisions once, not per step).
  const std::int64_t row_bytes = s.dv * static_cast<std::int64_t>(sizeof(float));
  const std::int64_t steps = std::max<std::int64_t>(1, s.h / W);
  const std::int64_t lines_per_step = (row_bytes / 64 + 2 + steps - 1) / steps;
  const std::int64_t vectors_per_step = (s.dv / W + steps - 1) / steps;
  for (std::int64_t pair = begin; pair < end; ++pair) {
    const std::int64_t i = pair / s.t, step = pair % s.t;
    float* w = s.weights + pair * s.n;
    float* ctx = s.context + pair * s.dv;
    const float* keys = s.kp + i * s.kp_b;
    const float* values = s.values + i * s.values_b;
    const float* query = s.qp + i * s.qp_b + step * s.qp_t;
    const bool* mask = s.mask != nullptr ? s.mask + i * s.mask_b + step * s.mask_t : nullptr;
    // After the last row: the first value row of the next pair's item.
    const float* next_pair = pair + 1 < s.b * s.t ? s.values + (pair + 1) / s.t * s.values_b : nullptr;
    std::fill(ctx, ctx + s.dv, 0.0f);
    float top = minus_inf;
    double total = 0;  // a float sum of N terms would drift by N/2 ulp
    Pending pending;   // the last scored row's values, added during the next score
    for (std::int64_t j = 0; j < s.n; ++j) {
      if (mask != nullptr && !mask[j * s.mask_n]) {
        w[j] = minus_inf;
        continue;
      }
      Ahead ahead;  // the next value row, from the start of its first cache line
      if (const float* next = j + 1 < s.n ? values + (j + 1) * s.values_n : next_pair; next != nullptr) {
        const auto at = reinterpret_cast<std::uintptr_t>(next);
        ahead = {reinterpret_cast<const char*>(at & ~std::uintptr_t{63}),
                 reinterpret_cast<const char*>(at + static_cast<std::uintptr_t>(row_bytes)), lines_per_step};
      }
      const float score = row_score<W>(keys + j * s.kp_n, query, s.v, s.h, pending, ahead);
      pending.row = nullptr;
      w[j] = score;
      if (score == minus_inf) continue;
      float scale = 1;
      if (score > top) {  // (false for NaN, which then spreads through total)
        scale = top == minus_inf ? 0.0f : std::exp(top - score);
        top = score;
      }
      const float e = std::exp(score - top);
      total = total * scale + e;
      // The running maximum grew (a few times per item): rescale the context now, the
      // pending rows having been added, so the pass fused with the next score is a
      // plain multiply-add.
      if (scale != 1) {
        for (std::int64_t d = 0; d < s.dv; ++d) ctx[d] *= scale;
      }
      pending = {ctx, values + j * s.values_n, e, s.dv, vectors_per_step};
    }
    if (pending.row != nullptr) add_scaled<W>(ctx, pending.w, pending.row, s.dv);
    if (total == 0) {  // nothing allowed, or only -inf scores (a NaN makes total NaN)
      std::fill(w, w + s.n, 0.0f);
      continue;
    }
    const auto inverse = static_cast<float>(1 / total);
    for (std::int64_t j = 0; j < s.n; ++j) w[j] = std::exp(w[j] - top) * inverse;
    for (std::int64_t d = 0; d < s.dv; ++d) ctx[d] *= inverse;
  }
}

// out = tanh(x) over n floats, the tail padded.
template <int W>
__attribute__((always_inline)) inline void tanh_loop(const float* x, float* out, std::int64_t n) {
  using Floats = typename Lanes<W>::Floats;
  for (std::int64_t i = 0; i < n; i += W) {
    const auto count = std::min<std::int64_t>(W, n - i);
    Floats v{};
    std::memcpy(&v, x + i, count * sizeof(float));
    const Floats t = vector_tanh<W>(v);
    std::memcpy(out + i, &t, count * sizeof(float));
  }
}

// The same loops compiled three times: for AVX-512 (16 floats), for AVX2 with FMA
// (8 floats), and for the baseline of the target (4 floats, SSE2 on x86-64). Chosen
// once, by what the CPU has.
struct Kernels {
  const char* isa;
  void (*decode)(const DecodeStep&, std::int64_t, std::int64_t);
  void (*tanh)(const float*, float*, std::int64_t);
};

void decode_baseline(const DecodeStep& s, std::int64_t begin, std::int64_t end) { decode_loop<4>(s, begin, end); }
void tanh_baseline(const float* x, float* out, std::int64_t n) { tanh_loop<4>(x, out, n); }

#if defined(__x86_64__) || defined(__i386__)
#define ATTEND_AVX2 __attribute__((target("avx2,fma")))
#define ATTEND_AVX512 __attribute__((target("avx512f,avx2,fma")))
ATTEND_AVX2 void decode_avx2(const DecodeStep& s, std::int64_t begin, std::int64_t end) {
  decode_loop<8>(s, begin, end);
}
ATTEND_AVX2 void tanh_avx2(const float* x, float* out, std::int64_t n) { tanh_loop<8>(x, out, n); }
ATTEND_AVX512 void decode_avx512(const DecodeStep& s, std::int64_t begin, std::int64_t end) {
  decode_loop<16>(s, begin, end);
}
ATTEND_AVX512 void tanh_avx512(const float* x, float* out, std::int64_t n) { tanh_loop<16>(x, out, n); }
#undef ATTEND_AVX2
#undef ATTEND_AVX512
#endif

Kernels choose_kernels() {
  const Kernels baseline{"baseline", decode_baseline, tanh_baseline};
#if defined(__x86_64__) || defined(__i386__)
  // ATEN_CPU_CAPABILITY (default, avx2, avx512) caps LibTorch's kernels; ours follow it.
  const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
  const std::string_view cap = capability != nullptr ? capability : "";
  if (cap == "default" || !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return baseline;
  if (cap == "avx2" || !__builtin_cpu_supports("avx512f")) return {"avx2", decode_avx2, tanh_avx2};
  return {"avx512", decode_avx512, tanh_avx512};
#else
  return baseline;
#endif
}

const Kernels& kernels() {
  static const Kernels chosen = choose_kernels();
  return chosen;
}

// (Item, query) pairs are independent: split with at::parallel_for. (LibTorch 1.13's
// OpenMP backend is inline in its headers, so this runs in parallel only because
// attend is compiled with -fopenmp; see CMakeLists.txt.)
void decode_step(const DecodeStep& s) {
  at::parallel_for(0, s.b * s.t, 1, [&](std::int64_t begin, std::int64_t end) { kernels().decode(s, begin, end); });
}

std::atomic<std::int64_t> decoding_copies{0};

}  // namespace

std::string additive_decoding_isa() { return kernels().isa; }

namespace detail {

void decoding_tanh(const float* x, float* out, std::int64_t n) { kernels().tanh(x, out, n); }

std::int64_t decoding_input_copies() { return decoding_copies.load(); }

}  // namespace detail

Attended additive_attention(const torch::Tensor& query_projection, const torch::Tensor& key_projection,
                            const torch::Tensor& v, const torch::Tensor& values, const torch::Tensor& mask) {
  TORCH_CHECK(query_projection.defined() && key_projection.defined() && v.defined() && values.defined() &&
                  (query_projection.dim() == 2 || query_projection.dim() == 3) && key_projection.dim() == 3 &&
                  values.dim() == 3 && key_projection.size(0) == query_projection.size(0) &&
                  key_projection.size(2) == query_projection.size(-1) && values.size(0) == key_projection.size(0) &&
                  values.size(1) == key_projection.size(1) && v.dim() == 1 && v.size(0) == query_projection.size(-1),
              "additive_attention: expected query projection [B,H] or [B,T,H], key projection [B,N,H], v [H], "
              "values [B,N,Dv]; got ",
              query_projection.sizes(), ", ", key_projection.sizes(), ", ", v.sizes(), ", ", values.sizes());
  const bool steps = query_projection.dim() == 3;
  const auto b = key_projection.size(0), n = key_projection.size(1), h = key_projection.size(2);
  const auto t = steps ? query_projection.size(1) : 1, dv = values.size(2);
  TORCH_CHECK(!mask.defined() || (mask.scalar_type() == torch::kBool &&
                                  ((mask.dim() == 2 && mask.size(0) == b && mask.size(1) == n) ||
                                   (steps && mask.dim() == 3 && mask.size(0) == b && mask.size(1) == t &&
                                    mask.size(2) == n))),
              "additive_attention: expected a bool mask [B,N] = [", b, ",", n, "]",
              steps ? c10::str(" or [B,T,N] = [", b, ",", t, ",", n, "]") : std::string(), ", got ",
              mask.defined() ? c10::str(mask.scalar_type(), " ", mask.sizes()) : std::string());
  const bool record = torch::GradMode::is_enabled() && (query_projection.requires_grad() ||
                                                       key_projection.requires_grad() || v.requires_grad() ||
                                                       values.requires_grad());
  auto cpu_float = [](const torch::Tensor& x) {
    return x.device().is_cpu() && x.layout() == torch::kStrided && x.scalar_type() == torch::kFloat;
  };
  Attended out;
  // Without gradients (decoding), float32 on the CPU: the fused decode_step above.
  if (!record && cpu_float(query_projection) && cpu_float(key_projection) && cpu_float(v) && cpu_float(values) &&
      (!mask.defined() || (mask.device().is_cpu() && mask.layout() == torch::kStrided))) {
    // Rows must be contiguous; any other strides are read in place (prepared,
    // sliced or expanded inputs are not copied at every step).
    auto rows = [](const torch::Tensor& x) {
      if (x.size(-1) <= 1 || x.stride(-1) == 1) return x;
      decoding_copies.fetch_add(1, std::memory_order_relaxed);
      return x.contiguous();
    };
    const auto kp = rows(key_projection), qp = rows(query_projection), vv = rows(v), vals = rows(values);
    out.weights = torch::empty(steps ? std::vector<std::int64_t>{b, t, n} : std::vector<std::int64_t>{b, n},
                               kp.options());
    out.context = torch::empty(steps ? std::vector<std::int64_t>{b, t, dv} : std::vector<std::int64_t>{b, dv},
                               vals.options());
    const bool per_step_mask = mask.defined() && mask.dim() == 3;
    DecodeStep step{kp.data_ptr<float>(), qp.data_ptr<float>(), vv.data_ptr<float>(), vals.data_ptr<float>(),
                    mask.defined() ? mask.data_ptr<bool>() : nullptr, out.weights.data_ptr<float>(),
                    out.context.data_ptr<float>(), b, t, n, h, dv,
                    kp.stride(0), kp.stride(1), qp.stride(0), steps ? qp.stride(1) : 0, vals.stride(0),
                    vals.stride(1), 0, 0, 0};
    if (mask.defined()) {
      step.mask_b = mask.stride(0);
      step.mask_t = per_step_mask ? mask.stride(1) : 0;
      step.mask_n = mask.stride(mask.dim() - 1);
    }
    decode_step(step);
    return out;
  }
  // With gradients, and for other dtypes and devices: LibTorch's ops, all T queries at
  // once ([B,T,N,H] tanh arguments).
  const auto qp = steps ? query_projection : query_projection.unsqueeze(1);                    // [B,T,H]
  const auto scores = torch::matmul((key_projection.unsqueeze(1) + qp.unsqueeze(2)).tanh_(), v);  // [B,T,N]
  out.weights = masked_softmax(scores, mask.defined() && mask.dim() == 2 ? mask.unsqueeze(1) : mask);
  out.context = torch::matmul(out.weights.to(values.scalar_type()), values);  // [B,T,Dv]
  if (!steps) {
    out.weights = out.weights.squeeze(1);
    out.context = out.context.squeeze(1);
  }
  return out;
}

AdditiveAttentionImpl::AdditiveAttentionImpl(const AdditiveAttentionOptions& options_) : options(options_) {
  reset();
}

void AdditiveAttentionImpl::reset() {
  TORCH_CHECK(options.query_size() >= 1 && options.key_size() >= 1 && options.hidden_size() >= 1,
              "AdditiveAttention: sizes must be >= 1");
  query_proj = register_module("query_proj",
                               torch::nn::Linear(torch::nn::LinearOptions(options.query_size(), options.hidden_size()).bias(false)));
  key_proj = register_module("key_proj", torch::nn::Linear(options.key_size(), options.hidden_size()));
  const double bound = 1.0 / std::sqrt(static_cast<double>(options.hidden_size()));
  v = register_parameter("v", torch::empty({options.hidden_size()}).uniform_(-bound, bound));
}

void AdditiveAttentionImpl::pretty_print(std::ostream& stream) const {
  stream << "attend::attention::AdditiveAttention(query_size=" << options.query_size()
         << ", key_size=" << options.key_size() << ", hidden_size=" << options.hidden_size() << ")";
}

torch::Tensor AdditiveAttentionImpl::project_keys(const torch::Tensor& keys) {
  TORCH_CHECK(keys.dim() == 3 && keys.size(2) == options.key_size(), "AdditiveAttention: expected keys [B,N,",
              options.key_size(), "], got ", keys.sizes());
  return key_proj(keys);
}

Attended AdditiveAttentionImpl::forward(const torch::Tensor& query, const torch::Tensor& keys,
                                        const torch::Tensor& values, const torch::Tensor& mask) {
  return forward_projected(query, project_keys(keys), values, mask);
}

Attended AdditiveAttentionImpl::forward_projected(const torch::Tensor& query, const torch::Tensor& projected_keys,
                                                  const torch::Tensor& values, const torch::Tensor& mask) {
  TORCH_CHECK((query.dim() == 2 || query.dim() == 3) && query.size(-1) == options.query_size(),
              "AdditiveAttention: expected query [B,", options.query_size(), "] or [B,T,", options.query_size(),
              "], got ", query.sizes());
  return additive_attention(query_proj(query), projected_keys, v, values, mask);
}

}  // namespace attend::attention
