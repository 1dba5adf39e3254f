"""Flow matching with a shortcut-model objective (Frans et al., "One Step Diffusion via Shortcut
Models"): one network, conditioned on the step size d, no teacher, no discriminator.

Convention: x_t = (1 - t) x0 + t eps, velocity v = eps - x0; t = 1 is noise, t = 0 is data.
- Flow-matching part (d = 0): t ~ logit-normal, target v, loss on output tokens only (the
  model predicts nothing else).
- Self-consistency part (d > 0): a step of size 2d must equal two steps of size d:
  target = (F(x_t, t, d) + F(x_t - d F(x_t, t, d), t - d, d)) / 2, computed without gradient.
  The smallest d (1/128) is queried as d = 0, anchoring the recursion to the flow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_LOG2_STEPS = 7  # d ranges over 1/128 ... 1


def logit_normal(n: int, device, mean: float = 0.0, std: float = 1.0, generator=None) -> torch.Tensor:
    return torch.sigmoid(torch.randn(n, device=device, generator=generator) * std + mean)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * eps


def shortcut_flow_loss(model_fn, x0: torch.Tensor, shortcut_fraction: float = 0.25, generator=None):
    """model_fn(x_t, t, d) -> v, all (B, ...). x0: clean output latents (B, M, C, h, w).

    Returns (loss, stats). The first (1 - shortcut_fraction) of the batch trains flow matching,
    the rest self-consistency.
    """
    B, device = x0.shape[0], x0.device
    n_sc = int(round(B * shortcut_fraction)) if B > 1 else 0
    n_fm = B - n_sc
    eps = torch.randn(x0.shape, device=device, generator=generator)
    t = logit_normal(B, device, generator=generator)
    d = torch.zeros(B, device=device)
    target = eps - x0
    if n_sc:
        # step size 2d with d = 2^-k, k in 1..7; t uniform in [2d, 1] so both half-steps stay in range
        k = torch.randint(1, MIN_LOG2_STEPS + 1, (n_sc,), device=device, generator=generator)
        dd = 2.0 ** (-k.float())
        ts = 2 * dd + (1 - 2 * dd) * torch.rand(n_sc, device=device, generator=generator)
        t[n_fm:] = ts
        d[n_fm:] = 2 * dd
        xs = add_noise(x0[n_fm:], eps[n_fm:], ts)
        dq = torch.where(dd <= 2.0 ** -MIN_LOG2_STEPS, torch.zeros_like(dd), dd)
        with torch.no_grad():
            v1 = model_fn(xs, ts, dq, slice(n_fm, B))
            x_mid = xs - dd.reshape(-1, *([1] * (xs.dim() - 1))) * v1
            v2 = model_fn(x_mid, ts - dd, dq, slice(n_fm, B))
        target = target.clone()
        target[n_fm:] = (v1 + v2) / 2
    xt = add_noise(x0, eps, t)
    pred = model_fn(xt, t, d, slice(0, B))
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)
    loss = per_sample.mean()
    stats = {"loss_fm": per_sample[:n_fm].mean().item()}
    if n_sc:
        stats["loss_sc"] = per_sample[n_fm:].mean().item()
    return loss, stats
