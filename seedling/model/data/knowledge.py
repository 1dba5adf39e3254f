"""Procedural "knowledge" images: shape scenes, rendered words and bar charts.

Seedream trains on knowledge-centric data (counts, positions, text, charts) so that a prompt's
facts become checkable pixels. These are that data in miniature. Every image is 128x128 RGB
uint8 on a flat background (any other size on request: `size=512` draws the same picture natively
at 512 px, for the autoencoder) and comes with a structured spec, so the same spec can be re-rendered
with one thing changed (the edit tasks) and parsed back from a generation (model/eval).

Everything here is a pure function of a `numpy.random.Generator` (or of a spec): same seed,
same images. Shapes and bars are drawn without anti-aliasing so colours stay exactly on the
palette, which keeps the detectors in model/eval exact on ground truth.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 128
WHITE = (255, 255, 255)

# Saturated colours named as prompts name them. The closest pair (yellow/orange) is 86 apart in
# RGB, far more than the spread of a decoded flat colour, so nearest-colour parsing is exact.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 20),
    "orange": (245, 130, 10),
    "purple": (140, 40, 190),
    "black": (20, 20, 20),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")

# Backgrounds for icons (edit "make the background ...", storyboards). No black: OpenMoji
# outlines are black and would vanish into it.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": WHITE,
    "gray": (150, 150, 150),
    "pink": (255, 170, 200),
    "light blue": (160, 210, 255),
    **{k: v for k, v in PALETTE.items() if k != "black"},
}

# The 3x3 grid, row-major; index = 3 * row + col.
CELLS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip


def cell_box(cell: str, size: int = SIZE) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a grid cell on a `size` px canvas, x1/y1 exclusive; cells tile the
    canvas exactly."""
    i = CELLS.index(cell)
    r, c = divmod(i, 3)
    edges = [round(k * size / 3) for k in range(4)]  # 0, 43, 85, 128 at 128 px
    return edges[c], edges[r], edges[c + 1], edges[r + 1]


def cell_of_point(x: float, y: float) -> str:
    """The grid cell containing pixel coordinates (x, y)."""
    c = min(2, max(0, int(x * 3 // SIZE)))
    r = min(2, max(0, int(y * 3 // SIZE)))
    return CELLS[3 * r + c]


# --------------------------------------------------------------------------------------------
# Shape scenes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeObject:
    color: str  # key of PALETTE
    shape: str  # one of SHAPES
    cell: str  # one of CELLS
    size: int = 34  # bounding-box side in px; 30..36 fits a 42 px cell with room to jitter
    dx: int = 0  # offset of the centre from the cell centre, px
    dy: int = 0

    def box(self) -> tuple[int, int, int, int]:
        """Inclusive pixel bounding box (x0, y0, x1, y1) of the drawn shape."""
        x0, y0, x1, y1 = cell_box(self.cell)
        cx = (x0 + x1) // 2 + self.dx
        cy = (y0 + y1) // 2 + self.dy
        h = self.size // 2
        return cx - h, cy - h, cx - h + self.size - 1, cy - h + self.size - 1


@dataclass(frozen=True)
class ShapeScene:
    objects: tuple[ShapeObject, ...]  # at most one object per cell, so objects never overlap
    background: tuple[int, int, int] = WHITE

    def object_at(self, cell: str) -> ShapeObject | None:
        return next((o for o in self.objects if o.cell == cell), None)

    def replace_object(self, old: ShapeObject, new: ShapeObject | None) -> ShapeScene:
        objs = tuple(new if o == old else o for o in self.objects)
        return replace(self, objects=tuple(o for o in objs if o is not None))

    def add_object(self, obj: ShapeObject) -> ShapeScene:
        if self.object_at(obj.cell) is not None:
            raise ValueError(f"cell {obj.cell!r} is already occupied")
        return replace(self, objects=self.objects + (obj,))


def random_object(
    rng: np.random.Generator, cell: str, color: str | None = None, shape: str | None = None
) -> ShapeObject:
    """One shape in `cell` with a random size and a small offset that keeps it inside the cell."""
    size = int(rng.integers(30, 37))
    x0, y0, x1, y1 = cell_box(cell)
    slack = max(0, (min(x1 - x0, y1 - y0) - size) // 2 - 1)
    return ShapeObject(
        color=color or COLORS[rng.integers(len(COLORS))],
        shape=shape or SHAPES[rng.integers(len(SHAPES))],
        cell=cell,
        size=size,
        dx=int(rng.integers(-slack, slack + 1)),
        dy=int(rng.integers(-slack, slack + 1)),
    )


def random_scene(rng: np.random.Generator, n_objects: int | None = None) -> ShapeScene:
    """1-4 objects in distinct random cells."""
    n = int(n_objects if n_objects is not None else rng.integers(1, 5))
    if not 1 <= n <= len(CELLS):
        raise ValueError(f"n_objects must be in 1..9, got {n}")
    cells = rng.choice(len(CELLS), size=n, replace=False)
    return ShapeScene(tuple(random_object(rng, CELLS[c]) for c in sorted(cells)))


def _scaled_pad(pad: int, size: int) -> int:
    """`pad` px of the 128 px canvas at `size` px, rounded up (a margin never shrinks to nothing)."""
    return -(-pad * size // SIZE)


def _scaled_box(box: tuple[int, int, int, int], size: int) -> tuple[int, int, int, int]:
    """An inclusive 128-px box drawn on a `size` px canvas: the same area, edges at native pixels."""
    if size == SIZE:
        return box
    x0, y0 = round(box[0] * size / SIZE), round(box[1] * size / SIZE)
    x1, y1 = round((box[2] + 1) * size / SIZE) - 1, round((box[3] + 1) * size / SIZE) - 1
    return x0, y0, max(x0, x1), max(y0, y1)  # below 128 px a thin line keeps one pixel


def draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, size: int = SIZE) -> None:
    x0, y0, x1, y1 = _scaled_box(obj.box(), size)
    fill = PALETTE[obj.color]
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render_scene(scene: ShapeScene, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8. Aliased drawing: every shape pixel is exactly its palette colour."""
    im = Image.new("RGB", (size, size), scene.background)
    draw = ImageDraw.Draw(im)
    for obj in scene.objects:
        draw_object(draw, obj, size)
    return np.asarray(im).copy()


def object_mask(obj: ShapeObject, pad: int = 1, size: int = SIZE) -> np.ndarray:
    """(size, size) bool: the object's bounding box as `render_scene` draws it at `size`, grown by
    `pad` px of the 128 px canvas (the region an edit touches)."""
    m = np.zeros((size, size), bool)
    x0, y0, x1, y1 = _scaled_box(obj.box(), size)
    pad = _scaled_pad(pad, size)
    m[max(0, y0 - pad) : y1 + pad + 1, max(0, x0 - pad) : x1 + pad + 1] = True
    return m


# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------

# ~300 common English words of at most 8 letters (frequent words read well and OCR well).
_WORD_TEXT = """
    able about above act add after again age ago air all also always and animal answer any
    apple area arm art ask away baby back bad bag ball bank base bear beat bed before begin
    bell best big bird black blue boat body book both box boy bread bring brown build busy
    buy cake call calm can car card care carry case cat chair change child city class clean
    clear clock close cloud cold color come cook cool corn count cow cup cut dance dark day
    deep desk dog door down draw dream dress drink drive duck early earth east easy eat egg
    end enjoy enough even event every eye face fact fall family far farm fast father feel
    field fill find fine fire fish five floor flower fly food foot forest four free fresh
    friend frog front fruit full fun game garden gift girl give glad glass go gold good
    grass great green group grow hand happy hard hat head hear heart heavy hello help here
    high hill hold home hope horse hot hour house idea island jump just keep key kind king
    kite lake lamp land large last late laugh learn leaf left light like line lion list
    little live long look love low lucky magic main make map mark market money month moon
    more morning mother mouse move music name near new next nice night north note number
    ocean open orange page paint paper park party peace pen people piano pick place plan
    plant play point pretty queen quick quiet rain read ready red rest rice right river road
    rock room rose round run safe salt sand say school sea season seed shape ship shoe shop
    short show sign silver simple sing sister sky sleep slow small smile snow soft song soon
    sound south space spring star start stone storm story street strong study sugar summer
    sun sweet table tail take talk tall tea team tell ten thank think three time today tooth
    top town toy train tree true turn under up use very visit voice wait walk warm wash
    watch water wave way week west white wild wind window winter wish wolf wood word work
    world write year yellow young zebra zero
"""
WORDS = tuple(_WORD_TEXT.split())
WORD_COLORS = ("black",) * 4 + ("red", "green", "blue", "purple", "orange")  # mostly black ink

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
# Font key -> file name under _DEJAVU; "default" is Pillow's bundled Aileron (always present).
_FONT_FILES = {
    "default": None,
    "dejavu-sans-bold": "DejaVuSans-Bold.ttf",
    "dejavu-sans": "DejaVuSans.ttf",
    "dejavu-serif-bold": "DejaVuSerif-Bold.ttf",
    "dejavu-mono-bold": "DejaVuSansMono-Bold.ttf",
}
MIN_CAP_HEIGHT = 24  # px; large enough for OCR and for a 16x16 latent grid to carry the letters
MAX_TEXT_WIDTH = 118  # px; wider renderings are squeezed horizontally to fit the canvas


def available_fonts() -> tuple[str, ...]:
    """Font keys usable on this machine ("default" always; DejaVu when installed)."""
    return tuple(k for k, f in _FONT_FILES.items() if f is None or (_DEJAVU / f).exists())


@lru_cache(maxsize=64)
def _font(key: str, size: int) -> ImageFont.FreeTypeFont:
    f = _FONT_FILES[key]
    if f is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(_DEJAVU / f), size)


@lru_cache(maxsize=16)
def _cap_ratio(key: str) -> float:
    """Cap height of "H" as a fraction of the font size."""
    _, y0, _, y1 = _font(key, 100).getbbox("H")
    return (y1 - y0) / 100


@dataclass(frozen=True)
class WordSpec:
    text: str
    font: str = "default"  # key of _FONT_FILES
    color: str = "black"  # key of PALETTE
    cap_height: int = 28  # px, >= MIN_CAP_HEIGHT
    background: tuple[int, int, int] = WHITE


def random_word(rng: np.random.Generator, p_random_letters: float = 0.15) -> WordSpec:
    """A common word (or, sometimes, a random 3-6 letter string) in a random font and ink."""
    if rng.random() < p_random_letters:
        letters = string.ascii_lowercase
        text = "".join(letters[i] for i in rng.integers(0, 26, size=int(rng.integers(3, 7))))
    else:
        text = WORDS[rng.integers(len(WORDS))]
    case = rng.random()
    if case < 0.15:
        text = text.upper()
    elif case < 0.35:
        text = text.capitalize()
    fonts = available_fonts()
    return WordSpec(
        text=text,
        font=fonts[rng.integers(len(fonts))],
        color=WORD_COLORS[rng.integers(len(WORD_COLORS))],
        cap_height=int(rng.integers(MIN_CAP_HEIGHT, 37)),
    )


@lru_cache(maxsize=4096)
def _text_alpha(spec: WordSpec, size: int = SIZE) -> np.ndarray:
    """Anti-aliased ink coverage (h, w) uint8 of the word, cropped to its ink, width-limited.

    Cached (specs are frozen) because box and render both need it; the array is read-only.
    At another canvas `size` every length scales with it and the glyphs are rasterised there.
    """
    cap, min_cap, max_width = (v * size // SIZE for v in (spec.cap_height, MIN_CAP_HEIGHT, MAX_TEXT_WIDTH))
    font = _font(spec.font, max(8, round(cap / _cap_ratio(spec.font))))
    x0, y0, x1, y1 = font.getbbox(spec.text)
    if x1 - x0 > max_width and cap > min_cap:
        # Too wide: give up cap height first (down to the minimum), squeeze only what remains.
        cap = max(min_cap, int(cap * max_width / (x1 - x0)))
        font = _font(spec.font, max(8, round(cap / _cap_ratio(spec.font))))
        x0, y0, x1, y1 = font.getbbox(spec.text)
    im = Image.new("L", (x1 - x0 + 4, y1 - y0 + 4), 0)
    ImageDraw.Draw(im).text((2 - x0, 2 - y0), spec.text, font=font, fill=255)
    im = im.crop(im.getbbox())
    if im.width > max_width:
        # Squeeze instead of shrinking so that long words keep their cap height.
        im = im.resize((max_width, im.height), Image.LANCZOS)
    alpha = np.array(im)
    alpha.flags.writeable = False
    return alpha


def word_box(spec: WordSpec, size: int = SIZE) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) exclusive box the centred word's ink occupies."""
    h, w = _text_alpha(spec, size).shape
    x0, y0 = (size - w) // 2, (size - h) // 2
    return x0, y0, x0 + w, y0 + h


def render_word(spec: WordSpec, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8: the word centred on the canvas."""
    alpha = _text_alpha(spec, size).astype(np.uint16)[..., None]
    x0, y0, x1, y1 = word_box(spec, size)
    out = np.empty((size, size, 3), np.uint8)
    out[:] = spec.background
    bg = out[y0:y1, x0:x1].astype(np.uint16)
    ink = np.array(PALETTE[spec.color], np.uint16)
    out[y0:y1, x0:x1] = ((ink * alpha + bg * (255 - alpha) + 127) // 255).astype(np.uint8)
    return out


def word_mask(spec: WordSpec, pad: int = 1, size: int = SIZE) -> np.ndarray:
    """(size, size) bool: the word's ink box at `size` grown by `pad` px of the 128 px canvas."""
    m = np.zeros((size, size), bool)
    x0, y0, x1, y1 = word_box(spec, size)  # exclusive of x1, y1 (the box `_scaled_box` gives is inclusive)
    pad = _scaled_pad(pad, size)
    m[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = True
    return m


# --------------------------------------------------------------------------------------------
# Bar charts
# --------------------------------------------------------------------------------------------

CHART_BASELINE = 116  # y of the x axis; bars stand on it
CHART_AXIS_X = 12  # x of the y axis
CHART_UNIT = 11  # px per unit of value: 9 units -> 99 px
CHART_LEFT, CHART_RIGHT = 18, 124  # horizontal extent of the bar area


@dataclass(frozen=True)
class ChartSpec:
    values: tuple[int, ...]  # 2..5 integers in 1..9
    colors: tuple[str, ...]  # one PALETTE key per bar (never black: the axes are black)


def random_chart(rng: np.random.Generator, n_bars: int | None = None) -> ChartSpec:
    n = int(n_bars if n_bars is not None else rng.integers(2, 6))
    values = tuple(int(v) for v in rng.integers(1, 10, size=n))
    bar_colors = [c for c in COLORS if c != "black"]
    if rng.random() < 0.5:  # one colour for all bars, or a different colour per bar
        colors = (bar_colors[rng.integers(len(bar_colors))],) * n
    else:
        colors = tuple(bar_colors[i] for i in rng.choice(len(bar_colors), size=n, replace=False))
    return ChartSpec(values, colors)


def bar_boxes(spec: ChartSpec, size: int = SIZE) -> list[tuple[int, int, int, int]]:
    """Inclusive (x0, y0, x1, y1) of each bar on a `size` px canvas."""
    n = len(spec.values)
    slot = (CHART_RIGHT - CHART_LEFT) / n
    width = int(slot * 0.6)
    boxes = []
    for i, v in enumerate(spec.values):
        cx = CHART_LEFT + slot * (i + 0.5)
        x0 = round(cx - width / 2)
        boxes.append(_scaled_box((x0, CHART_BASELINE - v * CHART_UNIT, x0 + width - 1, CHART_BASELINE - 1), size))
    return boxes


def render_chart(spec: ChartSpec, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8: black axes and one solid bar per value."""
    if not 1 <= len(spec.values) <= 8 or not all(1 <= v <= 9 for v in spec.values):
        raise ValueError(f"chart values must be 1..8 integers in 1..9, got {spec.values}")
    im = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(im)
    black = PALETTE["black"]
    draw.rectangle(_scaled_box((CHART_AXIS_X, CHART_BASELINE, SIZE - 4, CHART_BASELINE + 1), size), fill=black)
    draw.rectangle(_scaled_box((CHART_AXIS_X - 1, 8, CHART_AXIS_X, CHART_BASELINE + 1), size), fill=black)
    for box, color in zip(bar_boxes(spec, size), spec.colors):
        draw.rectangle(box, fill=PALETTE[color])
    return np.asarray(im).copy()
