"""A1111-style "parameters" text for PNGs: the prompt, then one line of `Key: value` pairs.

    a red fox in snow
    Steps: 4, CFG scale: 3.5, Seed: 42, Size: 128x128, Task: t2i

Values holding a comma, colon, newline or quote (or leading/trailing blanks) are written as JSON
strings, as the A1111 web UI does, so `parse_parameters(format_parameters(p, f)) == (p, f)`.
The one text this cannot round-trip is a prompt with a line starting "Negative prompt:", which
A1111 readers take as the negative prompt; we keep that reading for compatibility.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from PIL import Image, PngImagePlugin

PARAMETERS_KEY = "parameters"
_NEGATIVE = "Negative prompt:"
# Same pattern as A1111's `re_param` (modules/infotext_utils.py).
_FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY = re.compile(r"\w[\w \-/]*\w|\w")


def _quote(value: str) -> str:
    needs = any(c in value for c in ',:\n\r"') or value != value.strip() or value == ""
    return json.dumps(value, ensure_ascii=False) if needs else value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def format_parameters(prompt: str, fields: Mapping[str, object]) -> str:
    """The "parameters" text. Keys are fixed identifiers (letters, digits, spaces, -, /)."""
    parts = []
    for key, value in fields.items():
        if not _KEY.fullmatch(key) or key.startswith(" "):
            raise ValueError(f"bad parameter key {key!r}")
        if value is None:
            continue
        parts.append(f"{key}: {_quote(str(value))}")
    return f"{prompt}\n{', '.join(parts)}"


def parse_parameters(text: str) -> tuple[str, dict[str, str]]:
    """(prompt, fields) from a "parameters" text; values stay strings. A text without a newline is
    a prompt alone unless it parses entirely as fields (as A1111 reads it)."""
    head, sep, last = text.rpartition("\n")
    fields = _parse_fields(last)
    if fields is None:
        return text, {}
    prompt = head if sep else ""
    negative_at = prompt.find("\n" + _NEGATIVE)
    if prompt.startswith(_NEGATIVE):
        negative_at = 0
    if negative_at >= 0:
        negative = prompt[negative_at:].lstrip("\n")[len(_NEGATIVE) :].strip()
        prompt = prompt[:negative_at]
        fields = {"Negative prompt": negative, **fields}
    return prompt, fields


def _parse_fields(line: str) -> dict[str, str] | None:
    """All fields of `line`, or None when the line is not entirely `Key: value` pairs."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _FIELD.match(line, pos)
        if match is None or match.end() == pos:
            return None
        key, value = match.group(1), match.group(2)
        fields[key.strip()] = _unquote(value.strip())
        pos = match.end()
    return fields or None


def png_info(parameters: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PARAMETERS_KEY, parameters)  # iTXt: UTF-8, any prompt survives
    return info


def read_parameters(image: Image.Image) -> str | None:
    """The "parameters" text of an opened PNG, or None."""
    text = getattr(image, "text", None) or image.info
    value = text.get(PARAMETERS_KEY)
    return value if isinstance(value, str) else None
