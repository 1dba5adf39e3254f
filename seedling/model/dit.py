"""The unified diffusion transformer (Seedream-4.0-style), readable top to bottom.

One token sequence per sample:  [reference tokens ; text tokens ; output tokens]
                                 \________ context ________/
- N >= 0 reference images (clean latents + a mask channel, their own input projection),
  the prompt's MiniLM token states, and M >= 1 noisy output latents.
- 3D RoPE over (image index, row, col). Outputs take indices 0..M-1, references
  `ref_index_offset + j`, so nothing about the references depends on M.
- Structured attention: context tokens are read-only (they attend to context only);
  outputs attend to everything, other outputs included (storyboard consistency).
- AdaLN conditioning c = timestep + step size (shortcut) + task + pooled text. Context tokens are
  modulated with t fixed at 0 and no step size, so nothing they compute depends on the step.
- Reference K/V cache: since context never sees outputs or the timestep, its per-layer keys and
  values are the same at every denoising step. `encode_context` computes them once; `forward_cached`
  then runs the blocks on output tokens only. `forward` (no cache) runs everything every step and
  is the reference the cache is tested against.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # noqa: F401  (diffusers' pipeline loader finds the base class here)
from diffusers.configuration_utils import register_to_config

from seedling.kernels import fused
from seedling.kernels.attention import attention, cached_context_attention, choose_backend
from seedling.kernels.packed import PackedLinear, has_hooks, is_linear, linear_gelu, pack_linears, version_key
from seedling.model.modeling import SeedlingModelMixin
from seedling.model.rope import Rope3D, apply_rope_complex, image_positions, text_positions

TASKS = ("t2i", "edit", "inpaint", "compose", "storyboard", "style")


@dataclass
class DiTConfig:
    width: int = 256  # ~10M parameters at depth 8: ~30 samples/s of training on two CPU cores
    depth: int = 8
    heads: int = 4  # head_dim 64: the 3D RoPE needs enough channels per axis
    mlp_ratio: float = 4.0
    latent_channels: int = 8  # must match the autoencoder
    patch: int = 2  # f8 autoencoder x patch 2: a 128x128 image is 8x8 = 64 tokens
    text_dim: int = 384  # MiniLM-L6 hidden size
    text_len: int = 32
    rope_axes: tuple[int, int, int] = (16, 24, 24)  # head_dim split over (index, row, col)
    rope_theta: float = 10000.0
    ref_index_offset: int = 16  # references live at image indices 16, 17, ...: disjoint from outputs
    num_tasks: int = 8  # 6 used (TASKS) + room to extend without reshaping the embedding
    attention_backend: str = "split"
    tasks: tuple[str, ...] = TASKS

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rope_axes"] = list(self.rope_axes)
        d["tasks"] = list(self.tasks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        d = {k: v for k, v in d.items() if not k.startswith("_")}  # diffusers' bookkeeping keys
        d["rope_axes"] = tuple(d["rope_axes"])
        d["tasks"] = tuple(d["tasks"])
        return cls(**d)


def DiT_tiny() -> DiTConfig:
    return DiTConfig(width=64, depth=2, heads=2, latent_channels=4, rope_axes=(8, 12, 12), text_len=16)


def DiT_default() -> DiTConfig:
    return DiTConfig()


def DiT_large() -> DiTConfig:
    # ~1.5B parameters (1,534,603,072): the same code at scale (build on the "meta" device to inspect it).
    return DiTConfig(width=2048, depth=20, heads=16, latent_channels=16, rope_axes=(32, 48, 48), text_len=128)


DiT_configs = {"tiny": DiT_tiny, "default": DiT_default, "large": DiT_large}


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------
class TimestepEmbedder(nn.Module):
    """Scalar in [0, 1] -> (B, D) via sinusoidal features and an MLP (DiT's recipe)."""

    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000.0)[:, None] * freqs[None]  # (B, half)
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1).to(dtype))


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)*(W/p), C*p*p), raster order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(x: torch.Tensor, p: int, C: int, h: int, w: int) -> torch.Tensor:
    """(B, h*w, C*p*p) -> (B, C, h*p, w*p)."""
    B = x.shape[0]
    x = x.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, h * p, w * p)


# --------------------------------------------------------------------------------------------
# Transformer block
# --------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def modulate1p(x: torch.Tensor, shift: torch.Tensor, scale1p: torch.Tensor) -> torch.Tensor:
    """`modulate` with the +1 already in the scale: shift + x * (1 + scale) as one addcmul kernel."""
    return torch.addcmul(shift, x, scale1p)


# Which of a block's six adaLN chunks (shift, scale, gate for attention, then for the MLP) are
# scales, applied as 1 + scale.
SCALE_CHUNKS = (1, 4)


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP with adaLN-Zero, applied with one modulation for context tokens
    and another for output tokens (same weights: a single-stream block)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.width
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(D, 3 * D)
        self.q_norm = RMSNorm(cfg.head_dim)  # QK-norm keeps attention logits bounded
        self.k_norm = RMSNorm(cfg.head_dim)
        self.proj = nn.Linear(D, D)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        hidden = int(D * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(D, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, D))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def modulation(self, c: torch.Tensor) -> list[torch.Tensor]:
        """(B, D) -> six (B, 1, D): shift, 1 + scale and gate for attention, then for the MLP.
        The scales carry their +1 (added once per block call on a (B, 1, D) row) so that
        modulating is one addcmul and a gated residual another: at the 64 tokens of a cached step
        the cost is mostly per-kernel overhead."""
        m = list(self.adaLN(c).unsqueeze(1).chunk(6, dim=-1))
        for i in SCALE_CHUNKS:
            m[i] = m[i] + 1
        return m

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        """self.mlp(h), with the first linear and its GELU fused where the linear is packed
        (kernels/packed.py); the same math either way."""
        fc1, act, fc2 = self.mlp
        return fc2(linear_gelu(fc1, h, act.approximate))

    def _qkv(self, h: torch.Tensor, rot: torch.Tensor):
        """q, k, v (B, H, L, Dh): QK-norm and RoPE applied to q and k together (one RMS norm and one
        complex rotation over a (2, B, H, L, Dh) view instead of two of each: at the 64 tokens of a
        cached step the cost is mostly per-kernel overhead)."""
        B, L, D = h.shape
        qkv = self.qkv(h).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        qk = F.rms_norm(qkv[:2].float(), (qkv.shape[-1],), eps=self.q_norm.eps).type_as(h)
        qk = qk * torch.stack([self.q_norm.weight, self.k_norm.weight])[:, None, None, None]
        q, k = apply_rope_complex(qk, rot)
        return q, k, qkv[2]

    @staticmethod
    def _split_modulate(h, n_ctx, mc, mo, i):
        """Modulate context rows with mc[i], mc[i+1] and output rows with mo[i], mo[i+1]."""
        return torch.cat([modulate1p(h[:, :n_ctx], mc[i], mc[i + 1]), modulate1p(h[:, n_ctx:], mo[i], mo[i + 1])], 1)

    @staticmethod
    def _split_gate(x, y, n_ctx, gc, go):
        """x + gate * y, with gate gc on context rows and go on output rows."""
        B, L, D = x.shape
        return torch.addcmul(x, torch.cat([gc.expand(B, n_ctx, D), go.expand(B, L - n_ctx, D)], 1), y)

    def forward(self, x, n_ctx: int, mod_ctx, mod_out, rot, backend: str):
        """Full sequence. x: (B, Nc + No, D)."""
        B, L, D = x.shape
        h = self._split_modulate(self.norm1(x), n_ctx, mod_ctx, mod_out, 0)
        q, k, v = self._qkv(h, rot)
        a = attention(q, k, v, n_ctx, backend).transpose(1, 2).reshape(B, L, D)
        x = self._split_gate(x, self.proj(a), n_ctx, mod_ctx[2], mod_out[2])
        h = self._split_modulate(self.norm2(x), n_ctx, mod_ctx, mod_out, 3)
        return self._split_gate(x, self._mlp(h), n_ctx, mod_ctx[5], mod_out[5])

    def context_kv(self, x_ctx, mod_ctx, rot, last: bool = False):
        """Context tokens alone (they attend only to themselves). Returns (new x_ctx, k, v).
        `last`: only K/V are needed (no later block reads the context states): x_ctx comes back
        unchanged and the attention output and MLP are skipped."""
        B, L, D = x_ctx.shape
        h = modulate1p(self.norm1(x_ctx), mod_ctx[0], mod_ctx[1])
        q, k, v = self._qkv(h, rot)
        if last:
            return x_ctx, k, v
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, D)
        x_ctx = torch.addcmul(x_ctx, mod_ctx[2], self.proj(a))
        x_ctx = torch.addcmul(x_ctx, mod_ctx[5], self._mlp(modulate1p(self.norm2(x_ctx), mod_ctx[3], mod_ctx[4])))
        return x_ctx, k, v

    def fused_weights(self) -> list[torch.Tensor] | None:
        """`_fused_weights()`, remembered between calls while nothing it depends on changed: the
        same submodules and parameter objects, their classes, no hooks, no in-place edit
        (version counters). Checking that costs a few microseconds; resolving afresh ~30."""
        cached = self.__dict__.get(fused.BLOCK_CACHE_ATTR)
        if cached is not None:
            modules, params, versions, weights = cached
            if (
                not (self._forward_hooks or self._forward_pre_hooks)
                and all(parent._modules.get(name) is m and type(m) is tp and not (m._forward_hooks or m._forward_pre_hooks)
                        for parent, name, m, tp in modules)
                and all(owner._parameters.get(attr) is p and p._version == v
                        for (owner, attr, p), v in zip(params, versions))
            ):
                return weights
        weights = self._fused_weights()
        self.__dict__.pop(fused.BLOCK_CACHE_ATTR, None)
        if weights is not None:
            fc1, _, fc2 = self.mlp
            modules = [(self, n, m, type(m)) for n, m in self._modules.items()]
            modules += [(self.mlp, n, m, type(m)) for n, m in self.mlp._modules.items()]
            owners = [(self.qkv, "weight"), (self.qkv, "bias"), (self.proj, "weight"), (self.proj, "bias"),
                      (fc1, "weight"), (fc1, "bias"), (fc2, "weight"), (fc2, "bias"),
                      (self.q_norm, "weight"), (self.k_norm, "weight")]
            params = [(o, a, o._parameters[a]) for o, a in owners]
            self.__dict__[fused.BLOCK_CACHE_ATTR] = (modules, params, [p._version for _, _, p in params], weights)
        return weights

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop(fused.BLOCK_CACHE_ATTR, None)  # a cache of derived tensors, rebuilt on use
        return state

    def _fused_weights(self) -> list[torch.Tensor] | None:
        """The ten tensors the C++ block (kernels/fused.py) takes, or None where this block must run
        in Python: its four linears must be fp32 PackedLinear layers (the pipeline's CPU default)
        with biases, whose weights it multiplies from panel copies (`fused.panel_weight`), nothing
        hooked, the norms and GELU the ones built here."""
        fc1, act, fc2 = self.mlp
        lins = (self.qkv, self.proj, fc1, fc2)
        if (
            any(type(lin) is not PackedLinear or lin.bias is None or lin.weight.dtype != torch.float32 for lin in lins)
            or any(has_hooks(m) for m in (self, self.mlp, act, self.norm1, self.norm2, self.q_norm, self.k_norm, *lins))
            or type(act) is not nn.GELU or act.approximate != "tanh"
            or any(type(n) is not nn.LayerNorm or n.elementwise_affine or n.eps != self.norm1.eps
                   for n in (self.norm1, self.norm2))
            or any(type(n) is not RMSNorm or n.weight.dtype != torch.float32 or n.eps != self.q_norm.eps
                   for n in (self.q_norm, self.k_norm))
        ):
            return None
        panels = [fused.panel_weight(lin) for lin in lins]
        if any(p is None for p in panels):
            return None
        return [panels[0], self.qkv.bias.detach(), self.q_norm.weight.detach(), self.k_norm.weight.detach(),
                panels[1], self.proj.bias.detach(), panels[2], fc1.bias.detach(), panels[3], fc2.bias.detach()]

    def forward_outputs(self, x_out, k_ctx, v_ctx, mod_out, rot, kv_buffer=None):
        """Output tokens only, attending to [cached context K/V ; their own K/V]. kv_buffer: see
        kernels.attention.cached_context_attention (inference only)."""
        B, L, D = x_out.shape
        h = modulate1p(self.norm1(x_out), mod_out[0], mod_out[1])
        q, k, v = self._qkv(h, rot)
        a = cached_context_attention(q, k_ctx, v_ctx, k, v, kv_buffer).transpose(1, 2).reshape(B, L, D)
        x_out = torch.addcmul(x_out, mod_out[2], self.proj(a))
        return torch.addcmul(x_out, mod_out[5], self._mlp(modulate1p(self.norm2(x_out), mod_out[3], mod_out[4])))


class FinalLayer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        D = cfg.width
        self.norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.linear = nn.Linear(D, cfg.patch * cfg.patch * cfg.latent_channels)

    def modulation(self, c):
        """(B, D) -> shift, scale (B, 1, D)."""
        return self.adaLN(c).unsqueeze(1).chunk(2, dim=-1)

    def forward(self, x, c, mods=None):
        shift, scale = self.modulation(c) if mods is None else mods
        return self.linear(modulate(self.norm(x), shift, scale))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
@dataclass
class ContextCache:
    """Per-layer context K/V of one generation and guidance branch, plus what the outputs need."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # depth x (B, H, Nc, Dh)
    cond: torch.Tensor  # (B, D) task + pooled text, shared by context and output modulation
    n_ctx: int
    # RoPE tables of the output tokens by (M, C, h, w), as (complex, cos, sin): the same at every
    # step of a generation.
    rot_out: dict = field(default_factory=dict)
    # Per output length No: depth x (K, V) buffers (B, H, Nc + No, Dh) holding the context K/V,
    # into which each inference step writes the outputs' K/V (no concatenation per step). Built
    # at the first step from `kv`, which must not change after that.
    kv_out: dict = field(default_factory=dict)
    # The generation's StepPlan (UnifiedDiT.plan_steps), if one was made.
    plan: "StepPlan | None" = None
    # The fused blocks' weights resolved by encode_context (None: the Python blocks ran).
    weights: list | None = None

    def kv_buffers(self, n_out: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The K/V buffers for `n_out` output tokens of `like`'s dtype and device (made once)."""
        bufs = self.kv_out.get(n_out)
        if bufs is None or bufs[0][0].dtype != like.dtype or bufs[0][0].device != like.device:
            bufs = []
            for k, v in self.kv:
                B, H, _, Dh = k.shape
                pad = torch.empty(B, H, n_out, Dh, dtype=like.dtype, device=like.device)
                bufs.append((torch.cat([k.to(like.dtype), pad], 2), torch.cat([v.to(like.dtype), pad], 2)))
            self.kv_out[n_out] = bufs
        return bufs


@dataclass
class StepConditions:
    """One denoising step's conditioning: c = cond + t_embed(t) + d_embed(d) and what the blocks
    and the final layer make of it."""

    c: torch.Tensor  # (B, D)
    table: torch.Tensor | None  # (B, depth, 6, D) block modulations (UnifiedDiT.modulation_table), or None
    final: tuple[torch.Tensor, torch.Tensor]  # the final layer's shift, scale (B, 1, D)


@dataclass
class StepPlan:
    """What every step of one generation shares, resolved once before the first step
    (`UnifiedDiT.plan_steps`): the conditioning of each step of the schedule, computed for all
    steps in one batched product (the timestep MLPs, every block's adaLN and the final layer's
    read their weights once per generation instead of once per step), the context's modulation
    (t = 0) for the uncached path, and the fused blocks' weights (None: the Python blocks). Both
    the cached and the uncached path take one; the weights must not change while it is in use."""

    steps: dict  # (t values, d values) -> StepConditions
    ctx_table: torch.Tensor | None  # (B, depth, 6, D) context modulations, or None
    weights: list | None  # every block's kernels/fused.py weights, concatenated, or None

    def step(self, t: torch.Tensor, d: torch.Tensor) -> StepConditions | None:
        """The planned conditions of step (t, d), or None (not planned, or gradients are on: the
        plan was made without them)."""
        if torch.is_grad_enabled():
            return None
        return self.steps.get((tuple(t.tolist()), tuple(d.tolist())))


class UnifiedDiT(SeedlingModelMixin):
    """config.json holds DiTConfig's fields; `UnifiedDiT(DiTConfig(...))` also works. Inside the
    model, `self.dims` is the DiTConfig (with its derived `head_dim`)."""

    @register_to_config
    def __init__(self, width: int = 256, depth: int = 8, heads: int = 4, mlp_ratio: float = 4.0,
                 latent_channels: int = 8, patch: int = 2, text_dim: int = 384, text_len: int = 32,
                 rope_axes: tuple[int, int, int] = (16, 24, 24), rope_theta: float = 10000.0,
                 ref_index_offset: int = 16, num_tasks: int = 8, attention_backend: str = "split",
                 tasks: tuple[str, ...] = TASKS):
        super().__init__()
        if isinstance(width, DiTConfig):  # the pre-diffusers call: UnifiedDiT(cfg)
            self.register_to_config(**width.to_dict())
        cfg = DiTConfig.from_dict({k: self.config[k] for k in DiTConfig.__dataclass_fields__})
        if sum(cfg.rope_axes) != cfg.head_dim:
            raise ValueError(f"rope_axes {cfg.rope_axes} must sum to head_dim {cfg.head_dim}")
        self.dims = cfg
        D, C, p = cfg.width, cfg.latent_channels, cfg.patch
        self.out_embed = nn.Linear(C * p * p, D)  # noisy output latents
        self.ref_embed = nn.Linear((C + 1) * p * p, D)  # clean reference latents + mask channel
        self.text_embed = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, D))
        self.t_embed = TimestepEmbedder(D)
        self.d_embed = TimestepEmbedder(D)  # shortcut step size (0 = instantaneous flow)
        self.task_embed = nn.Embedding(cfg.num_tasks, D)
        self.pooled_embed = nn.Sequential(nn.Linear(cfg.text_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.rope = Rope3D(cfg.rope_axes, cfg.rope_theta)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg)
        self.initialize_weights()

    def initialize_weights(self):
        # Xavier-uniform for every linear layer (DiT), zero biases.
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(_basic)
        # Timestep/step-size MLPs: small normal init, as in DiT.
        for emb in (self.t_embed, self.d_embed):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        nn.init.normal_(self.task_embed.weight, std=0.02)
        # Zero-out adaLN modulation: every block starts as the identity.
        for b in self.blocks:
            nn.init.zeros_(b.adaLN[-1].weight)
            nn.init.zeros_(b.adaLN[-1].bias)
        # Zero-out the output layer: the initial prediction is 0 everywhere.
        nn.init.zeros_(self.final.adaLN[-1].weight)
        nn.init.zeros_(self.final.adaLN[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    @property
    def compute_dtype(self) -> torch.dtype:
        # Read from the task embedding: quantize() replaces linear layers (no float .weight then)
        # but never embeddings.
        return self.task_embed.weight.dtype

    # -- token assembly -------------------------------------------------------------------
    def task_ids(self, task, batch: int, device) -> torch.Tensor:
        if isinstance(task, torch.Tensor):
            return task.to(device).long().reshape(-1).expand(batch) if task.numel() == 1 else task.to(device).long()
        if isinstance(task, str):
            task = [task] * batch
        ids = []
        for name in task:
            if name not in self.dims.tasks:
                raise ValueError(f"unknown task {name!r}; the model knows {list(self.dims.tasks)}")
            ids.append(self.dims.tasks.index(name))
        return torch.tensor(ids, device=device, dtype=torch.long)

    def _context_tokens(self, refs, ref_masks, text_states, ref_indices):
        """refs: list of (B, C, h, w); ref_masks: list of (B, 1, h, w) or None; text: (B, Lt, 384).
        Returns tokens (B, Nc, D) and positions (Nc, 3)."""
        p = self.dims.patch
        device = text_states.device
        tokens, pos = [], []
        if ref_indices is None:
            ref_indices = [self.dims.ref_index_offset + j for j in range(len(refs))]
        for j, r in enumerate(refs):
            m = ref_masks[j] if ref_masks is not None and ref_masks[j] is not None else torch.zeros_like(r[:, :1])
            tokens.append(self.ref_embed(patchify(torch.cat([r, m.to(r.dtype)], 1), p)))  # (B, hw, D)
            pos.append(image_positions(ref_indices[j], r.shape[-2] // p, r.shape[-1] // p, device))
        tokens.append(self.text_embed(text_states.to(self.compute_dtype)))  # (B, Lt, D)
        pos.append(text_positions(text_states.shape[1], device))
        return torch.cat(tokens, 1), torch.cat(pos, 0)

    def _output_tokens(self, x_out):
        """x_out: (B, M, C, h, w) -> tokens (B, M*hw/p^2, D), positions."""
        return self._embed_outputs(x_out), self._output_positions(x_out)

    def _embed_outputs(self, x_out):
        B, M, C, h, w = x_out.shape
        tokens = self.out_embed(patchify(x_out.reshape(B * M, C, h, w), self.dims.patch))  # (B*M, hw/p^2, D)
        return tokens.reshape(B, M * tokens.shape[1], -1)

    def _output_positions(self, x_out):
        _, M, _, h, w = x_out.shape
        p = self.dims.patch
        return torch.cat([image_positions(i, h // p, w // p, x_out.device) for i in range(M)], 0)

    def _unpatchify_outputs(self, y, shape):
        B, M, C, h, w = shape
        p = self.dims.patch
        y = y.reshape(B * M, (h // p) * (w // p), -1)
        return unpatchify(y, p, C, h // p, w // p).reshape(B, M, C, h, w)

    def _check_refs(self, refs, ref_masks):
        if ref_masks is not None and len(ref_masks) != len(refs):
            raise ValueError(f"got {len(ref_masks)} reference masks for {len(refs)} reference images")

    def conditions(self, task, pooled, t, d):
        """cond (B, D) shared part; c_ctx with t=0 and no step size; c_out with t and d."""
        B = pooled.shape[0]
        cond = self.task_embed(self.task_ids(task, B, pooled.device)) + self.pooled_embed(
            pooled.to(self.compute_dtype))
        zero = torch.zeros(B, device=pooled.device)
        c_ctx = self.step_condition(cond, zero, zero)
        c_out = None
        if t is not None:
            c_out = self.step_condition(cond, t.reshape(B), (torch.zeros_like(t) if d is None else d).reshape(B))
        return cond, c_ctx, c_out

    def step_condition(self, cond: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """cond (R, D) + the timestep and step-size embeddings of t, d (R,): the AdaLN input."""
        dt = self.compute_dtype
        return cond + self.t_embed(t, dt) + self.d_embed(d, dt)

    # -- uncached: everything every step (the reference path) ----------------------------------
    def forward(self, x_out, t, text_states, pooled, task, refs=(), ref_masks=None, d=None,
                ref_indices=None, return_context: bool = False, backend: str | None = None,
                plan: StepPlan | None = None):
        """Predict the flow velocity for the output latents.

        x_out: (B, M, C, h, w) noisy output latents; t, d: (B,) in [0, 1];
        text_states: (B, Lt, 384); pooled: (B, 384); task: name, list of names or (B,) ids;
        refs: list of N (B, C, h', w') clean latents; ref_masks: list of N (B, 1, h', w') or None.
        Returns v: (B, M, C, h, w) (and the final context hidden states if asked).
        plan: the generation's StepPlan (`plan_steps`); steps it does not cover are computed here.
        """
        refs = list(refs)
        self._check_refs(refs, ref_masks)
        B = x_out.shape[0]
        step = plan.step(t, torch.zeros_like(t) if d is None else d) if plan is not None else None
        planned = step is not None and plan.ctx_table is not None
        if not planned:
            _, c_ctx, c_out = self.conditions(task, pooled, t, d)
        ctx, pos_ctx = self._context_tokens(refs, ref_masks, text_states, ref_indices)
        out, pos_out = self._output_tokens(x_out)
        n_ctx = ctx.shape[1]
        x = torch.cat([ctx, out], 1)  # (B, Nc + No, D)
        rot = self.rope.complex(torch.cat([pos_ctx, pos_out], 0))
        # A named backend that cannot run here raises; the C++ blocks run only the backend they implement.
        chosen = choose_backend(x, "structured" if n_ctx else "none", False, backend or self.dims.attention_backend)
        backend = chosen.name
        if planned:
            table_ctx, table_out, weights, final = plan.ctx_table, step.table, plan.weights, step.final
        else:
            c_both = torch.cat([c_ctx, c_out])  # both conditions in one product
            table = self.modulation_table(c_both)
            table_ctx, table_out = (None, None) if table is None else (table[:B], table[B:])
            weights, final = self._fused_blocks(x), None
        if not chosen.fused_blocks:
            weights = None
        if weights is not None:
            cos, sin = rot.real.contiguous(), rot.imag.contiguous()
            x = self._run_fused(x, table_out, table_ctx, n_ctx, weights, cos, sin, [], [], "full")[0]
        else:
            if table_out is not None:
                mods_ctx, mods_out = self.table_modulations(table_ctx), self.table_modulations(table_out)
            else:  # the blocks' own modulations (modulation_table said no)
                mods = [blk.modulation(c_both) for blk in self.blocks]
                mods_ctx, mods_out = [[m[:B] for m in ms] for ms in mods], [[m[B:] for m in ms] for ms in mods]
            for blk, mc, mo in zip(self.blocks, mods_ctx, mods_out):
                x = blk(x, n_ctx, mc, mo, rot, backend)
        y = self.final(x[:, n_ctx:], None, final) if final is not None else self.final(x[:, n_ctx:], c_out)
        v = self._unpatchify_outputs(y, x_out.shape)
        return (v, x[:, :n_ctx]) if return_context else v

    # -- cached: context once, outputs per step ---------------------------------------------
    def encode_context(self, text_states, pooled, task, refs=(), ref_masks=None, ref_indices=None,
                       n_out: int | None = None) -> ContextCache:
        """The context's per-layer K/V. `n_out`: the number of output tokens the steps will have;
        on the fused path the K/V are then written straight into the inference buffers of that
        length (`ContextCache.kv_buffers`), saving their copy at the first step."""
        refs = list(refs)
        self._check_refs(refs, ref_masks)
        cond, c_ctx, _ = self.conditions(task, pooled, None, None)
        x, pos = self._context_tokens(refs, ref_masks, text_states, ref_indices)
        rot = self.rope.complex(pos)
        kv = []
        weights = self._fused_blocks(x)
        table = self.modulation_table(c_ctx) if weights is not None else None
        if table is not None:
            cos, sin = rot.real.contiguous(), rot.imag.contiguous()
            B, n_ctx = x.shape[:2]
            H, Dh = self.dims.heads, self.dims.head_dim
            depth = len(self.blocks)
            bufs = [(x.new_empty(B, H, n_ctx + n_out, Dh), x.new_empty(B, H, n_ctx + n_out, Dh)) for _ in range(depth)] if n_out else []
            r = self._run_fused(x, table, None, 0, weights, cos, sin, [k for k, _ in bufs], [v for _, v in bufs], "context")
            kv = [(r[1 + 2 * i], r[2 + 2 * i]) for i in range(depth)]
            cache = ContextCache(kv=kv, cond=cond, n_ctx=n_ctx, weights=weights)
            if n_out:
                cache.kv_out[n_out] = bufs
            return cache
        for i, (blk, mods) in enumerate(zip(self.blocks, self.block_modulations(c_ctx))):
            x, k, v = blk.context_kv(x, mods, rot, last=i == len(self.blocks) - 1)
            kv.append((k, v))
        return ContextCache(kv=kv, cond=cond, n_ctx=x.shape[1])

    def forward_cached(self, x_out, t, cache: ContextCache, d=None):
        """Same result as `forward` with the cache's context, running blocks on outputs only.
        Uses the cache's StepPlan (`plan_steps`) for the steps it covers."""
        B = x_out.shape[0]
        d = torch.zeros_like(t) if d is None else d
        step = cache.plan.step(t, d) if cache.plan is not None else None
        if step is not None:
            c_out, table, final, weights = step.c, step.table, step.final, cache.plan.weights
        else:
            c_out, final = self.step_condition(cache.cond, t.reshape(B), d.reshape(B)), None
        x = self._embed_outputs(x_out)
        key = tuple(x_out.shape[1:])
        tables = cache.rot_out.get(key)
        if tables is None or tables[0].device != x.device:
            rot = self.rope.complex(self._output_positions(x_out))
            tables = cache.rot_out[key] = (rot, rot.real.contiguous(), rot.imag.contiguous())
        rot, cos, sin = tables
        if step is None:
            weights = self._fused_blocks(x)
            table = self.modulation_table(c_out) if weights is not None else None
        if weights is not None and table is not None:  # (inference only: no gradients on the fused path)
            bufs = cache.kv_buffers(x.shape[1], x)
            x = self._run_fused(x, table, None, cache.n_ctx, weights, cos, sin, [k for k, _ in bufs], [v for _, v in bufs],
                                "outputs")[0]
            return self._unpatchify_outputs(self.final(x, c_out, final), x_out.shape)
        mods = self.table_modulations(table) if table is not None else self.block_modulations(c_out)
        if torch.is_grad_enabled():  # autograd keeps each step's K/V: concatenate afresh
            buffers = [None] * len(self.blocks)
        else:
            buffers = cache.kv_buffers(x.shape[1], x)
        for blk, (k_ctx, v_ctx), mod, buf in zip(self.blocks, cache.kv, mods, buffers):
            x = blk.forward_outputs(x, k_ctx, v_ctx, mod, rot, buf)
        return self._unpatchify_outputs(self.final(x, c_out, final), x_out.shape)

    # -- one generation's steps, planned before the first -------------------------------------
    def plan_steps(self, cond: torch.Tensor, steps, c_ctx: torch.Tensor | None = None, weights="resolve") -> StepPlan:
        """The StepPlan of a generation: `cond` (B, D) its task + pooled-text condition (a
        ContextCache's `cond`, or `conditions(...)[0]`), `steps` its (t, d) pairs (the values the
        sampler will pass, every row of a batch the same). `c_ctx`: the context's condition
        (`conditions(...)[1]`), whose modulation the uncached path also needs. `weights`: the
        fused blocks' weights if the caller resolved them already this generation (a
        ContextCache's), else resolved here. Inference only (built without gradients)."""
        B, S = cond.shape[0], len(steps)
        with torch.no_grad():
            ts = torch.tensor([float(t) for t, _ in steps], device=cond.device).repeat_interleave(B)
            ds = torch.tensor([float(d) for _, d in steps], device=cond.device).repeat_interleave(B)
            c = self.step_condition(cond.repeat(S, 1), ts, ds)  # (S * B, D): all steps at once
            table = self.modulation_table(c)
            shift, scale = self.final.modulation(c)
            planned = {}
            for i in range(S):
                rows = slice(i * B, (i + 1) * B)
                key = (tuple(ts[rows].tolist()), tuple(ds[rows].tolist()))
                planned[key] = StepConditions(c[rows], None if table is None else table[rows], (shift[rows], scale[rows]))
            ctx_table = None if c_ctx is None else self.modulation_table(c_ctx)
            if table is None:
                weights = None
            elif isinstance(weights, str):
                weights = self._fused_blocks(cond)
        return StepPlan(steps=planned, ctx_table=ctx_table, weights=weights)

    @staticmethod
    def table_modulations(table: torch.Tensor) -> list[list[torch.Tensor]]:
        """A modulation table (B, depth, 6, D) as the blocks' per-block lists of six (B, 1, D)."""
        B, depth, _, D = table.shape
        m = table.reshape(B, 1, depth * 6, D).unbind(2)
        return [list(m[6 * i : 6 * i + 6]) for i in range(depth)]

    # -- fused C++ blocks (kernels/fused.py) -------------------------------------------------
    def _fused_blocks(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Every block's weights for the C++ blocks (their `fused_weights`, concatenated), or None
        where the Python blocks must run: gradients enabled, not fp32 on the CPU, autocast, fused
        blocks off or unbuildable, or a block that is not plain packed fp32 (quantized, hooked,
        unpacked)."""
        if (torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu"
                or torch.is_autocast_enabled("cpu") or not fused.enabled()):
            return None
        weights = []
        for blk in self.blocks:
            w = blk.fused_weights()
            if w is None or blk.norm1.eps != self.blocks[0].norm1.eps or blk.q_norm.eps != self.blocks[0].q_norm.eps:
                return None
            weights += w
        return weights if fused.available() else None

    def _run_fused(self, x, table, table_ctx, n_ctx, weights, cos, sin, kbufs, vbufs, mode):
        """All blocks as one C++ call (kernels/fused.py)."""
        blk = self.blocks[0]
        return fused.dit_blocks(x, table, table_ctx, n_ctx, weights, cos, sin, kbufs, vbufs, mode,
                                blk.norm1.eps, blk.q_norm.eps)

    # -- all blocks' modulations in one product ----------------------------------------------
    def block_modulations(self, c: torch.Tensor) -> list[list[torch.Tensor]]:
        """`[blk.modulation(c) for blk in self.blocks]`, from `modulation_table` where it applies.
        Same values up to float rounding."""
        table = self.modulation_table(c)
        return [blk.modulation(c) for blk in self.blocks] if table is None else self.table_modulations(table)

    def modulation_table(self, c: torch.Tensor) -> torch.Tensor | None:
        """Every block's six modulations (B, depth, 6, D), scales as 1 + scale, or None where the
        blocks must compute their own (gradients, hooked or non-plain adaLN layers). Computed as
        one SiLU and one product against every block's adaLN weights stacked (the +1 of the scales
        folded into the stacked bias), instead of depth x (SiLU, linear, chunk, two adds): at a
        cached step's few tokens those small calls are a visible share of the time. The stacked
        copy is rebuilt whenever an adaLN weight changes (keyed like kernels/packed.py)."""
        lins = [blk.adaLN[1] for blk in self.blocks]
        if (
            (torch.is_grad_enabled() and (c.requires_grad or any(lin.weight.requires_grad for lin in lins)))
            or not all(is_linear(lin) and lin.bias is not None and not has_hooks(lin) for lin in lins)
            or any(type(blk.adaLN[0]) is not nn.SiLU or has_hooks(blk.adaLN) for blk in self.blocks)
        ):
            return None
        stacked = self._stacked_adaLN(lins)
        return stacked(F.silu(c)).view(c.shape[0], len(lins), 6, self.dims.width)

    def _stacked_adaLN(self, lins) -> nn.Linear:
        key = tuple(version_key(p) for lin in lins for p in (lin.weight, lin.bias))
        cached = self.__dict__.get("_adaLN_stack")  # not a registered module: no state_dict entry
        if cached is not None and cached[0] == key:
            return cached[1]
        D = self.dims.width
        with torch.no_grad():
            w = torch.cat([lin.weight for lin in lins])  # (depth * 6D, D)
            b = torch.stack([lin.bias for lin in lins]).view(len(lins), 6, D).clone()
            b[:, list(SCALE_CHUNKS)] += 1  # 1 + scale, as in DiTBlock.modulation
            stacked = torch.nn.utils.skip_init(nn.Linear, D, w.shape[0], device=w.device, dtype=w.dtype)
            stacked.weight.copy_(w)
            stacked.bias.copy_(b.reshape(-1))
        stacked.requires_grad_(False)
        if any(type(lin) is PackedLinear for lin in lins):
            pack_linears(stacked)
        self.__dict__["_adaLN_stack"] = (key, stacked)
        return stacked

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_adaLN_stack", None)  # a cache, rebuilt on use
        return state

    # -- helpers ------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
