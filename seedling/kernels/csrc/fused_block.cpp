// One DiT block of model/dit.py as a single C++ call (fp32, CPU, inference): the block's own
// elementwise work fused into three loops, the four linear layers as oneDNN brgemm micro-kernel
// tiles over panel-packed weights (panel_linear), attention by brgemm tiles too (tile_attention).
//
// At the 64 output tokens of a cached step, a Python block spends as long dispatching ~40 small
// operators as it does multiplying. Here a block is ten steps: two LayerNorm+modulation loops,
// qkv, one QK-norm + 3D-RoPE + layout loop (which writes K and V straight into the cache's K/V
// buffers), attention, proj, one gated-residual loop, fc1+GELU, fc2, one gated-residual loop.
// The same function runs every path of the model (cached step, full uncached step, context
// encoding), so the cache's speedup is measured between equals. Built and loaded by
// kernels/fused.py; model/dit.py falls back to its Python blocks where this is unavailable.
//
// Semantics (must match DiTBlock in model/dit.py up to float rounding):
//   h = LayerNorm(x) * scale1p + shift            (mods chunks 0, 1; scale1p already holds 1 + scale)
//   q, k = RoPE(RMSNorm(q) * qw), RoPE(RMSNorm(k) * kw); v
//   x = x + gate_attn * proj(attention(q, k, v))  (chunk 2)
//   h = LayerNorm(x) * scale1p + shift            (chunks 3, 4)
//   x = x + gate_mlp * fc2(gelu_tanh(fc1(h)))     (chunk 5)
// Rows (tokens) with index < n_ctx take the context modulation `mc`, the others `mo`.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

// exp(x) for float, vectorisable (Cephes' expf: 2^n * p(r), r = x - n ln2 in two parts, a degree-6
// polynomial; relative error ~1e-7 on [-87, 88]).
inline float exp_approx(float x) {
  x = std::min(88.f, std::max(-87.f, x));
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// GELU, tanh approximation: 0.5 v (1 + tanh(u)) = v * sigmoid(2u), u = sqrt(2/pi) (v + 0.044715 v^3)
inline float gelu_tanh(float v) {
  const float u2 = 1.5957691216057308f * (v + 0.044715f * v * v * v);
  return v / (1.f + exp_approx(-u2));
}

// Rows per tile of panel_linear (the panel width, nb, is the packed weight's last dimension: pack_panels).
constexpr int64_t kRowBlock = 64;

// y = x W^T + b (then GELU if asked). x: (rows, K) contiguous; wp: W packed as (N / nb, K, nb)
// panels (panel j holds output columns j*nb .. j*nb+nb-1, row-major over K: contiguous tiles, no
// 4 KB strides between the rows a tile reads). Every (64-row, nb-column) tile is one oneDNN
// brgemm micro-kernel call (at::native::cpublas, JIT-compiled once per shape) plus the bias/GELU
// epilogue while the tile is in cache; tiles spread over the threads. Unlike
// mkldnn::_linear_pointwise it does no per-call primitive lookup (~13 us each on this machine),
// which at the 64 rows of a cached step is 10-30% of a product (bench/bench_panel_linear.py:
// 1.19-1.50x faster at 64 rows); at 700 rows it runs at oneDNN's speed (0.99-1.02x).
at::Tensor panel_linear(const at::Tensor& x, const at::Tensor& wp, const at::Tensor& b, bool gelu) {
  const int64_t K = x.size(-1), rows = x.numel() / K, nN = wp.size(0), nb = wp.size(2), N = nN * nb;
  TORCH_CHECK(wp.size(1) == K && b.numel() == N, "seedling fused block: packed weight does not fit the input");
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor y = at::empty(shape, x.options());
  const float* X = x.data_ptr<float>();
  const float* W = wp.data_ptr<float>();
  const float* bias = b.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  const int64_t nM = (rows + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, nM * nN, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t jn = t / nM, im = t % nM;
      const int64_t m0 = im * kRowBlock, n0 = jn * nb, mm = std::min(kRowBlock, rows - m0);
      float* C = Y + m0 * N + n0;
      at::native::cpublas::brgemm(mm, nb, K, K, nb, N, false, X + m0 * K, W + jn * K * nb, C, false);
      const float* bb = bias + n0;
      for (int64_t i = 0; i < mm; ++i) {
        float* c = C + i * N;
        if (gelu) {
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) c[j] = gelu_tanh(c[j] + bb[j]);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) c[j] += bb[j];
        }
      }
    }
  });
  return y;
}

// Modulations: (B, 6, D) with the last dimension contiguous (a slice of the model's (B, depth, 6, D)).
struct Mods {
  const float* ctx;
  const float* out;
  int64_t ctx_sb, ctx_sc, out_sb, out_sc, n_ctx;
  const float* row(int64_t b, int64_t l, int chunk) const {
    return l < n_ctx ? ctx + b * ctx_sb + chunk * ctx_sc : out + b * out_sb + chunk * out_sc;
  }
};

// Row blocks for at::parallel_for: small token counts stay on one thread (a parallel region costs
// more than the loop).
inline int64_t grain(int64_t D) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)); }

at::Tensor ln_modulate(const at::Tensor& x, const Mods& m, int shift_chunk, float eps) {
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
  at::Tensor out = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * L, grain(D), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / L, l = r % L;
      const float* xr = xp + r * D;
      float* o = op + r * D;
      const float* shift = m.row(b, l, shift_chunk);
      const float* scale = m.row(b, l, shift_chunk + 1);
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t d = 0; d < D; ++d) s += xr[d];
      const float mean = s / D;
      float v = 0.f;
#pragma omp simd reduction(+ : v)
      for (int64_t d = 0; d < D; ++d) {
        const float c = xr[d] - mean;
        v += c * c;
      }
      const float rstd = 1.f / std::sqrt(v / D + eps);
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) o[d] = shift[d] + (xr[d] - mean) * rstd * scale[d];
    }
  });
  return out;
}

// x + gate * y as a new tensor
at::Tensor gated_add(const at::Tensor& x, const at::Tensor& y, const Mods& m, int gate_chunk) {
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
  at::Tensor out = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* yp = y.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B * L, grain(D), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / L, l = r % L;
      const float* g = m.row(b, l, gate_chunk);
      const float* xr = xp + r * D;
      const float* yr = yp + r * D;
      float* o = op + r * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) o[d] = xr[d] + g[d] * yr[d];
    }
  });
  return out;
}

// qkv: (B, L, 3, H, Dh) contiguous. Writes q, k, v as (B, H, L, Dh) into the given tensors (any
// strides with Dh contiguous: k and v may be the tail of the cache's K/V buffers). q and k are
// RMS-normalised over Dh, scaled by qw / kw, then rotated pairwise (channels 2i, 2i+1) by the
// angle table of their token (cos, sin: (L, Dh/2)).
void qk_norm_rope(const at::Tensor& qkv, const at::Tensor& qw, const at::Tensor& kw, const at::Tensor& cos,
                  const at::Tensor& sin, float eps, at::Tensor& q, at::Tensor& k, at::Tensor& v) {
  const int64_t B = qkv.size(0), L = qkv.size(1), H = qkv.size(3), Dh = qkv.size(4), P = Dh / 2;
  const float* src = qkv.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  const float* w[2] = {qw.data_ptr<float>(), kw.data_ptr<float>()};
  at::Tensor* dst[3] = {&q, &k, &v};
  at::parallel_for(0, B * L, std::max<int64_t>(1, grain(3 * H * Dh) * 4), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / L, l = r % L;
      const float* c = cp + l * P;
      const float* s = sp + l * P;
      for (int j = 0; j < 3; ++j) {
        const at::Tensor& T = *dst[j];
        float* base = T.data_ptr<float>() + b * T.stride(0) + l * T.stride(2);
        for (int64_t h = 0; h < H; ++h) {
          const float* x = src + ((r * 3 + j) * H + h) * Dh;
          float* o = base + h * T.stride(1);
          if (j == 2) {
#pragma omp simd
            for (int64_t d = 0; d < Dh; ++d) o[d] = x[d];
            continue;
          }
          float ss = 0.f;
#pragma omp simd reduction(+ : ss)
          for (int64_t d = 0; d < Dh; ++d) ss += x[d] * x[d];
          const float rr = 1.f / std::sqrt(ss / Dh + eps);
          const float* ww = w[j];
          for (int64_t i = 0; i < P; ++i) {
            const float a = x[2 * i] * rr * ww[2 * i], bb = x[2 * i + 1] * rr * ww[2 * i + 1];
            o[2 * i] = a * c[i] - bb * s[i];
            o[2 * i + 1] = a * s[i] + bb * c[i];
          }
        }
      }
    }
  });
}

// Beyond kTileAttentionKeys keys (images far larger than the 128x128 default) attention goes to
// ATen's CPU flash kernel: tile_attention's per-task buffers grow with the key count.
constexpr int64_t kTileAttentionKeys = 4096;

at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return std::get<0>(at::_scaled_dot_product_flash_attention_for_cpu(q, k, v));
}

// Attention by brgemm tiles, the output written straight in the (B, L, H, Dh) layout the
// projection reads. q: (B, H, Lq, Dh) contiguous; k, v: (B, H, >= Lk, Dh) with Dh contiguous
// (the cache's buffers or views of them). Query rows [0, n_ctx) attend to keys [0, n_ctx), the
// others to keys [0, Lk) (n_ctx = 0: every row to every key) -- the structured attention of the
// "full" mode and plain attention otherwise, without materialising a mask. Each task is one (batch,
// head, up to 64 query rows): K^T of its key range into a thread-local buffer, S = Q K^T (one
// brgemm), a softmax over S's rows, O = P V (one brgemm) into the output rows. Memory per task is
// O(64 x keys); no (L, L) matrix exists. On the 2-core machine this project is measured on it runs
// 1.10-1.29x faster than the plain product (two batched GEMMs around a materialised softmax) and
// 1.13-1.55x faster than ATen's flash kernel at every shape of a 128x128 call
// (bench/bench_attention.py); the same kernel runs every path (cached step, uncached step, context).
constexpr int64_t kQueryBlock = 64;

at::Tensor tile_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t Lk, int64_t n_ctx) {
  const int64_t B = q.size(0), H = q.size(1), Lq = q.size(2), Dh = q.size(3);
  at::Tensor out = at::empty({B, Lq, H, Dh}, q.options());
  struct Block {
    int64_t q0, rows, keys;
  };
  std::vector<Block> blocks;
  const int64_t split = n_ctx > 0 && n_ctx < Lq ? n_ctx : 0;
  for (int64_t q0 = 0; q0 < split; q0 += kQueryBlock) blocks.push_back({q0, std::min(kQueryBlock, split - q0), split});
  for (int64_t q0 = split; q0 < Lq; q0 += kQueryBlock) blocks.push_back({q0, std::min(kQueryBlock, Lq - q0), Lk});
  const int64_t nb = (int64_t)blocks.size();
  const float scale = 1.f / std::sqrt((float)Dh);
  const float* Q = q.data_ptr<float>();
  const float* K = k.data_ptr<float>();
  const float* V = v.data_ptr<float>();
  float* O = out.data_ptr<float>();
  const int64_t ks0 = k.stride(0), ks1 = k.stride(1), ks2 = k.stride(2);
  const int64_t vs0 = v.stride(0), vs1 = v.stride(1), vs2 = v.stride(2);
  at::parallel_for(0, B * H * nb, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> kt, sc;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t bh = t / nb, b = bh / H, h = bh % H;
      const Block& blk = blocks[t % nb];
      const int64_t nk = blk.keys, mq = blk.rows;
      kt.resize(Dh * nk);
      sc.resize(mq * nk);
      const float* kp = K + b * ks0 + h * ks1;
      for (int64_t j = 0; j < nk; ++j) {  // K^T: (Dh, nk)
        const float* kr = kp + j * ks2;
        for (int64_t d = 0; d < Dh; ++d) kt[d * nk + j] = kr[d];
      }
      const float* qp = Q + ((b * H + h) * Lq + blk.q0) * Dh;
      at::native::cpublas::brgemm(mq, nk, Dh, Dh, nk, nk, false, qp, kt.data(), sc.data(), false);
      for (int64_t i = 0; i < mq; ++i) {
        float* s = sc.data() + i * nk;
        float mx = -INFINITY;
        for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, s[j]);
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < nk; ++j) {
          const float e = exp_approx((s[j] - mx) * scale);
          s[j] = e;
          sum += e;
        }
        const float inv = 1.f / sum;
#pragma omp simd
        for (int64_t j = 0; j < nk; ++j) s[j] *= inv;
      }
      float* op = O + ((b * Lq + blk.q0) * H + h) * Dh;
      at::native::cpublas::brgemm(mq, Dh, nk, nk, vs2, H * Dh, false, sc.data(), V + b * vs0 + h * vs1, op, false);
    }
  });
  return out;
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "seedling fused block: ", what); }

// mode "outputs": x holds output tokens only (a cached step); their K/V are written into the last
//   L positions of kbuf/vbuf (the cache's buffers, context K/V in front) and they attend to all of it.
// mode "full": x = [context ; outputs] with n_ctx context rows (context rows modulated by mc);
//   context attends to context, outputs to everything (the "split" attention of kernels/attention.py).
// mode "context": x holds context tokens only (mo is their modulation); returns [x, k, v]. Given
//   kbuf/vbuf, K and V are written into their first L positions (and returned as views of them).
// mode "context_kv": the same, but only K and V are computed (the last block of the context).
std::vector<at::Tensor> block(const at::Tensor& x, const at::Tensor& mo, const std::optional<at::Tensor>& mc_opt,
                              int64_t n_ctx, at::TensorList w, const at::Tensor& cos, const at::Tensor& sin,
                              const std::optional<at::Tensor>& kbuf, const std::optional<at::Tensor>& vbuf,
                              c10::string_view mode, double eps_ln, double eps_rms) {
  const bool outputs = mode == "outputs", full = mode == "full", context = mode == "context",
             kv_only = mode == "context_kv";
  check(outputs || full || context || kv_only, "mode must be outputs, full, context or context_kv");
  check(w.size() == 10, "expects 10 weights: qkv w, b, q_norm, k_norm, proj w, b, fc1 w, b, fc2 w, b");
  for (int i : {0, 4, 6, 8})
    check(w[i].dim() == 3 && w[i].is_contiguous() && w[i].scalar_type() == at::kFloat,
          "linear weights must be fp32 (N / nb, K, nb) panels (kernels/fused.py pack_panels)");
  check(x.dim() == 3 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.device().is_cpu(),
        "x must be a contiguous fp32 CPU (B, L, D) tensor");
  const at::Tensor& mc = mc_opt.has_value() ? *mc_opt : mo;
  for (const at::Tensor* t : {&mo, &mc})
    check(t->dim() == 3 && t->size(1) == 6 && t->stride(2) == 1 && t->scalar_type() == at::kFloat,
          "modulations must be fp32 (B, 6, D) with D contiguous");
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2), Dh = w[2].size(0), H = D / Dh;
  check(H * Dh == D && Dh % 2 == 0, "width must be heads x an even head size");
  check(cos.is_contiguous() && sin.is_contiguous() && cos.size(0) == L && cos.size(1) == Dh / 2,
        "cos/sin must be contiguous (L, head_dim/2) tables");
  const int64_t rows_ctx = full ? n_ctx : 0;
  Mods m{mc.data_ptr<float>(), mo.data_ptr<float>(), mc.stride(0), mc.stride(1), mo.stride(0), mo.stride(1), rows_ctx};
  const float e_ln = (float)eps_ln, e_rms = (float)eps_rms;

  at::Tensor h = ln_modulate(x, m, 0, e_ln);
  at::Tensor qkv = panel_linear(h, w[0], w[1], false).view({B, L, 3, H, Dh});
  at::Tensor q = at::empty({B, H, L, Dh}, x.options()), k, v;
  const bool buffers = kbuf.has_value() && vbuf.has_value();
  check(buffers || !outputs, "mode outputs needs the K/V buffers");
  if (buffers)
    check(kbuf->size(0) == B && kbuf->size(1) == H && kbuf->size(3) == Dh && kbuf->size(2) >= L &&
              kbuf->stride(3) == 1 && vbuf->sizes() == kbuf->sizes() && vbuf->stride(3) == 1,
          "K/V buffers must be (B, H, at least L, head_dim)");
  if (outputs) {  // the outputs' K/V after the context's, at the buffers' tail
    k = kbuf->narrow(2, kbuf->size(2) - L, L);
    v = vbuf->narrow(2, vbuf->size(2) - L, L);
  } else if (buffers) {  // context modes: K/V into the head of the buffers
    k = kbuf->narrow(2, 0, L);
    v = vbuf->narrow(2, 0, L);
  } else {
    k = at::empty({B, H, L, Dh}, x.options());
    v = at::empty({B, H, L, Dh}, x.options());
  }
  qk_norm_rope(qkv, w[2], w[3], cos, sin, e_rms, q, k, v);
  if (kv_only) return {x, k, v};

  // attention output as (B, L, H, Dh), the layout the projection reads
  at::Tensor a;
  const at::Tensor& kk = outputs ? *kbuf : k;
  const at::Tensor& vv = outputs ? *vbuf : v;
  const int64_t Lk = outputs ? kbuf->size(2) : L;
  if (Lk <= kTileAttentionKeys) {
    a = tile_attention(q, kk, vv, Lk, full ? n_ctx : 0);
  } else if (full && n_ctx > 0 && n_ctx < L) {
    at::Tensor ac = sdpa(q.narrow(2, 0, n_ctx), k.narrow(2, 0, n_ctx), v.narrow(2, 0, n_ctx));
    at::Tensor ao = sdpa(q.narrow(2, n_ctx, L - n_ctx), k, v);
    a = at::cat({ac.transpose(1, 2), ao.transpose(1, 2)}, 1);
  } else {
    a = sdpa(q, kk, vv).transpose(1, 2);
  }
  a = a.reshape({B, L, D});
  if (!a.is_contiguous()) a = a.contiguous();
  at::Tensor y = gated_add(x, panel_linear(a, w[4], w[5], false), m, 2);
  h = ln_modulate(y, m, 3, e_ln);
  at::Tensor out = gated_add(y, panel_linear(panel_linear(h, w[6], w[7], true), w[8], w[9], false), m, 5);
  if (context) return {out, k, v};
  return {out};
}

// Every block of the DiT in one call: `weights` holds depth x 10 tensors, `table` the modulations
// (B, depth, 6, D) (`table_ctx` the context rows' in mode "full"), kbufs/vbufs one buffer per block
// (mode "outputs"; in mode "context" optional: K/V go into their head). Mode "context" runs the
// last block as "context_kv" and returns [x, k_0, v_0, ..., k_{depth-1}, v_{depth-1}]; the other
// modes return [x].
std::vector<at::Tensor> blocks(const at::Tensor& x_in, const at::Tensor& table, const std::optional<at::Tensor>& table_ctx,
                               int64_t n_ctx, at::TensorList weights, const at::Tensor& cos, const at::Tensor& sin,
                               at::TensorList kbufs, at::TensorList vbufs, c10::string_view mode, double eps_ln,
                               double eps_rms) {
  check(table.dim() == 4 && table.size(2) == 6, "the modulation table must be (B, depth, 6, D)");
  const int64_t depth = table.size(1);
  check((int64_t)weights.size() == 10 * depth, "expects 10 weights per block");
  const bool context = mode == "context";
  check(kbufs.size() == vbufs.size() && (kbufs.empty() || (int64_t)kbufs.size() == depth),
        "give one K and one V buffer per block, or none");
  check(mode != "outputs" || !kbufs.empty(), "mode outputs needs the K/V buffers");
  check(!table_ctx.has_value() || (table_ctx->dim() == 4 && table_ctx->size(1) == depth),
        "the context modulation table must be (B, depth, 6, D)");
  std::vector<at::Tensor> kv;
  at::Tensor x = x_in;
  for (int64_t i = 0; i < depth; ++i) {
    std::optional<at::Tensor> mc;
    if (table_ctx.has_value()) mc = table_ctx->select(1, i);
    std::optional<at::Tensor> kb, vb;
    if (!kbufs.empty()) {
      kb = kbufs[i];
      vb = vbufs[i];
    }
    const c10::string_view m = context && i == depth - 1 ? c10::string_view("context_kv") : mode;
    std::vector<at::Tensor> r = block(x, table.select(1, i), mc, n_ctx, weights.slice(10 * i, 10), cos, sin, kb, vb, m,
                                      eps_ln, eps_rms);
    x = r[0];
    if (context) {
      kv.push_back(r[1]);
      kv.push_back(r[2]);
    }
  }
  std::vector<at::Tensor> out{x};
  out.insert(out.end(), kv.begin(), kv.end());
  return out;
}

}  // namespace

// The structured attention (rows < n_ctx see keys < n_ctx; n_ctx = 0: plain), (B, H, L, Dh) each,
// returned as (B, H, L, Dh): tile_attention as the block runs it (for tests and benchmarks).
at::Tensor structured_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t n_ctx) {
  TORCH_CHECK(q.scalar_type() == at::kFloat && q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() &&
                  k.stride(3) == 1 && v.stride(3) == 1 && q.size(3) == k.size(3),
              "seedling attention: fp32 (B, H, L, Dh) q, k, v with Dh contiguous");
  TORCH_CHECK(n_ctx == 0 || k.size(2) == q.size(2), "seedling attention: n_ctx needs as many keys as queries");
  return tile_attention(q.contiguous(), k, v, k.size(2), n_ctx).transpose(1, 2);
}

TORCH_LIBRARY(seedling, m) {
  m.def("attention(Tensor q, Tensor k, Tensor v, int n_ctx) -> Tensor", &structured_attention);
  m.def("panel_linear(Tensor x, Tensor panels, Tensor bias, bool gelu) -> Tensor", &panel_linear);
  m.def(
      "dit_blocks(Tensor x, Tensor table, Tensor? table_ctx, int n_ctx, Tensor[] weights, Tensor cos, Tensor sin, "
      "Tensor[] kbufs, Tensor[] vbufs, str mode, float eps_ln, float eps_rms) -> Tensor[]",
      &blocks);
}
