"""Adapters as the worker loads them: read once, kept while their file is unchanged."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

CACHE_SIZE = 4  # adapters kept in memory (LoRA files are small; a full fine-tune is model-sized)


class AdapterCache:
    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple[str, str | None], Any] = OrderedDict()

    def load(self, path: Path, sha256: str | None) -> Any:
        """The model.adapters.Adapter in `path`; a file rewritten since (other sha256) is read again."""
        from seedling.model.adapters import load_adapter  # worker only: the app process never imports torch

        key = (str(path), sha256)
        if key not in self._items:
            self._items[key] = load_adapter(path)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        self._items.move_to_end(key)
        return self._items[key]
