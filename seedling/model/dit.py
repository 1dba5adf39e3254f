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

This file is the math only. How it runs fast on a CPU (step plans, stacked modulation tables,
packed and fused weights, K/V buffers) is seedling/kernels/executor.py, which the pipeline
selects and which is tested against these forward passes (docs/model.md puts the two side by side).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # noqa: F401  (diffusers' pipeline loader finds the base class here)
from diffusers.configuration_utils import register_to_config

from seedling.configs import JsonConfig
from seedling.kernels.attention import attention
from seedling.kernels.packed import linear_gelu
from seedling.model.layers import (
    SCALE_CHUNKS,
    RMSNorm,
    TimestepEmbedder,
    modulate,
    modulate1p,
    patchify,
    unpatchify,
)
from seedling.model.modeling import SeedlingModelMixin
from seedling.model.rope import Rope3D, apply_rope_complex, image_positions, text_positions
from seedling.model.task_table import TASK_NAMES

TASKS = TASK_NAMES  # a new model knows every task of the table; a saved one, its config's `tasks`


@dataclass
class DiTConfig(JsonConfig):
    width: int = 256  # ~10M parameters at depth 8: small enough to train on two CPU cores
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
    num_tasks: int = 12  # 10 used (TASKS) + room to extend without reshaping the embedding
    attention_backend: str = "split"
    tasks: tuple[str, ...] = TASKS
    reference_boxes: bool = False  # trained with references placed in boxes (rope.box_positions)

    @property
    def head_dim(self) -> int:
        return self.width // self.heads



def DiT_tiny() -> DiTConfig:
    return DiTConfig(width=64, depth=2, heads=2, latent_channels=4, rope_axes=(8, 12, 12), text_len=16)


def DiT_default() -> DiTConfig:
    return DiTConfig()


def DiT_large() -> DiTConfig:
    # ~1.5B parameters: the same code at scale (build it on the "meta" device to inspect it).
    return DiTConfig(width=2048, depth=20, heads=16, latent_channels=16, rope_axes=(32, 48, 48), text_len=128)


DiT_configs = {"tiny": DiT_tiny, "default": DiT_default, "large": DiT_large}


# --------------------------------------------------------------------------------------------
# Transformer block (its building blocks are in model/layers.py)
# --------------------------------------------------------------------------------------------
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
        """(B, D) -> six (B, 1, D): shift, 1 + scale and gate for attention, then for the MLP. The
        scales carry their +1 so that modulating is one addcmul (few tokens: per-kernel overhead)."""
        m = list(self.adaLN(c).unsqueeze(1).chunk(6, dim=-1))
        for i in SCALE_CHUNKS:
            m[i] = m[i] + 1
        return m

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        """self.mlp(h), the first linear and its GELU as one call where the layer offers one (packed
        or int8 layers, kernels/packed.py): one pass less over the 4x-wide hidden states."""
        fc1, act, fc2 = self.mlp
        return fc2(linear_gelu(fc1, h, act.approximate))

    def _qkv(self, h: torch.Tensor, rot: torch.Tensor):
        """q, k, v (B, H, L, Dh): QK-norm and RoPE applied to q and k together (one RMS norm and
        one complex rotation over a (2, B, H, L, Dh) view instead of two of each)."""
        B, L, D = h.shape
        qkv = self.qkv(h).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, H, L, Dh)
        qk = F.rms_norm(qkv[:2].float(), (qkv.shape[-1],), eps=self.q_norm.eps).type_as(h)  # (2, B, H, L, Dh)
        qk = qk * torch.stack([self.q_norm.weight, self.k_norm.weight])[:, None, None, None]  # (2, B, H, L, Dh)
        q, k = apply_rope_complex(qk, rot)  # (B, H, L, Dh) each
        return q, k, qkv[2]

    def attention_inputs(self, x, mod, rot):
        """q, k, v (B, H, L, Dh) of tokens x (B, L, D) under one modulation."""
        return self._qkv(modulate1p(self.norm1(x), mod[0], mod[1]), rot)

    def attention_outputs(self, x, a, mod):
        """The rest of the block for tokens x (B, L, D) given their attention output a (B, H, L, Dh)."""
        B, L, D = x.shape
        x = torch.addcmul(x, mod[2], self.proj(a.transpose(1, 2).reshape(B, L, D)))  # (B, L, D)
        return torch.addcmul(x, mod[5], self._mlp(modulate1p(self.norm2(x), mod[3], mod[4])))  # (B, L, D)

    @staticmethod
    def _split_modulate(h, n_ctx, mc, mo, i):
        """Modulate context rows with mc[i], mc[i+1] and output rows with mo[i], mo[i+1]."""
        return torch.cat([modulate1p(h[:, :n_ctx], mc[i], mc[i + 1]), modulate1p(h[:, n_ctx:], mo[i], mo[i + 1])], 1)

    @staticmethod
    def _split_gate(x, y, n_ctx, gc, go):
        """x + gate * y, with gate gc on context rows and go on output rows."""
        B, L, D = x.shape
        return torch.addcmul(x, torch.cat([gc.expand(B, n_ctx, D), go.expand(B, L - n_ctx, D)], 1), y)

    def forward(self, x, n_ctx: int, mod_ctx, mod_out, rot, backend: str | None):
        """The full sequence x (B, Nc + No, D) under the structured mask."""
        B, L, D = x.shape
        h = self._split_modulate(self.norm1(x), n_ctx, mod_ctx, mod_out, 0)  # (B, L, D)
        q, k, v = self._qkv(h, rot)  # (B, H, L, Dh) each
        a = attention(q, k, v, n_ctx, backend).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        x = self._split_gate(x, self.proj(a), n_ctx, mod_ctx[2], mod_out[2])  # (B, L, D)
        h = self._split_modulate(self.norm2(x), n_ctx, mod_ctx, mod_out, 3)  # (B, L, D)
        return self._split_gate(x, self._mlp(h), n_ctx, mod_ctx[5], mod_out[5])  # (B, L, D)

    def context_kv(self, x_ctx, mod_ctx, rot, last: bool = False):
        """Context tokens alone (they attend only to themselves) -> (new x_ctx, k, v). `last`: no
        later block reads the context states, so only K/V are computed (x_ctx comes back as is)."""
        q, k, v = self.attention_inputs(x_ctx, mod_ctx, rot)  # (B, H, Nc, Dh) each
        if last:
            return x_ctx, k, v
        return self.attention_outputs(x_ctx, attention(q, k, v, 0), mod_ctx), k, v  # (B, Nc, D)

    def forward_outputs(self, x_out, k_ctx, v_ctx, mod_out, rot):
        """Output tokens only (B, No, D), attending to [cached context K/V ; their own K/V]."""
        q, k, v = self.attention_inputs(x_out, mod_out, rot)  # (B, H, No, Dh) each
        k, v = torch.cat([k_ctx, k], 2), torch.cat([v_ctx, v], 2)  # (B, H, Nc + No, Dh) each
        return self.attention_outputs(x_out, attention(q, k, v, cached=True), mod_out)  # (B, No, D)


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
        """x (B, No, D) -> (B, No, p*p*C); `mods`: shift, scale computed already (else from c)."""
        shift, scale = self.modulation(c) if mods is None else mods
        return self.linear(modulate(self.norm(x), shift, scale))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
@dataclass
class ContextKV:
    """The context's per-layer K/V for one generation and guidance branch (`encode_context`)."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # depth x (B, H, Nc, Dh)
    cond: torch.Tensor  # (B, D) task + pooled text, shared by context and output modulation
    n_ctx: int

    def repeat_interleave(self, n: int) -> ContextKV:
        """The same context once per sample of a batch of n (rows repeated in place)."""
        return replace(self, kv=[(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in self.kv],
                       cond=self.cond.repeat_interleave(n, 0))


class UnifiedDiT(SeedlingModelMixin):
    """config.json holds DiTConfig's fields; `UnifiedDiT(DiTConfig(...))` also works. Inside the
    model, `self.dims` is the DiTConfig (with its derived `head_dim`)."""

    @register_to_config
    def __init__(self, width: int = 256, depth: int = 8, heads: int = 4, mlp_ratio: float = 4.0,
                 latent_channels: int = 8, patch: int = 2, text_dim: int = 384, text_len: int = 32,
                 rope_axes: tuple[int, int, int] = (16, 24, 24), rope_theta: float = 10000.0,
                 ref_index_offset: int = 16, num_tasks: int = 12, attention_backend: str = "split",
                 tasks: tuple[str, ...] = TASKS, reference_boxes: bool = False):
        super().__init__()
        if isinstance(width, DiTConfig):  # the pre-diffusers call: UnifiedDiT(cfg)
            self.register_to_config(**width.to_dict())
        cfg = DiTConfig.from_dict({k: self.config[k] for k in DiTConfig.__dataclass_fields__})
        if sum(cfg.rope_axes) != cfg.head_dim:
            raise ValueError(f"rope_axes {cfg.rope_axes} must sum to head_dim {cfg.head_dim}")
        if len(cfg.tasks) > cfg.num_tasks:
            raise ValueError(f"{len(cfg.tasks)} tasks do not fit a task embedding of num_tasks={cfg.num_tasks}")
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
        """refs: list of (B, C, h, w); ref_masks: list of (B, 1, h, w) or None; text: (B, Lt, 384);
        ref_indices[j]: reference j's image index, or its (hw/p^2, 3) positions (a reference placed
        in a box of the output: rope.box_positions). Returns tokens (B, Nc, D) and positions (Nc, 3)."""
        if ref_masks is not None and len(ref_masks) != len(refs):
            raise ValueError(f"got {len(ref_masks)} reference masks for {len(refs)} reference images")
        p = self.dims.patch
        device = text_states.device
        tokens, pos = [], []
        if ref_indices is None:
            ref_indices = [self.dims.ref_index_offset + j for j in range(len(refs))]
        for j, r in enumerate(refs):
            m = ref_masks[j] if ref_masks is not None and ref_masks[j] is not None else torch.zeros_like(r[:, :1])
            tokens.append(self.ref_embed(patchify(torch.cat([r, m.to(r.dtype)], 1), p)))  # (B, hw, D)
            at = ref_indices[j]
            rows, cols = r.shape[-2] // p, r.shape[-1] // p
            pos.append(at.to(device) if torch.is_tensor(at) else image_positions(at, rows, cols, device))
        tokens.append(self.text_embed(text_states.to(self.compute_dtype)))  # (B, Lt, D)
        pos.append(text_positions(text_states.shape[1], device))
        return torch.cat(tokens, 1), torch.cat(pos, 0)

    def sequence(self, x_out, text_states, refs=(), ref_masks=None, ref_indices=None):
        """[context ; outputs] tokens (B, Nc + No, D), Nc and their RoPE table (Nc + No, Dh/2)."""
        ctx, pos_ctx = self._context_tokens(list(refs), ref_masks, text_states, ref_indices)  # (B, Nc, D), (Nc, 3)
        out = self.embed_outputs(x_out)  # (B, No, D)
        rot = self.rope.complex(torch.cat([pos_ctx, self.output_positions(x_out)], 0))  # (Nc + No, Dh/2)
        return torch.cat([ctx, out], 1), ctx.shape[1], rot

    def context(self, text_states, pooled, task, refs=(), ref_masks=None, ref_indices=None):
        """What a context encoding starts from: cond (B, D), c_ctx (B, D), the context tokens
        (B, Nc, D) and their RoPE table (Nc, Dh/2)."""
        cond, c_ctx, _ = self.conditions(task, pooled, None, None)
        x, pos = self._context_tokens(list(refs), ref_masks, text_states, ref_indices)
        return cond, c_ctx, x, self.rope.complex(pos)

    def embed_outputs(self, x_out):
        """(B, M, C, h, w) -> tokens (B, M*hw/p^2, D)."""
        B, M, C, h, w = x_out.shape
        tokens = self.out_embed(patchify(x_out.reshape(B * M, C, h, w), self.dims.patch))  # (B*M, hw/p^2, D)
        return tokens.reshape(B, M * tokens.shape[1], -1)

    def output_positions(self, x_out):
        _, M, _, h, w = x_out.shape
        p = self.dims.patch
        return torch.cat([image_positions(i, h // p, w // p, x_out.device) for i in range(M)], 0)

    def unpatchify_outputs(self, y, shape):
        """(B, No, p*p*C) -> (B, M, C, h, w)."""
        B, M, C, h, w = shape
        p = self.dims.patch
        y = y.reshape(B * M, (h // p) * (w // p), -1)
        return unpatchify(y, p, C, h // p, w // p).reshape(B, M, C, h, w)

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
                ref_indices=None, return_context: bool = False, backend: str | None = None):
        """Predict the flow velocity for the output latents.

        x_out: (B, M, C, h, w) noisy output latents; t, d: (B,) in [0, 1];
        text_states: (B, Lt, 384); pooled: (B, 384); task: name, list of names or (B,) ids;
        refs: list of N (B, C, h', w') clean latents; ref_masks: list of N (B, 1, h', w') or None.
        backend: the attention backend (kernels/attention.py; default the config's).
        Returns v: (B, M, C, h, w) (and the final context hidden states if asked).
        """
        B = x_out.shape[0]
        _, c_ctx, c_out = self.conditions(task, pooled, t, d)  # (B, D) each
        x, n_ctx, rot = self.sequence(x_out, text_states, refs, ref_masks, ref_indices)  # (B, Nc + No, D)
        c_both = torch.cat([c_ctx, c_out])  # (2B, D): both conditions in one product per block
        for blk in self.blocks:
            m = blk.modulation(c_both)  # 6 x (2B, 1, D)
            x = blk(x, n_ctx, [mm[:B] for mm in m], [mm[B:] for mm in m], rot,
                    backend or self.dims.attention_backend)  # (B, Nc + No, D)
        v = self.unpatchify_outputs(self.final(x[:, n_ctx:], c_out), x_out.shape)  # (B, M, C, h, w)
        return (v, x[:, :n_ctx]) if return_context else v

    # -- cached: context once, outputs per step ---------------------------------------------
    def encode_context(self, text_states, pooled, task, refs=(), ref_masks=None, ref_indices=None) -> ContextKV:
        """The context's per-layer K/V, which no denoising step changes."""
        cond, c_ctx, x, rot = self.context(text_states, pooled, task, refs, ref_masks, ref_indices)  # x: (B, Nc, D)
        kv = self.context_kv(x, rot, [blk.modulation(c_ctx) for blk in self.blocks])  # depth x (B, H, Nc, Dh)
        return ContextKV(kv=kv, cond=cond, n_ctx=x.shape[1])

    def context_kv(self, x, rot, mods) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every block's K/V of context tokens x (B, Nc, D) under the blocks' modulations `mods`."""
        kv = []
        for i, (blk, mod) in enumerate(zip(self.blocks, mods)):
            x, k, v = blk.context_kv(x, mod, rot, last=i == len(self.blocks) - 1)  # (B, Nc, D), (B, H, Nc, Dh)
            kv.append((k, v))
        return kv

    def forward_cached(self, x_out, t, cache: ContextKV, d=None):
        """Same result as `forward` with the cache's context, running blocks on outputs only."""
        B = x_out.shape[0]
        d = torch.zeros_like(t) if d is None else d
        c_out = self.step_condition(cache.cond, t.reshape(B), d.reshape(B))  # (B, D)
        x = self.embed_outputs(x_out)  # (B, No, D)
        rot = self.rope.complex(self.output_positions(x_out))  # (No, Dh/2)
        for blk, (k_ctx, v_ctx) in zip(self.blocks, cache.kv):
            x = blk.forward_outputs(x, k_ctx, v_ctx, blk.modulation(c_out), rot)  # (B, No, D)
        return self.unpatchify_outputs(self.final(x, c_out), x_out.shape)  # (B, M, C, h, w)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def with_tasks(self, tasks, like: str = "edit") -> UnifiedDiT:
        """A copy of this model that also knows `tasks` (names of the task table it lacks): every
        weight copied, each new task's embedding row started from the `like` task's (a control
        picture at the output's positions is read as an edit's source is), and the embedding
        grown when the new tasks do not fit its spare rows. Tasks it knows already are kept where
        they are, so its old task ids still mean the same."""
        known = tuple(self.dims.tasks)
        new = tuple(t for t in dict.fromkeys(tasks) if t not in known)
        unknown = [t for t in new if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; the task table has {list(TASK_NAMES)}")
        if like not in known:
            raise ValueError(f"the model does not know the task {like!r} to start the new tasks from")
        cfg = replace(self.dims, tasks=known + new, num_tasks=max(self.dims.num_tasks, len(known) + len(new)))
        grown = UnifiedDiT(cfg).to(self.task_embed.weight.device)
        state = self.state_dict()
        table = state.pop("task_embed.weight")
        rows = torch.zeros_like(grown.task_embed.weight)
        rows[: len(known)] = table[: len(known)]
        rows[len(known) : len(known) + len(new)] = table[known.index(like)]
        state["task_embed.weight"] = rows
        grown.load_state_dict(state)
        return grown.to(self.task_embed.weight.dtype)
