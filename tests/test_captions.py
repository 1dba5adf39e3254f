"""Icon captions in the words a designer types (issue #19 §5) and the free-phrasing suite that
the training captions never contain (model/data/icon_names.py, captions.py, eval/free_phrasing.py)."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from seedling.model.data import captions as cap
from seedling.model.data.icon_names import icon_names, raw_names
from seedling.model.data.icons import load_icons
from seedling.model.data.tasks import TASKS, TaskSampler
from seedling.model.eval import free_phrasing as fp
from seedling.model.eval import harness as hs


@pytest.fixture(scope="module")
def icons():
    return load_icons()


@pytest.fixture(scope="module")
def names(icons):
    return icon_names(icons)


def _norm(prompt: str) -> str:
    """What 'verbatim' means for a text encoder that lowercases: case, spaces and end punctuation."""
    return re.sub(r"\s+", " ", prompt.lower()).strip(" .!?")


# -- names ----------------------------------------------------------------------------------------


def test_icons_have_their_aliases_and_unicode_names(icons, names):
    by = {i.name: i for i in icons}
    assert "fox face" in names["fox"]  # the emoji alias and the Unicode name FOX FACE
    assert "tada" in names["party popper"]
    assert names["fox"][0] == "fox"
    assert "upside down face" in raw_names(by["upside down face"])
    assert sum(len(v) > 1 for v in names.values()) > 700  # most icons have a second name
    # Unicode's glyph words are not colours: HEAVY BLACK HEART is the red heart
    assert not any(n in names["red heart"] for n in ("heavy black heart", "black heart"))
    assert "white medium star" not in names["star"] and "black sun with rays" not in names["sun"]
    # short codes are not words a designer types
    assert names["cat"] == ("cat",) and "clock830" not in names["eight thirty"]
    assert "it" not in names["italy"] and "x" not in names["cross mark"]


def test_no_name_refers_to_two_icons(icons, names):
    owners = Counter(n for v in names.values() for n in v)
    assert not [n for n, c in owners.items() if c > 1]
    # "cat" is the cat's name and an alias of the cat face: only the cat keeps it
    assert "cat" not in names["cat face"] and "cat" in names["cat"]


# -- the sampler's captions ---------------------------------------------------------------------------


def test_v1_captions_replay_the_shipped_recipe(icons):
    """The prompts main's TaskSampler drew at seed 5 before rich captions existed."""
    s = TaskSampler(icons, seed=5, captions="v1")
    rng = np.random.default_rng(5)
    got = [s.sample(t, rng).prompt for t in ("t2i", "compose", "storyboard", "style") for _ in range(3)]
    got += [s.t2i(rng, kind="icon").prompt for _ in range(6)]
    assert got[:3] == ['text that says "Hope"', "headphone", "the flag of bahamas"]
    assert got[5] == "the wavy dash on the left, the mountain in the middle and the beer mug on the right"
    assert got[6].startswith("a comic strip with a pill: small at the bottom left on a light blue")
    assert got[9:12] == [
        "a beaver, styled like the reference",
        "a fast down button, styled like the reference",
        "the flag of saudi arabia, styled like the reference",
    ]
    assert got[12:] == [
        "syringe",
        "an emoji of the flag of st. helena ascension & tristan da cunha",
        "a kick scooter",
        "woman with headscarf icon",
        "a pig face",
        "customs icon",
    ]


def test_rich_is_the_default_and_deterministic_per_seed(icons):
    assert TaskSampler(icons, seed=0).captions == "rich"
    with pytest.raises(ValueError, match="unknown captions"):
        TaskSampler(icons, seed=0, captions="fancy")
    a, b, c = (TaskSampler(icons, seed=s) for s in (7, 7, 8))
    pa = [a.sample(t).prompt for t in TASKS for _ in range(20)]
    assert pa == [b.sample(t).prompt for t in TASKS for _ in range(20)]
    assert pa != [c.sample(t).prompt for t in TASKS for _ in range(20)]


def test_rich_captions_use_every_kind_of_name_and_form(icons, names):
    s = TaskSampler(icons, seed=0)
    rng = np.random.default_rng(0)
    fox = next(i for i in icons if i.name == "fox")
    prompts = [s.t2i_icon(rng, fox).prompt for _ in range(400)]
    assert all(p in cap.rich_icon_caption_space(names["fox"], fox.group) for p in prompts)
    assert {"fox", "a fox", "fox face", "a fox face"} <= set(prompts)
    assert any(p in ("draw me a fox", "a little fox") for p in prompts)
    assert sum("fox face" in p for p in prompts) > 50  # the alias is not a rarity
    flags = [s.t2i_icon(rng, next(i for i in icons if i.name == "canada")).prompt for _ in range(100)]
    assert "the flag of canada" in flags and "canada flag" in flags


def test_canonical_prompts_are_the_same_in_both_caption_styles(icons):
    """The evaluation passes `phrasing`; its prompts must not depend on the training captions."""
    rich, v1 = TaskSampler(icons, seed=0), TaskSampler(icons, seed=0, captions="v1")
    for make in (
        lambda s, r: s.t2i_icon(r, phrasing=1),
        lambda s, r: s.compose(r, phrasing=0),
        lambda s, r: s.storyboard(r, phrasing=0),
        lambda s, r: s.style(r, phrasing=2),
    ):
        ra, rb = np.random.default_rng(3), np.random.default_rng(3)
        assert [make(rich, ra).prompt for _ in range(10)] == [make(v1, rb).prompt for _ in range(10)]


# -- the free-phrasing suite ------------------------------------------------------------------------


def test_free_templates_are_not_training_templates():
    train = set(cap.ICON_SHORT_FORMS) | set(cap.ICON_SENTENCES)
    assert not train & set(fp.FREE_TEMPLATES)


def test_free_suite_prompts_are_never_training_captions(icons, names):
    """Every suite prompt (all icons, several seeds) against (a) every icon caption either caption
    style can produce, enumerated, and (b) 12,000 prompts the trainer's sampler draws from every
    task, rich and v1."""
    ctx = hs.EvalContext.build(icons, hs.EvalConfig(n_icons=len(icons)))
    suite = {
        _norm(c.prompt): c.meta["name"]
        for seed in range(3)
        for c in fp.free_icon_cases(ctx, np.random.default_rng([seed, 99]), len(ctx.icons))
    }
    assert len(suite) > 2 * len(ctx.icons)

    enumerated = set()
    for icon in icons:
        enumerated |= {_norm(p) for p in cap.rich_icon_caption_space(names[icon.name], icon.group)}
    assert not set(suite) & enumerated

    drawn = set()
    for style in ("rich", "v1"):
        s = TaskSampler(icons, seed=0, captions=style)
        rng = np.random.default_rng(1)
        drawn |= {_norm(s.t2i(rng, kind="icon").prompt) for _ in range(4000)}
        drawn |= {
            _norm(s.sample(t, rng).prompt) for t in ("compose", "storyboard", "style") for _ in range(300)
        }
    assert len(drawn) > 5000
    assert not set(suite) & drawn


def test_free_suite_cases(icons):
    ctx = hs.EvalContext.build(icons, hs.EvalConfig(n_icons=60))
    cases = fp.free_icon_cases(ctx, np.random.default_rng(0), 60)
    assert [c.meta["name"] for c in cases] == [i.name for i in ctx.icons]
    assert all(c.meta["name_used"] in ctx.names[c.meta["name"]] for c in cases)
    assert 0 < sum(not c.meta["first_name"] for c in cases) < 60  # aliases too, not only
    again = fp.free_icon_cases(ctx, np.random.default_rng(0), 60)
    assert [c.prompt for c in cases] == [c.prompt for c in again]
    assert list(hs.SUITES)[-4:] == ["t2i_icons_free", "words_styled", "compose_unnamed", "storyboard_ref"]  # appended: the others keep their seeds
