"""Derived-tensor caches of modules: where they live and when they are stale.

Shared by kernels/packed.py (reordered weights), kernels/fused.py (weight panels) and the executor
(kernels/fused_weights.py, kernels/step_plan.py: resolved block weights, stacked modulation
weights), so none of them imports another for it. A cache is keyed by `version_key` of the
tensors it was derived from and is never saved.
"""

from __future__ import annotations

import weakref

import torch

# A linear's weight panels (fused.panel_weight), kept on the PackedLinear itself (it drops them
# when pickled); packed.refresh_packed drops them.
PANELS_ATTR = "_fused_panels"

# The executor's caches of a model's modules, held beside the modules rather than in them, so the
# model classes know nothing of them and copying, pickling or saving a model never carries them.
_DERIVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def derived(module: torch.nn.Module) -> dict:
    """The executor's cache dict for `module` (empty at first)."""
    d = _DERIVED.get(module)
    if d is None:
        d = _DERIVED[module] = {}
    return d


def forget(module: torch.nn.Module) -> None:
    """Drop every executor cache of `module` (packed.refresh_packed calls it)."""
    _DERIVED.pop(module, None)


def version_key(t: torch.Tensor) -> tuple:
    """Identifies a tensor's current contents for a derived cache: the object, its storage and
    its version counter (bumped by every in-place op, not by edits through `.data`)."""
    return (id(t), t.data_ptr(), t._version, t.shape, t.dtype, t.device)
