"""How a UnifiedDiT's forward passes run at inference: the pipeline holds one executor.

- "plain" (`Executor`): the model's own `forward`, `encode_context` and `forward_cached`
  (model/dit.py), nothing else. The reference every faster path is tested against.
- "fused" (`FusedExecutor`, the CPU default): the same math with every CPU speed-up the model
  qualifies for, each checked where it is chosen:
  - a step plan (kernels/step_plan.py): the conditioning of every step of the schedule computed
    before the first, in one batched product; the executor is given the schedule up front;
  - modulation tables: every block's adaLN as one product (kernels/step_plan.py);
  - the fused C++ blocks over packed weight panels (kernels/fused.py, kernels/fused_weights.py),
    one call for all blocks, where every block is plain packed fp32 and no gradient is needed;
    elsewhere (quantized, hooked, unpacked, autocast, other devices) the model's Python blocks;
  - K/V buffers: a cached step writes the outputs' K/V after the context's in buffers made once
    per generation, instead of concatenating a fresh copy of the context at every step.
  Asking it for an attention backend the fused blocks do not compute raises (never a quiet
  switch to the Python blocks): use the plain executor for that.

`denoiser(...)` builds what the sampler calls for one guidance branch, `fn(x, t, d) -> v`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from seedling.kernels.attention import attention, available_backends, choose_backend
from seedling.kernels.fused_weights import model_weights, run_blocks
from seedling.kernels.step_plan import (
    StepPlan,
    block_modulations,
    modulation_table,
    plan_steps,
    table_modulations,
)
from seedling.model.dit import ContextKV, UnifiedDiT

# the attention backends the fused C++ blocks compute
FUSED_BACKENDS = tuple(name for name, b in available_backends().items() if b.fused_blocks)


@dataclass
class CachedContext(ContextKV):
    """A ContextKV plus what the fused executor keeps for one generation's steps."""

    # RoPE tables of the output tokens by (M, C, h, w), as (complex, cos, sin): the same at every
    # step of a generation.
    rot_out: dict = field(default_factory=dict)
    # Per output length No: depth x (K, V) buffers (B, H, Nc + No, Dh) holding the context K/V,
    # into which each inference step writes the outputs' K/V. Built at the first step from `kv`,
    # which must not change after that.
    kv_out: dict = field(default_factory=dict)
    plan: StepPlan | None = None  # the generation's StepPlan, if one was made
    weights: list | None = None  # the fused blocks' weights encode_context resolved (None: Python blocks)

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

    def output_rope(self, dit: UnifiedDiT, x_out: torch.Tensor, like: torch.Tensor):
        """(complex, cos, sin) RoPE tables of the output tokens of x_out's shape (made once)."""
        key = tuple(x_out.shape[1:])
        tables = self.rot_out.get(key)
        if tables is None or tables[0].device != like.device:
            rot = dit.rope.complex(dit.output_positions(x_out))
            tables = self.rot_out[key] = (rot, rot.real.contiguous(), rot.imag.contiguous())
        return tables


@dataclass
class CachedDenoiser:
    """One guidance branch with the reference cache: the context encoded once."""

    executor: Executor
    dit: UnifiedDiT
    cache: ContextKV

    def __call__(self, x, t, d):
        return self.executor.forward_cached(self.dit, x, t, self.cache, d)


@dataclass
class UncachedDenoiser:
    """One guidance branch without the cache: the whole sequence every step."""

    executor: Executor
    dit: UnifiedDiT
    inputs: dict  # forward's text_states, pooled, task, refs, ref_masks
    plan: StepPlan | None = None

    def __call__(self, x, t, d):
        return self.executor.forward(self.dit, x, t, d=d, plan=self.plan, **self.inputs)


class Executor:
    """The "plain" executor: the model's own forward passes."""

    name = "plain"
    plans_steps = False  # whether `plan` makes a StepPlan

    def encode_context(self, dit, text_states, pooled, task, refs=(), ref_masks=None, ref_indices=None,
                       n_out: int | None = None) -> ContextKV:
        return dit.encode_context(text_states, pooled, task, refs, ref_masks, ref_indices)

    def forward_cached(self, dit, x_out, t, cache, d=None):
        return dit.forward_cached(x_out, t, cache, d)

    def forward(self, dit, x_out, t, text_states, pooled, task, refs=(), ref_masks=None, d=None,
                ref_indices=None, backend=None, plan=None):
        return dit(x_out, t, text_states, pooled, task, refs, ref_masks, d=d, ref_indices=ref_indices, backend=backend)

    def plan(self, dit, cond, steps, c_ctx=None, weights="resolve") -> StepPlan | None:
        """The step plan of a generation (None: every step computes its own conditioning)."""
        return None

    def denoiser(self, dit, text_states, pooled, task, refs, ref_masks, *, cached: bool, batch: int = 1,
                 steps=None, n_out: int | None = None, ref_indices=None):
        """`fn(x, t, d) -> v` for one guidance branch: text_states/pooled (k, ...) its k prompt
        rows, refs/ref_masks (1, ...) each, shared by every row; `batch` samples per row (x has
        k * batch rows); `steps` the (t, d) pairs the sampler will pass (sampler.step_pairs), for
        a step plan; `n_out` the output tokens per sample (the context K/V go straight into the
        step buffers); `ref_indices` the references' indices or positions (UnifiedDiT.forward)."""
        steps = steps if self.plans_steps else None
        if cached:
            k = text_states.shape[0]
            cache = self.encode_context(dit, text_states, pooled, task, [r.expand(k, -1, -1, -1) for r in refs],
                                        [m.expand(k, -1, -1, -1) for m in ref_masks] if ref_masks else None,
                                        ref_indices, n_out=n_out if batch == 1 else None)
            if batch > 1:  # one copy of the context per sample
                cache = cache.repeat_interleave(batch)
            if steps:
                cache.plan = self.plan(dit, cache.cond, steps, weights=cache.weights)
            return CachedDenoiser(self, dit, cache)
        k = text_states.shape[0] * batch
        inputs = {"text_states": text_states.repeat_interleave(batch, 0), "pooled": pooled.repeat_interleave(batch, 0),
                  "task": task, "refs": [r.expand(k, -1, -1, -1) for r in refs],
                  "ref_masks": [m.expand(k, -1, -1, -1) for m in ref_masks] if ref_masks else None,
                  "ref_indices": ref_indices}
        plan = None
        if steps:
            cond, c_ctx, _ = dit.conditions(task, inputs["pooled"], None, None)
            plan = self.plan(dit, cond, steps, c_ctx=c_ctx)
        return UncachedDenoiser(self, dit, inputs, plan)


class FusedExecutor(Executor):
    """The "fused" executor: the model's math with the CPU speed-ups it qualifies for."""

    name = "fused"
    plans_steps = True

    def plan(self, dit, cond, steps, c_ctx=None, weights="resolve") -> StepPlan:
        return plan_steps(dit, cond, steps, c_ctx=c_ctx, weights=weights)

    def encode_context(self, dit, text_states, pooled, task, refs=(), ref_masks=None, ref_indices=None,
                       n_out: int | None = None) -> CachedContext:
        """The context's per-layer K/V. `n_out`: the number of output tokens the steps will have;
        on the fused path the K/V are then written straight into the step buffers of that length."""
        cond, c_ctx, x, rot = dit.context(text_states, pooled, task, refs, ref_masks, ref_indices)  # x: (B, Nc, D)
        weights = model_weights(dit, x)
        table = modulation_table(dit, c_ctx) if weights is not None else None  # (B, depth, 6, D)
        if table is None:
            kv = dit.context_kv(x, rot, block_modulations(dit, c_ctx))
            return CachedContext(kv=kv, cond=cond, n_ctx=x.shape[1])
        B, n_ctx = x.shape[:2]
        H, Dh, depth = dit.dims.heads, dit.dims.head_dim, len(dit.blocks)
        bufs = [(x.new_empty(B, H, n_ctx + n_out, Dh), x.new_empty(B, H, n_ctx + n_out, Dh))
                for _ in range(depth)] if n_out else []
        r = run_blocks(dit, x, table, None, 0, weights, rot.real.contiguous(), rot.imag.contiguous(),
                       [k for k, _ in bufs], [v for _, v in bufs], "context")  # [x, k_0, v_0, ...]
        cache = CachedContext(kv=[(r[1 + 2 * i], r[2 + 2 * i]) for i in range(depth)], cond=cond, n_ctx=n_ctx,
                              weights=weights)
        if n_out:
            cache.kv_out[n_out] = bufs
        return cache

    def forward_cached(self, dit, x_out, t, cache, d=None):
        """dit.forward_cached's result; uses the cache's StepPlan for the steps it covers."""
        if not isinstance(cache, CachedContext):
            raise TypeError("the fused executor's cached steps take its own encode_context's cache")
        B = x_out.shape[0]
        d = torch.zeros_like(t) if d is None else d
        step = cache.plan.step(t, d) if cache.plan is not None else None
        if step is not None:
            c_out, table, final, weights = step.c, step.table, step.final, cache.plan.weights
        else:
            c_out, final = dit.step_condition(cache.cond, t.reshape(B), d.reshape(B)), None
        x = dit.embed_outputs(x_out)  # (B, No, D)
        rot, cos, sin = cache.output_rope(dit, x_out, x)
        if step is None:
            weights = model_weights(dit, x)
            table = modulation_table(dit, c_out) if weights is not None else None
        if weights is not None and table is not None:  # (inference only: no gradients on the fused path)
            bufs = cache.kv_buffers(x.shape[1], x)
            x = run_blocks(dit, x, table, None, cache.n_ctx, weights, cos, sin, [k for k, _ in bufs],
                           [v for _, v in bufs], "outputs")[0]
            return dit.unpatchify_outputs(dit.final(x, c_out, final), x_out.shape)
        mods = table_modulations(table) if table is not None else block_modulations(dit, c_out)
        # autograd keeps each step's K/V: only inference writes into the shared buffers
        buffers = [None] * len(dit.blocks) if torch.is_grad_enabled() else cache.kv_buffers(x.shape[1], x)
        for blk, (k_ctx, v_ctx), mod, buf in zip(dit.blocks, cache.kv, mods, buffers):
            if buf is None:
                x = blk.forward_outputs(x, k_ctx, v_ctx, mod, rot)
                continue
            q, k, v = blk.attention_inputs(x, mod, rot)  # (B, H, No, Dh) each
            kb, vb = buf  # (B, H, Nc + No, Dh), the context's K/V first
            kb[:, :, kb.shape[2] - k.shape[2]:].copy_(k)
            vb[:, :, vb.shape[2] - v.shape[2]:].copy_(v)
            x = blk.attention_outputs(x, attention(q, kb, vb, cached=True), mod)  # (B, No, D)
        return dit.unpatchify_outputs(dit.final(x, c_out, final), x_out.shape)

    def forward(self, dit, x_out, t, text_states, pooled, task, refs=(), ref_masks=None, d=None,
                ref_indices=None, backend=None, plan=None):
        """dit.forward's velocity; uses `plan` (a StepPlan) for the steps it covers."""
        B = x_out.shape[0]
        step = plan.step(t, torch.zeros_like(t) if d is None else d) if plan is not None else None
        planned = step is not None and plan.ctx_table is not None
        if not planned:
            _, c_ctx, c_out = dit.conditions(task, pooled, t, d)
        x, n_ctx, rot = dit.sequence(x_out, text_states, refs, ref_masks, ref_indices)  # (B, Nc + No, D)
        chosen = choose_backend(x, "structured" if n_ctx else "none", False, backend or dit.dims.attention_backend)
        if planned:
            table_ctx, table_out, weights, final = plan.ctx_table, step.table, plan.weights, step.final
        else:
            c_both = torch.cat([c_ctx, c_out])  # both conditions in one product
            table = modulation_table(dit, c_both)
            table_ctx, table_out = (None, None) if table is None else (table[:B], table[B:])
            weights, final = model_weights(dit, x), None
        if weights is not None and not chosen.fused_blocks:
            raise ValueError(f"the fused executor's C++ blocks compute attention {FUSED_BACKENDS}, not "
                             f"{chosen.name!r}: ask for one of those (or None), or use the plain executor "
                             f"(SeedlingPipeline.set_executor('plain')) to run {chosen.name!r}")
        if weights is not None:
            x = run_blocks(dit, x, table_out, table_ctx, n_ctx, weights, rot.real.contiguous(), rot.imag.contiguous(),
                           [], [], "full")[0]
        else:
            if table_out is not None:
                mods_ctx, mods_out = table_modulations(table_ctx), table_modulations(table_out)
            else:  # the blocks' own modulations (modulation_table said no)
                mods = [blk.modulation(c_both) for blk in dit.blocks]
                mods_ctx, mods_out = [[m[:B] for m in ms] for ms in mods], [[m[B:] for m in ms] for ms in mods]
            for blk, mc, mo in zip(dit.blocks, mods_ctx, mods_out):
                x = blk(x, n_ctx, mc, mo, rot, chosen.name)
        y = dit.final(x[:, n_ctx:], None, final) if final is not None else dit.final(x[:, n_ctx:], c_out)
        return dit.unpatchify_outputs(y, x_out.shape)


EXECUTORS = {"plain": Executor, "fused": FusedExecutor}


def get_executor(name: str) -> Executor:
    """A new executor by name ("fused": the CPU default, "plain": the model's own passes)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
