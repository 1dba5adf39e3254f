"""Word judge: reads a rendered word with the Tesseract binary (Debian package `tesseract-ocr`)."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
from PIL import Image

from seedling.model.eval.detectors import as_array


def tesseract_missing_reason() -> str | None:
    """None when the `tesseract` binary can run, else a sentence saying why it cannot."""
    if shutil.which("tesseract") is None:
        return (
            "the tesseract binary is not on PATH; install the Debian package "
            "(apt-get install -y tesseract-ocr) to score words"
        )
    return None


def _text_line_image(image, height: int = 40, pad: int = 20) -> Image.Image:
    """Grey, dark-on-light at full contrast, cropped to the ink and scaled to `height` px with a
    white margin.

    Tesseract reads best at ~40 px line height; our words range from 24 to 48 px of ink.
    """
    x = as_array(image)
    grey = np.asarray(Image.fromarray(x).convert("L"), np.float32)
    bg = float(
        np.median(
            np.concatenate([grey[:2].ravel(), grey[-2:].ravel(), grey[:, :2].ravel(), grey[:, -2:].ravel()])
        )
    )
    ink = np.abs(grey - bg) > 48
    # The ink's side of the background decides the polarity, not the background's brightness:
    # black ink on a purple ground (grey ~90) is dark on light.
    if ink.any() and float(np.median(grey[ink])) > bg:  # light text on a darker background
        grey, bg = 255 - grey, 255 - bg
    level = float(np.median(grey[ink])) if ink.any() else 0.0
    rows, cols = np.flatnonzero(ink.sum(1) >= 2), np.flatnonzero(ink.sum(0) >= 2)
    # background -> white, ink -> black: full contrast whatever the two colours were
    im = Image.fromarray(np.clip(255 - (bg - grey) * (255 / max(bg - level, 1.0)), 0, 255).astype(np.uint8))
    if len(rows) and len(cols):
        im = im.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    scale = height / im.height
    im = im.resize((max(1, round(im.width * scale)), height), Image.LANCZOS)
    out = Image.new("L", (im.width + 2 * pad, height + 2 * pad), 255)
    out.paste(im, (pad, pad))
    return out


def ocr_word(image, timeout: float = 30.0) -> str | None:
    """The single line of text Tesseract reads in `image` (stripped), or None without tesseract."""
    if tesseract_missing_reason() is not None:
        return None
    buf = io.BytesIO()
    _text_line_image(image).save(buf, format="PNG")
    # --psm 8: treat the image as a single word (psm 7, a line, reads "Ball" as nothing).
    proc = subprocess.run(
        ["tesseract", "stdin", "stdout", "--psm", "8", "-l", "eng"],
        input=buf.getvalue(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"tesseract failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}"
        )
    return proc.stdout.decode("utf-8", errors="replace").strip()


def normalize_text(text: str) -> str:
    """Lower case, letters and digits only: what a word judge compares."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
