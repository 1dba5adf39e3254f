"""Records of the adapter store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class AdapterNotFound(LookupError):
    pass


class AdapterNameTaken(ValueError):
    pass


@dataclass(frozen=True)
class AdapterRecord:
    id: int
    name: str
    kind: str  # "lora" | "full"
    file_path: str | None  # relative to the file store root
    created_at: float
    sha256: str | None = None
    base_model: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # training hyperparameters
    data: list[Any] = field(default_factory=list)  # training set: [{image_id, caption}] or pairs
    metrics: dict[str, Any] = field(default_factory=dict)  # final loss, loss curve, seconds
    job_id: int | None = None


@dataclass(frozen=True)
class NewAdapter:
    """An adapter whose file is already in the store, ready to become a row."""

    name: str
    kind: str
    file_path: str
    sha256: str
    base_model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    data: list[Any] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None
