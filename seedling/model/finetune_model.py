"""The model side of a fine-tune: the DiT copy that trains (LoRA layers injected by peft, or every
weight) and the trained change taken out of it as an `Adapter`."""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from seedling.kernels.packed import unpack_linears
from seedling.model.adapters import Adapter, remove_adapters
from seedling.model.finetune_config import FinetuneConfig, lora_target_regex


def trainable_dit(base: nn.Module, config: FinetuneConfig) -> nn.Module:
    """A copy of the DiT with LoRA layers injected (only they train), or all weights trainable."""
    dit = copy.deepcopy(base)
    remove_adapters(dit)  # the copy carries the base weights, whatever was applied to `base`
    unpack_linears(dit)  # plain nn.Linear for training and for peft (kernels/packed.py)
    dit.requires_grad_(False)
    if config.method == "full":
        return dit.requires_grad_(True).train()
    from peft import LoraConfig, inject_adapter_in_model

    pattern = lora_target_regex(config.targets)
    targets = [n for n, m in dit.named_modules() if re.fullmatch(pattern, n)]
    if not targets:
        raise ValueError(f"no layer of this DiT matches the LoRA targets {config.targets}")
    for name in targets:
        if type(dit.get_submodule(name)) is not nn.Linear:
            raise ValueError(
                "fine-tuning needs the full-precision model: layer "
                f"{name} is {type(dit.get_submodule(name)).__name__} (load the model without --quantize)"
            )
    lora = LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, target_modules=pattern, lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):  # LoRA A's init is seeded; the caller's RNG is left alone
        torch.manual_seed(config.seed)
        dit = inject_adapter_in_model(lora, dit)
    for n, p in dit.named_parameters():
        p.requires_grad_("lora_" in n)
    return dit.train()


def extract_adapter(model: nn.Module, base: nn.Module, config: FinetuneConfig, metadata: dict) -> Adapter:
    """The trained change as an Adapter (LoRA factors, or full-weight deltas against `base`)."""
    meta = {
        **metadata,
        "method": config.method,
        "base_config": {k: v for k, v in getattr(base, "config", {}).items() if not k.startswith("_")},
        "training": config.to_dict(),
    }
    if config.method == "lora":
        from peft import get_peft_model_state_dict

        tensors = {k: v.detach().float().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
        return Adapter("lora", tensors, {**meta, "rank": config.rank, "alpha": config.lora_alpha})
    probe = copy.deepcopy(base)
    remove_adapters(probe)
    base_params = dict(probe.named_parameters())
    deltas = {}
    for name, p in model.named_parameters():
        delta = (p.detach().float() - base_params[name].detach().float().to(p.device)).cpu()
        if delta.abs().max() > 0:
            deltas[name] = delta
    return Adapter("full", deltas, meta)
