"""Closed-class words a designer uses and what they mean in the model's vocabulary.

Colours, shapes, numbers, positions and scene words are closed classes: a table maps them
exactly and in microseconds, where an embedding would only blur "crimson" and "scarlet". Open
classes (the subjects: "a little kitty") are grounded with MiniLM in `grounding.py`.

Colour names carry an RGB value and map to the nearest colour the model knows (the shape and
ink palette, or the background list), so "navy" and "cobalt" both become "blue" without a table
of synonyms per target.
"""

from __future__ import annotations

import colorsys
import re

from seedling.model.data import knowledge as kn

# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------

# Words (letters, digits, apostrophes) and the punctuation that separates clauses. Hyphens split
# words ("top-left" is "top left"); "o’clock" keeps its apostrophe.
_TOKEN = re.compile(r"[a-z0-9à-ÿ’']+|[,;:.!?&]")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("-", " ").replace("_", " "))


ARTICLES = frozenset({"a", "an", "the", "some", "this", "that", "my", "your", "its", "his", "her", "their"})

# --------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------

# name -> RGB. The model's own names first (exact), then common names a designer types.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    **kn.PALETTE,
    **kn.BACKGROUNDS,
    "grey": kn.BACKGROUNDS["gray"],
    "brown": (150, 75, 0),
    # reds
    "crimson": (220, 20, 60), "scarlet": (255, 36, 0), "ruby": (224, 17, 95), "cherry": (222, 49, 60),
    "maroon": (128, 0, 0), "burgundy": (128, 0, 32), "vermilion": (227, 66, 52), "brick": (178, 34, 34),
    "blood": (200, 10, 10), "cardinal": (196, 30, 58), "carmine": (150, 0, 24),
    # oranges
    "tangerine": (242, 133, 0), "pumpkin": (255, 117, 24), "coral": (255, 127, 80),
    "apricot": (251, 150, 60), "ginger": (215, 110, 20), "rust": (200, 90, 20),
    # yellows
    "gold": (255, 215, 0), "golden": (255, 215, 0), "lemon": (255, 240, 0), "mustard": (230, 200, 50),
    "canary": (255, 230, 50), "sunny": kn.PALETTE["yellow"], "banana": (250, 225, 50),
    # greens
    "emerald": (40, 170, 90), "lime": (60, 205, 50), "olive": (110, 130, 20), "jade": (0, 168, 107),
    "forest": (34, 139, 34), "mint": (62, 180, 137), "grass": (90, 170, 40), "kelly": (76, 187, 23),
    "sage": (120, 160, 100), "leaf": (60, 150, 40),
    # blues
    "navy": (0, 0, 128), "cobalt": (0, 71, 171), "azure": (0, 127, 255), "sapphire": (15, 82, 186),
    "royal": (65, 105, 225), "cerulean": (0, 123, 167), "denim": (21, 96, 189), "ultramarine": (18, 10, 143),
    "sky": kn.BACKGROUNDS["light blue"], "baby": kn.BACKGROUNDS["light blue"],
    # purples
    "violet": (143, 0, 255), "lilac": (200, 162, 200), "lavender": (181, 126, 220), "magenta": (255, 0, 255),
    "plum": (142, 69, 133), "mauve": (190, 120, 200), "amethyst": (153, 102, 204), "indigo": (75, 0, 130),
    "grape": (111, 45, 168),
    # blacks, whites, greys, pinks
    "jet": (10, 10, 10), "ebony": (30, 30, 30), "onyx": (20, 20, 25), "charcoal": (54, 60, 64),
    "coal": (20, 20, 20), "pitch": (5, 5, 5), "ivory": (255, 255, 240), "snow": (255, 250, 250),
    "cream": (255, 253, 208), "silver": (192, 192, 192), "slate": (112, 128, 144), "ash": (178, 178, 178),
    "rose": (255, 120, 160), "blush": (240, 170, 190), "salmon": (250, 140, 130), "fuchsia": (255, 80, 200),
}  # fmt: skip

# Words that only shade the next colour ("light blue", "dark red", "bright yellow").
COLOR_MODIFIERS = frozenset(
    {"light", "dark", "pale", "bright", "deep", "vivid", "hot", "pastel", "neon", "rich", "dusty", "soft",
     "strong", "pure", "warm", "cool"}
)  # fmt: skip
_LIGHTER = frozenset({"light", "pale", "pastel", "baby", "sky", "soft"})
# A name that is also a common noun counts as a colour only right before another colour word or
# a shape/background ("sky blue", "a gold ball"), never on its own ("a lemon", "the sky").
AMBIGUOUS_COLORS = frozenset(
    {"sky", "baby", "snow", "rose", "cherry", "lemon", "lime", "olive", "forest", "grass", "leaf", "blood",
     "coal", "pitch", "brick", "royal", "jet", "cream", "banana", "pumpkin", "tangerine", "coral", "mint",
     "salmon", "plum", "grape", "ginger", "rust", "sunny", "gold", "golden", "cardinal", "slate", "ash"}
)  # fmt: skip


def _hsv(rgb) -> tuple[float, float, float, bool]:
    """(hue, saturation, value, chromatic) of an RGB colour; greys and near-blacks are not chromatic."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    return h, s, v, s >= 0.15 and v >= 0.3


def color_distance(a, b) -> float:
    """Perceptual-enough distance between two RGB colours: hue first for colours, lightness for
    greys. (Plain RGB distance calls navy (0, 0, 128) black; by hue it is blue.)"""
    ha, sa, va, ca = _hsv(a)
    hb, sb, vb, cb = _hsv(b)
    if ca and cb:
        dh = min(abs(ha - hb), 1 - abs(ha - hb))  # hue is an angle: 0 and 1 are both red
        return 4 * dh + 0.5 * abs(sa - sb) + 0.5 * abs(va - vb)
    if not ca and not cb:
        return abs(va - vb)
    return 1.0 + abs(va - vb)  # a colour is never nearer to a grey than to another colour


def _nearest(rgb, names: list[str]) -> str:
    return min(names, key=lambda n: color_distance(rgb, COLOR_RGB[n]))


def nearest_color(color: str, names: list[str]) -> str:
    """The colour among `names` nearest to a colour name ("crimson" -> "red")."""
    return color if color in names else _nearest(COLOR_RGB[color], names)


def to_palette(color: str) -> str:
    """The shape/ink colour (a key of kn.PALETTE) nearest to a colour name."""
    if color in kn.PALETTE:
        return color
    return _nearest(COLOR_RGB[color], list(kn.PALETTE))


def to_background(color: str) -> str:
    """The background (a key of kn.BACKGROUNDS) nearest to a colour name."""
    if color in kn.BACKGROUNDS:
        return color
    return _nearest(COLOR_RGB[color], list(kn.BACKGROUNDS))


def color_at(tokens: list[str], i: int) -> tuple[str, int] | None:
    """(colour name, tokens used) of a colour phrase starting at token i, or None.

    "navy blue" -> ("blue", 2) (the last colour word names the hue); "light blue" stays the
    background name "light blue"; "dark red" -> ("red", 2).
    """
    j, lighter = i, False
    while j < len(tokens) and tokens[j] in COLOR_MODIFIERS:
        lighter |= tokens[j] in _LIGHTER
        j += 1
    names = []
    while j < len(tokens) and tokens[j] in COLOR_RGB:
        names.append(tokens[j])
        j += 1
    if not names:
        return None
    if names[-1] in AMBIGUOUS_COLORS and len(names) == 1 and j == i + 1:
        return None  # "a lemon", "the sky": a noun; the caller decides with context
    hue = names[-1]
    lighter |= any(n in _LIGHTER for n in names[:-1])
    if hue == "blue" and lighter:
        hue = "light blue"
    return hue, j - i


def ambiguous_color_at(tokens: list[str], i: int) -> tuple[str, int] | None:
    """Like `color_at`, but also reads a lone ambiguous name ("a gold ball") as a colour."""
    found = color_at(tokens, i)
    if found is None and i < len(tokens) and tokens[i] in COLOR_RGB:
        return tokens[i], 1
    return found


# --------------------------------------------------------------------------------------------
# Shapes and numbers
# --------------------------------------------------------------------------------------------

SHAPE_WORDS: dict[str, str] = {}
for _shape, _words in {
    "circle": ("circle", "ball", "dot", "disc", "disk", "orb", "sphere"),
    "square": ("square", "box", "block", "cube", "rectangle", "tile"),
    "triangle": ("triangle", "pyramid", "wedge"),
}.items():
    for _w in _words:
        SHAPE_WORDS[_w] = _shape
        SHAPE_WORDS[_w + ("es" if _w.endswith(("x", "sh", "ch", "s")) else "s")] = _shape
# Shape words that are weak evidence on their own ("a soccer ball" is an icon): they make a shape
# only with a colour, a count or a position.
WEAK_SHAPE_WORDS = frozenset(w for w, s in SHAPE_WORDS.items() if not w.startswith(s))

NUMBER_WORDS: dict[str, int] = {
    "a": 1, "an": 1, "one": 1, "single": 1, "lone": 1, "two": 2, "pair": 2, "couple": 2, "both": 2,
    "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "several": 3,
    "few": 3, "twin": 2, "twins": 2,
}  # fmt: skip
for _n in range(1, 10):
    NUMBER_WORDS[str(_n)] = _n

# --------------------------------------------------------------------------------------------
# Positions on the 3x3 grid
# --------------------------------------------------------------------------------------------

VERTICAL = {
    "top": "top", "upper": "top", "up": "top", "above": "top", "north": "top", "uppermost": "top",
    "topmost": "top", "high": "top", "bottom": "bottom", "lower": "bottom", "down": "bottom",
    "below": "bottom", "beneath": "bottom", "underneath": "bottom", "south": "bottom",
    "lowermost": "bottom", "bottommost": "bottom", "low": "bottom",
}  # fmt: skip
HORIZONTAL = {"left": "left", "leftmost": "left", "west": "left", "right": "right", "rightmost": "right",
              "east": "right"}  # fmt: skip
CENTER = frozenset({"center", "centre", "middle", "central", "centered", "centred", "mid"})
COMPASS = {"northwest": "top left", "northeast": "top right", "southwest": "bottom left",
           "southeast": "bottom right"}  # fmt: skip
POSITION_PREPOSITIONS = frozenset({"in", "at", "on", "to", "toward", "towards", "near", "into", "onto", "along",
                                   "across", "over"})  # fmt: skip
# Words after a position that belong to it ("the top left corner of the image").
POSITION_TAIL = frozenset({"corner", "corners", "side", "sides", "edge", "part", "area", "region", "half",
                           "portion", "spot", "hand", "third", "section", "quadrant"})  # fmt: skip
CANVAS_WORDS = frozenset({"image", "picture", "canvas", "frame", "scene", "panel", "page", "grid", "square",
                          "screen", "drawing", "it"})  # fmt: skip
CORNERS = ("top left", "top right", "bottom left", "bottom right")
ROWS = {"top": ("top left", "top", "top right"), "center": ("left", "center", "right"),
        "bottom": ("bottom left", "bottom", "bottom right")}  # fmt: skip
COLUMNS = {"left": ("top left", "left", "bottom left"), "center": ("top", "center", "bottom"),
           "right": ("top right", "right", "bottom right")}  # fmt: skip


def cell_of(row: str | None, col: str | None) -> str:
    """Grid cell from a row (top/center/bottom) and a column (left/center/right)."""
    row = None if row == "center" else row
    col = None if col == "center" else col
    if row and col:
        return f"{row} {col}"
    return row or col or "center"


def _skip(tokens, i, words) -> int:
    while i < len(tokens) and tokens[i] in words:
        i += 1
    return i


def position_at(tokens: list[str], i: int) -> tuple[tuple[str, ...], int] | None:
    """(cells, tokens used) of a position phrase starting at token i, or None.

    Reads "in the upper left corner", "top-left", "at the very bottom", "on the left-hand
    side", "northwest", "in the middle of the picture", and groups: "in each corner" (4 cells),
    "along the top row" (3 cells). A bare "right" before a preposition ("right in the middle")
    is an adverb, not a position; bare "up"/"down"/"above"/"below" are left to the caller
    ("thumbs up", "a circle above a square").
    """
    j = _skip(tokens, i, POSITION_PREPOSITIONS)
    j = _skip(tokens, j, {"the", "very", "far", "exact", "exactly", "dead"})
    k = _skip(tokens, j, {"each", "every", "all", "four", "both"})
    if k < len(tokens) and (tokens[k] == "corners" or (tokens[k] == "corner" and k > j)):
        return CORNERS, k + 1 - i
    row = col = None
    k = j
    while k < len(tokens):
        t = tokens[k]
        if t in COMPASS and row is None and col is None:
            row, col = COMPASS[t].split()
        elif t in VERTICAL and row is None:
            row = VERTICAL[t]
        elif t in HORIZONTAL and col is None:
            nxt = tokens[k + 1] if k + 1 < len(tokens) else ""
            if t == "right" and nxt in _ADVERB_NEXT:
                break  # "right in the middle": an adverb
            col = HORIZONTAL[t]
        elif t not in CENTER:
            break
        k += 1
    if k == j:
        return None
    if k < len(tokens) and tokens[k] in ("row", "line") and col is None:
        return ROWS[row or "center"], k + 1 - i
    if k < len(tokens) and tokens[k] == "column" and row is None:
        return COLUMNS[col or "center"], k + 1 - i
    if (
        j == i
        and all(t in _WEAK_POSITION for t in tokens[j:k])
        and not (k < len(tokens) and tokens[k] in POSITION_TAIL)
    ):
        return None
    k = _skip(tokens, k, POSITION_TAIL)
    if k + 1 < len(tokens) and tokens[k] == "of":  # "... of the image"
        m = _skip(tokens, k + 1, {"the", "this", "a"})
        if m < len(tokens) and tokens[m] in CANVAS_WORDS:
            k = m + 1
    return (cell_of(row, col),), k - i


_ADVERB_NEXT = frozenset(
    {"in", "at", "on", "by", "next", "there", "here", "away", "now", "above", "below", "under", "over", "beside",
     "between"}
)  # fmt: skip
_WEAK_POSITION = frozenset({"up", "down", "high", "low", "above", "below", "over", "mid"})


def on_top_at(tokens: list[str], i: int) -> tuple[tuple[str, ...], int] | None:
    """ "on top" / "up top" / "down below" as absolute positions ("on top of X" is a relation)."""
    pair = tuple(tokens[i : i + 2])
    if pair in (("on", "top"), ("up", "top"), ("at", "top")) and tuple(tokens[i + 2 : i + 3]) != ("of",):
        return ("top",), 2
    if pair in (("down", "below"), ("down", "low"), ("down", "bottom")):
        return ("bottom",), 2
    return None


# --------------------------------------------------------------------------------------------
# Storyboard scenes: words -> panel backgrounds, sizes
# --------------------------------------------------------------------------------------------

SCENE_BACKGROUNDS: dict[str, str] = {}
for _bg, _words in {
    "green": "forest woods wood jungle grass grassy garden park meadow field fields lawn tree trees leaves hill "
    "hills countryside farm valley bushes",
    "blue": "sea ocean lake river water pool pond swim swims swimming dive dives diving waves underwater bath "
    "boat fishing",
    "light blue": "sky snow snowy ice icy winter frozen cloud clouds cloudy air flies flying fly glacier cold "
    "mountain mountains",
    "yellow": "sun sunny sunshine day daytime morning dawn sunrise beach sand sandy desert summer wakes wake "
    "waking breakfast noon",
    "orange": "sunset dusk evening autumn fire campfire pumpkin halloween leaves afternoon",
    "purple": "night moon moonlight stars starry dark dream dreams dreaming sleep sleeps sleeping asleep bed "
    "bedtime midnight space galaxy",
    "pink": "flowers flower blossom blossoms spring love candy party birthday valentine hearts dance dances "
    "dancing",
    "gray": "city street streets road town rain rainy storm stormy fog foggy cave rock rocks stone factory "
    "urban office",
    "red": "lava volcano danger angry rage",
    "white": "home house indoors inside room kitchen studio plain empty",
}.items():
    for _w in _words.split():
        SCENE_BACKGROUNDS.setdefault(_w, _bg)
# When a panel names no scene, storyboards cycle through these (consecutive panels must differ:
# in training every panel changes the background).
DEFAULT_PANEL_BACKGROUNDS = ("white", "light blue", "green", "yellow", "pink", "orange")
PANEL_SIZE_WORDS = {
    "small": "small", "far": "small", "distant": "small", "distance": "small",
    "away": "small", "large": "large", "big": "large", "huge": "large", "giant": "large", "close": "large",
    "closeup": "large", "zoom": "large", "zoomed": "large", "enormous": "large",
}  # fmt: skip

# --------------------------------------------------------------------------------------------
# Words around a subject that the model cannot draw (ground the subject without them)
# --------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FILLER_PREFIXES = tuple(
    tuple(p.split())
    for p in (
        "please", "can you", "could you", "i want", "i would like", "i'd like", "give me", "show me", "draw me",
        "make me", "create", "generate", "render", "draw", "paint", "make", "show", "design", "sketch",
        "an image of", "a picture of", "a photo of", "a photograph of", "an illustration of", "a drawing of",
        "an icon of", "an emoji of", "a cartoon of", "a sketch of", "a painting of", "a render of", "art of",
        "a clipart of", "a symbol of", "a sticker of", "a logo of", "an emoji", "an icon", "a cute",
    )
)  # fmt: skip
# Adjectives of look or mood that no icon name carries; dropped for the "core" subject phrase.
DECORATIVE = _words(
    "cute little tiny small big large huge giant nice beautiful pretty lovely adorable simple cool awesome fancy "
    "colorful colourful shiny cheerful friendly funny majestic wise fluffy furry sweet charming elegant "
    "stylish detailed realistic cartoon cartoonish stylized stylised minimalist flat vector glossy gorgeous "
    "magnificent handsome brave proud playful lively jolly merry silly goofy kawaii chubby fat tall short "
    "ripe juicy tasty delicious yummy fresh hot warm steaming glowing bright sparkling lonely curious "
    "sleepy busy quick slow mighty fierce wild happy smiling old young baby mini"
)
# Words that begin context after the subject ("a fox waving on a sunny day").
CONTEXT_WORDS = _words(
    "on in at under over near by beside behind during through into onto across along while who which that "
    "and with"
)
