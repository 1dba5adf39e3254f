"""Derived-tensor caches kept on modules: where they live and when they are stale.

Shared by kernels/packed.py (reordered weights) and kernels/fused.py (weight panels, resolved
block weights), so neither imports the other. A cache is keyed by `version_key` of the tensors it
was derived from and is never saved (the modules drop these attributes when pickled).
"""

from __future__ import annotations

import torch

# A linear's weight panels (fused.panel_weight) and a DiT block's resolved fused weights
# (DiTBlock.fused_weights); packed.refresh_packed drops both.
PANELS_ATTR = "_fused_panels"
BLOCK_CACHE_ATTR = "_fused_cache"


def version_key(t: torch.Tensor) -> tuple:
    """Identifies a tensor's current contents for a derived cache: the object, its storage and
    its version counter (bumped by every in-place op, not by edits through `.data`)."""
    return (id(t), t.data_ptr(), t._version, t.shape, t.dtype, t.device)
