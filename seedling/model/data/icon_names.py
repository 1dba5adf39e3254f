"""Every name an icon goes by: what a designer might type for it.

An icon's first name is its CLDR short name from the `emoji` package (`Icon.name`, "fox"); the
others are the package's aliases (GitHub/Slack short codes such as "fox face", "tada") and the
Unicode character name ("FOX FACE" -> "fox face"), except codes no one types as words. CLDR keywords ("animal", "face" for the fox)
are not in any package installed offline, so there are none here.

A name another icon uses (as its first name or as an alias) is dropped: "cat" is the first
name of the cat and an alias of the cat face, so only the cat is called "cat"; a caption must
never name two different pictures.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict

from seedling.model.data.icons import Icon

_GLYPH_STYLE_WORDS = {"black", "white"}


def clean_name(raw: str) -> str:
    """':fox_face:' / 'FOX FACE' / 'upside-down face' -> 'fox face' / 'upside down face'."""
    name = raw.strip(":").replace("_", " ").replace("-", " ")
    return " ".join(name.split()).lower()


def raw_names(icon: Icon) -> list[str]:
    """The icon's name, its `emoji` aliases and its Unicode name, cleaned, without repeats."""
    import emoji

    names = [icon.name]
    data = emoji.EMOJI_DATA.get(icon.char) or emoji.EMOJI_DATA.get(icon.char.replace("\ufe0f", ""), {})
    names += [clean_name(a) for a in data.get("alias", ())]
    bare = icon.char.replace("\ufe0f", "")
    if len(bare) == 1:  # sequences (flags, keycaps) have no single Unicode name
        uni = clean_name(unicodedata.name(bare, ""))
        # Unicode's "black"/"white" mean a filled/outlined glyph ("heavy black heart" is the red
        # heart): as a caption they would teach wrong colours.
        if not set(uni.split()) & (_GLYPH_STYLE_WORDS - set(icon.name.split())):
            names.append(uni)
    first, *others = dict.fromkeys(names)
    return [first, *(n for n in others if _typeable(n))]


def _typeable(name: str) -> bool:
    """Words a person types: no short codes with digits ("cat2", "clock830", "u7533") and none
    under 3 letters ("x", "it", "jp" read as other words)."""
    return len(name) >= 3 and not any(ch.isdigit() for ch in name)


def icon_names(icons: list[Icon]) -> dict[str, tuple[str, ...]]:
    """icon.name -> every name that refers to that icon alone, `icon.name` first.

    Ambiguity is decided among `icons`: the same icon may keep a name in a small subset that
    the full set takes from it.
    """
    raw = {icon.name: raw_names(icon) for icon in icons}
    owners: dict[str, set[str]] = defaultdict(set)
    for key, names in raw.items():
        for n in names:
            owners[n].add(key)
    out = {}
    for key, names in raw.items():
        out[key] = (key, *(n for n in names[1:] if owners[n] == {key}))
    return out
