"""Dataclass configs: built from the same-named fields of another object, and kept as JSON dicts.

Torch-free, so the app process (job specs, settings) can use it as well as the model code.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

T = TypeVar("T")


def shared_fields(source: Any, cls: type) -> dict[str, Any]:
    """The values of `source` (an argparse namespace, a pydantic model, another dataclass) for the
    fields of the dataclass `cls` that it has an attribute of the same name for."""
    return {f.name: getattr(source, f.name) for f in fields(cls) if f.init and hasattr(source, f.name)}


def build_from(cls: type[T], source: Any, **overrides: Any) -> T:
    """A `cls` from `source`'s same-named fields (`shared_fields`), `overrides` set or replaced."""
    return cls(**(shared_fields(source, cls) | overrides))


def _is_tuple_field(f) -> bool:
    # Annotations are strings under `from __future__ import annotations`: "tuple[int, ...]".
    return str(f.type).startswith("tuple")


class JsonConfig:
    """For dataclass configs stored as JSON (a checkpoint's or a diffusers folder's config.json):
    tuple fields are written as lists and read back as tuples."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        d = {k: v for k, v in d.items() if not k.startswith("_")}  # diffusers' bookkeeping keys
        for f in fields(cls):
            if f.name in d and _is_tuple_field(f):
                d[f.name] = tuple(d[f.name])
        return cls(**d)
