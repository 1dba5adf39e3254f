"""Bad input for the fuzz tests (tests/test_fuzz_inputs.py): hypothesis strategies for damaged and
hostile pictures, numbers, texts, ids and paths, the check that a refusal is a sentence, and the
tally the ≥1,000-case run writes to runs/fuzz.json."""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

DEFAULT_EXAMPLES = {"jobs": 60, "api": 20}  # the default (fast) run; SEEDLING_FUZZ_EXAMPLES scales both


def fuzz_settings(layer: str, examples: int | None = None) -> settings:
    """Bounded in count (max_examples) and in time per case; no example database on disk."""
    n = examples if examples is not None else DEFAULT_EXAMPLES[layer]
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a figure in docs/reliability.md reproduces
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def requested_examples() -> dict[str, int] | None:
    """SEEDLING_FUZZ_EXAMPLES=N: the long run, N job-layer cases and N/8 API cases."""
    raw = os.environ.get("SEEDLING_FUZZ_EXAMPLES")
    if not raw:
        return None
    n = int(raw)
    return {"jobs": n, "api": max(n // 8, 1)}


# --- what a person may be shown ------------------------------------------------------------------
_NOT_FOR_PEOPLE = (
    "Traceback",
    'File "',
    "<class ",
    "internal error",
    "object at 0x",
    "Error(",
    "Exception(",
    "verbose error reporting",  # Gradio's stand-in when the app let an exception escape
    "NoneType",
)


def assert_readable(message: object) -> str:
    """A refusal a person can act on: a non-empty sentence, no traceback, no exception repr."""
    text = str(message)
    assert text.strip() and any(c.isalpha() for c in text), f"empty message: {message!r}"
    for marker in _NOT_FOR_PEOPLE:
        assert marker not in text, f"message is not for people ({marker!r}): {text[:300]!r}"
    return text


def integrity_ok(db_path: Path) -> bool:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


# --- pictures -----------------------------------------------------------------------------------
def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int, rows: int = 1) -> bytes:
    """A PNG whose header claims width x height (8-bit gray) but which carries `rows` rows: the
    "decompression bomb" a hostile upload sends (PIL decides from the header alone)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (min(width, 1 << 16) + 1) * rows)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@cache
def real_bomb() -> bytes:
    """A complete, valid PNG of 4112x4112 black pixels (17 Mpx): ~17 KB on disk, 50 MB decoded."""
    side = 4112
    raw = zlib.compressobj(9)
    body = b"".join(raw.compress(b"\0" * (side + 1)) for _ in range(side)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


_MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "I;16", "CMYK")
_SIZES = ((1, 1), (2, 3), (16, 16), (64, 48), (128, 128), (144, 128), (8200, 1), (1, 4000))


@st.composite
def pictures(draw, sizes=_SIZES) -> Image.Image:
    mode = draw(st.sampled_from(_MODES))
    w, h = draw(st.sampled_from(sizes))
    return Image.new(mode, (w, h), draw(st.integers(0, 255)) if mode not in ("RGB", "RGBA", "CMYK") else None)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    try:
        return encode(image, fmt)
    except (OSError, ValueError, KeyError):  # that mode has no such format: PNG always works for these
        return encode(image.convert("RGB"), "PNG")


@st.composite
def image_bytes(draw) -> tuple[str, bytes]:
    """(what it is, bytes) of an upload: fine, odd, damaged, hostile."""
    kind = draw(
        st.sampled_from(
            ["valid", "valid", "truncated", "flipped", "random", "empty", "header-bomb", "real-bomb", "text"]
        )
    )
    fmt = draw(st.sampled_from(["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]))
    good = _encoded(draw(pictures(sizes=((1, 1), (16, 16), (128, 128), (96, 64)))), fmt)
    if kind == "valid":
        return f"valid {fmt}", good
    if kind == "truncated":
        return f"truncated {fmt}", good[: draw(st.integers(0, max(len(good) - 1, 0)))]
    if kind == "flipped":
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return f"corrupted {fmt}", bytes(data)
    if kind == "random":
        return "random bytes", draw(st.binary(min_size=1, max_size=512))
    if kind == "empty":
        return "empty file", b""
    if kind == "header-bomb":
        w, h = draw(
            st.sampled_from([(100_000, 100_000), (65_535, 65_535), (5000, 5000), (1, 2**31 - 1), (0, 0)])
        )
        return f"PNG header claiming {w}x{h}", png_claiming(w, h)
    if kind == "real-bomb":
        return "valid 4112x4112 PNG (17 Mpx)", real_bomb()
    return "text file", draw(
        st.sampled_from([b"../../etc/passwd", b"<svg xmlns='x'/>", b"GIF89a", b"\x89PNG"])
    )


# --- numbers, texts, ids, paths -------------------------------------------------------------------
BAD_NUMBERS = [
    math.nan, math.inf, -math.inf, -1, -0.5, 0, 0.5, 3.5, 2**31, 2**63, 2**64, 10**30, -(10**30), 1e308,
    "12", "abc", "", None, True, [], {},
]  # fmt: skip
TRAVERSAL = [
    "../../etc/passwd",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2Fetc%2Fpasswd",
    "....//....//etc/passwd",
    "foo\x00.png",
    "file:///etc/passwd",
    "~/.ssh/id_rsa",
    "/proc/self/environ",
    "C:\\Windows\\system32\\config",
    "images/../../history.db",
]
TEXTS = [
    "",
    "   ",
    "a red fox",
    "x" * 2001,
    "word " * 2100,
    "fox\x00cat",
    "\x1b[31mred",
    'fox" OR 1=1 --',
    "NEAR(fox cat)",
    "*",
    "\u202egnp.exe",
    "🦊" * 50,
    "ﬁ ẞ ǅ",
]


def numbers() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(BAD_NUMBERS),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([1, 2, 4, 16, 128, 1024, 1040]),
    )


def texts() -> st.SearchStrategy:
    return st.one_of(st.sampled_from(TEXTS + TRAVERSAL), st.text(max_size=60))


def ids() -> st.SearchStrategy:
    """Row ids: real ones (small), unknown, negative, huge, and not numbers at all."""
    return st.one_of(
        st.integers(1, 4),
        st.integers(-(2**70), 2**70),
        st.sampled_from(TRAVERSAL + [None, 1.5, math.nan, "1", "", [1]]),
    )


# --- the tally ------------------------------------------------------------------------------------
OUTCOMES = ("completed", "rejected", "failed", "not run (over budget)", "crash")


@dataclass
class Tally:
    """Outcome counts of one layer's cases (what the ≥1,000-case run reports)."""

    layer: str
    counts: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    integrity_checks: int = 0
    integrity_failures: int = 0
    follow_up_jobs_ok: int = 0

    def add(self, kind: str, outcome: str, detail: str = "") -> None:
        assert outcome in OUTCOMES, outcome
        self.counts[outcome] += 1
        self.kinds[kind] += 1
        if outcome == "crash":
            self.crashes.append(f"{kind}: {detail}"[:500])

    @property
    def cases(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "cases": self.cases,
            **{k: self.counts[k] for k in OUTCOMES},
            "by_kind": dict(self.kinds),
            "integrity_checks": self.integrity_checks,
            "integrity_failures": self.integrity_failures,
            "follow_up_valid_jobs_ok": self.follow_up_jobs_ok,
            "seconds": round(time.monotonic() - self.started, 1),
            "crash_examples": self.crashes[:20],
        }


def report(tallies: list[Tally], out: Path, machine: str) -> str:
    """A markdown table of the tallies; writes them (and the machine) as JSON to `out`."""
    rows = [t.as_dict() for t in tallies]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "layers": rows}, indent=2))
    head = "| layer | cases | completed | rejected with a message | failed with a message | not run (over budget) | crashes | DB integrity checks (failed) | valid job after | seconds |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['cases']} | {r['completed']} | {r['rejected']} | {r['failed']} | "
            f"{r['not run (over budget)']} | {r['crash']} | {r['integrity_checks']} ({r['integrity_failures']}) | "
            f"{r['follow_up_valid_jobs_ok']} ok | {r['seconds']} |"
        )
    return "\n".join(lines)
