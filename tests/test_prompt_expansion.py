"""Prompt expansion (model/prompt_expansion): passthrough of every training-caption template,
grounding accuracy on free-form prompts, the parser, decompositions, "not grounded", the LM
expander with a tiny random model. The real MiniLM (PyPI package) grounds; nothing is downloaded.

Speed (<= 20 ms per prompt) is measured by bench/bench_pe.py, not asserted here.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from seedling.model.data import captions as cap
from seedling.model.data import tasks as tk
from seedling.model.data.icons import load_icons
from seedling.model.prompt_expansion import lexicon as lx
from seedling.model.prompt_expansion import parse as ps
from seedling.model.prompt_expansion import story as st
from seedling.model.prompt_expansion.evaluation import expected_prompts, is_correct, load_prompt_set
from seedling.model.prompt_expansion.grounded import GroundedExpander
from seedling.model.prompt_expansion.result import DECOMPOSE, PASSTHROUGH, REWRITE
from seedling.model.task_table import STUDIO_TASKS

PROMPTS = Path(__file__).parent / "data" / "pe_prompts.jsonl"
# Measured 0.947 (162/171) on this set; the misses are MiniLM neighbours ("a chimp" -> "wind chime").
MIN_GROUNDING_ACCURACY = 0.90


@pytest.fixture(scope="module")
def icons():
    return load_icons()


@pytest.fixture(scope="module")
def pe(icons) -> GroundedExpander:
    return GroundedExpander()


@pytest.fixture(scope="module")
def rows():
    return load_prompt_set(PROMPTS)


def _training_captions(icons, per_task: int = 250):
    """(prompt, task) for every icon in all 4 phrasings and `per_task` samples of every task."""
    rng = np.random.default_rng(0)
    out = [(cap.icon_caption(i.name, i.group, rng, k), "t2i") for i in icons for k in range(4)]
    # The expander's vocabulary is the shipped model's: its captions are the "v1" style (the
    # rich captions of new training runs join the vocabulary with the model trained on them).
    sampler = tk.TaskSampler(icons, 0, captions="v1")
    for task in STUDIO_TASKS:  # the studio's tasks: the control tasks' prompts are t2i captions
        out += [(sampler.sample(task, rng).prompt, task) for _ in range(per_task)]
    for kind in tk.T2I_KINDS:  # every t2i family, whatever the mix
        out += [(sampler.t2i(rng, kind).prompt, "t2i") for _ in range(per_task // 2)]
    for kind in tk.EDIT_KINDS:
        out += [(sampler.edit(rng, kind).prompt, "edit") for _ in range(per_task // 4)]
    # the text task's captions (a word with its ink and font), typed in Generate
    out += [(sampler.text(rng).prompt, "t2i") for _ in range(per_task)]
    for phrasing in range(4):  # every phrasing of the phrasing-indexed captions
        out += [(sampler.t2i_shapes(rng, n, phrasing).prompt, "t2i") for n in (1, 2, 3, 4)]
        out += [(sampler.storyboard(rng, phrasing=phrasing).prompt, "storyboard")]
        out += [(sampler.compose(rng, n, phrasing=phrasing % 2).prompt, "compose") for n in (2, 3, 4)]
        out += [(sampler.style(rng, phrasing=phrasing).prompt, "style")]
    return out


# --------------------------------------------------------------------------------------------
# Adaptive budget: the vocabulary passes through unchanged
# --------------------------------------------------------------------------------------------


def test_every_training_caption_passes_through_unchanged_without_the_encoder(pe, icons, monkeypatch):
    def no_encoder(texts):
        raise AssertionError(f"passthrough must not run the encoder (asked for {texts})")

    monkeypatch.setattr(pe.encoder, "_encode", no_encoder)
    captions = _training_captions(icons)
    changed = []
    for prompt, task in captions:
        res = pe.expand(prompt, task)
        if res.prompt != prompt or res.budget != PASSTHROUGH or not res.grounded:
            changed.append((task, prompt, res.prompt))
    assert len(captions) > 8000
    assert changed == [], f"{len(changed)} of {len(captions)} training captions changed: {changed[:5]}"


def test_a_word_keeps_its_ink_and_font_when_rewritten(pe):
    """Free-form word prompts become the text task's caption with the ink (nearest training word
    colour) and the font they ask for; a background colour is left out with a note."""
    cases = {
        'a poster that says "SALE" in big crimson bold letters': 'the word "SALE" in red in bold letters',
        'write "hello" in monospace navy letters': 'the word "hello" in blue in a typewriter font',
        'the text "Cafe" in a bold serif font, green': 'the word "Cafe" in green in a bold serif font',
        'a sign reading "open"': 'the word "open"',
    }
    for typed, want in cases.items():
        res = pe.expand(typed, "t2i")
        assert (res.prompt, res.budget) == (want, REWRITE), typed
        assert pe.expand(res.prompt, "t2i").budget == PASSTHROUGH
    res = pe.expand('the word "open" in red on a yellow background', "t2i")
    assert res.prompt == 'the word "open" in red'
    assert any("yellow background" in n for n in res.notes), res.notes


def test_passthrough_reports_storyboard_panels_and_compose_references(pe, icons):
    sampler = tk.TaskSampler(icons, 1)
    rng = np.random.default_rng(1)
    story = sampler.storyboard(rng, n_panels=5)
    assert pe.expand(story.prompt, "storyboard").num_outputs == 5
    typed_elsewhere = pe.expand(story.prompt, "t2i")  # a storyboard caption typed in Generate
    assert typed_elsewhere.prompt == story.prompt and typed_elsewhere.suggestion.task == "storyboard"


# --------------------------------------------------------------------------------------------
# Grounding accuracy on the free-form set
# --------------------------------------------------------------------------------------------


def test_free_form_set_is_not_in_the_vocabulary_and_names_real_icons(pe, rows):
    assert len(rows) >= 100
    for r in rows:
        assert not pe.recognize(r["prompt"], r["task"]), f"{r['prompt']!r} is a training caption already"
        for name in (
            r.get("icons", []) + [n for s in r.get("subjects", []) for n in s] + r.get("character", [])
        ):
            assert name in pe.vocab.by_name, f"{name!r} is not an icon name"


def test_grounding_accuracy_on_free_form_prompts(pe, rows):
    ok = [
        is_correct(r, pe.expand(r["prompt"], r["task"], n_refs=len(r.get("refs", [])) or None), pe.vocab)
        for r in rows
    ]
    accuracy = float(np.mean(ok))
    misses = [r["prompt"] for r, good in zip(rows, ok) if not good]
    assert accuracy >= MIN_GROUNDING_ACCURACY, f"accuracy {accuracy:.3f}; misses: {misses}"
    for kind in ("shapes", "word", "chart", "story", "edit"):  # the table-driven kinds are exact
        of_kind = [good for r, good in zip(rows, ok) if r["kind"] == kind]
        assert all(of_kind), (
            f"{kind}: {[r['prompt'] for r, g in zip(rows, ok) if r['kind'] == kind and not g]}"
        )


def test_every_grounded_expansion_is_a_training_caption_of_its_task(pe, rows):
    """What the expander writes is itself in the vocabulary: expanding it again changes nothing."""
    for r in rows:
        res = pe.expand(r["prompt"], r["task"], n_refs=len(r.get("refs", [])) or None)
        if not res.grounded:
            continue
        assert pe.recognize(res.prompt, r["task"]), (r["prompt"], res.prompt)
        again = pe.expand(res.prompt, r["task"])
        assert again.prompt == res.prompt and again.budget == PASSTHROUGH
        if res.suggestion is not None:
            assert pe.recognize(res.suggestion.prompt, res.suggestion.task), res.suggestion


def test_examples_from_the_issue(pe):
    assert pe.expand("a cheerful fox waving").prompt == "a fox"
    assert pe.expand("a crimson ball in the upper left corner").prompt == "a red circle at the top left"
    assert pe.expand("a little kitty").prompt in ("a cat", "a cat face")
    assert pe.expand('a sign reading "open"').prompt == 'the word "open"'


# --------------------------------------------------------------------------------------------
# Parser units
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, cells",
    [
        ("in the upper left corner", ("top left",)),
        ("top-left", ("top left",)),
        ("at the very bottom", ("bottom",)),
        ("on the right-hand side", ("right",)),
        ("in the centre of the picture", ("center",)),
        ("northwest", ("top left",)),
        ("in the middle left", ("left",)),
        ("along the top row", ("top left", "top", "top right")),
        ("in each corner", lx.CORNERS),
    ],
)
def test_position_phrases(text, cells):
    tokens = lx.tokenize(text)
    assert lx.position_at(tokens, 0) == (cells, len(tokens))


def test_position_words_that_are_not_positions():
    assert lx.position_at(lx.tokenize("right in the middle"), 0) is None  # an adverb, then a position
    assert lx.position_at(lx.tokenize("up"), 0) is None  # "thumbs up"
    assert lx.position_at(lx.tokenize("in the forest"), 0) is None


@pytest.mark.parametrize(
    "word, palette, background",
    [
        ("crimson", "red", "red"),
        ("navy", "blue", "blue"),
        ("lilac", "purple", "purple"),
        ("gold", "yellow", "yellow"),
        ("tangerine", "orange", "orange"),
        ("charcoal", "black", "gray"),
        ("pink", "red", "pink"),
    ],
)
def test_colour_names_map_to_the_model_colours(word, palette, background):
    assert lx.to_palette(word) == palette
    assert lx.to_background(word) == background


def test_colour_phrases():
    assert lx.color_at(lx.tokenize("navy blue box"), 0) == ("blue", 2)
    assert lx.color_at(lx.tokenize("sky blue"), 0) == ("light blue", 2)
    assert lx.color_at(lx.tokenize("a lemon"), 1) is None  # a fruit, not a colour, on its own


def test_quoted_text_and_words_to_render():
    assert ps.quoted_texts('a sign reading "open" and “close”') == ["open", "close"]
    assert ps.quoted_texts("a label saying 'home'") == ["home"]
    assert ps.quoted_texts("the cat's hat") == []  # an apostrophe is no quote
    assert ps.word_to_render("the word rain written out") == "rain"
    assert ps.word_to_render("a fox in the snow") is None


def test_chart_values():
    c = ps.parse_chart("a chart with three bars: five, two and eight")
    assert c.values == [5, 2, 8]  # "three bars" is the count, not a value
    assert ps.parse_chart("a fox") is None
    assert ps.parse_chart("a bar chart of 12 and 3").out_of_range == [12]


def test_shape_objects_counts_colours_positions_relations():
    plan = ps.parse_shapes(
        "two scarlet dots, one on the left and one on the right, and a navy box at the top"
    )
    assert [(o.count, o.color, o.shape, o.cells) for o in plan.objects] == [
        (2, "red", "circle", ["left", "right"]),
        (None, "blue", "square", ["top"]),
    ]
    rel = ps.parse_shapes("a red circle above a blue square")
    assert [(r.kind, r.a, r.b) for r in rel.relations] == [("above", 0, 1)]
    assert ps.parse_shapes("three green triangles in a row").arrangement == "row"
    assert not ps.is_shape_prompt(ps.parse_shapes("a soccer ball"))  # an icon's name
    assert ps.is_shape_prompt(ps.parse_shapes("a red ball"))


def test_subject_cleanup():
    tokens = ps.clean_subject("please draw me an image of a cheerful fox waving on a sunny day")
    assert tokens[:3] == ["cheerful", "fox", "waving"]
    assert ps.core_subject(tokens) == ["fox", "waving"]
    assert ps.core_subject(tokens, cut_participles=True) == ["fox"]
    assert ps.split_subjects("a fox and a kitty") == ["a fox", "a kitty"]


def test_story_structure():
    s = st.parse_story("first the fox wakes up, then it runs through the forest, finally it sleeps")
    assert s.panels == ["the fox wakes up", "it runs through the forest", "it sleeps"]
    s = st.parse_story("a cat: plays in the garden; eats dinner; sleeps at night")
    assert s.character == "a cat" and len(s.panels) == 3
    assert st.parse_story("a fox next to a tree") is None  # no sequence cue
    assert st.panel_scene("it sleeps under the moon")["background"] == "purple"
    assert st.panel_scene("far away in space") == {"size": "small", "position": None, "background": "purple"}


# --------------------------------------------------------------------------------------------
# Decompositions and "not grounded"
# --------------------------------------------------------------------------------------------


def test_story_becomes_storyboard_panels(pe):
    res = pe.expand(
        "first the fox wakes up, then it runs through the forest, finally it sleeps under the moon",
        "storyboard",
    )
    assert res.budget == DECOMPOSE and res.num_outputs == 3
    assert res.prompt.startswith("a storyboard of a fox: ")
    backgrounds = [
        p.rsplit(" background", 1)[0].split(" on ")[-1] for p in res.prompt.split(": ", 1)[1].split(", then ")
    ]
    assert all(a != b for a, b in itertools.pairwise(backgrounds))  # every panel changes the scene
    one_line = pe.expand("a penguin", "storyboard", num_outputs=4)  # a subject alone: the tab's panel count
    assert one_line.num_outputs == 4 and one_line.prompt.count(", then ") == 3
    in_generate = pe.expand("first the fox wakes up, then it sleeps")  # typed in the Generate tab
    assert in_generate.prompt == "a fox" and in_generate.suggestion.task == "storyboard"


def test_several_subjects_suggest_a_composition(pe):
    res = pe.expand("a fox and a kitty, next to an owl")
    assert res.budget == DECOMPOSE and res.prompt == "a fox"
    s = res.suggestion
    assert s.task == "compose" and len(s.steps) == 4  # generate three, then compose
    assert s.prompt.startswith("the fox on the left") and pe.recognize(s.prompt, "compose")
    placed = pe.expand("the kitty on the right and the puppy on the left", "compose", n_refs=2)
    assert placed.prompt == "the dog on the left and the cat on the right"


def test_not_grounded_says_so_and_keeps_the_prompt(pe):
    res = pe.expand("the philosophy of existentialism")
    assert not res.grounded and res.prompt == "the philosophy of existentialism"
    assert res.notes and res.notes[0].startswith("Not grounded")
    assert "noise" in res.notes[0]
    assert res.matches[0].value == "" and res.matches[0].score < 0.55
    assert pe.expand("a bar chart").budget == PASSTHROUGH  # an icon is named "bar chart"


def test_edits_inpaint_and_style_are_rewritten_into_training_instructions(pe):
    assert pe.expand("please recolour the blue box on the left to crimson", "edit").prompt == (
        "make the blue square on the left red"
    )
    assert pe.expand("make the backdrop lavender", "edit").prompt == "make the background purple"
    assert not pe.expand("make it prettier", "edit").grounded
    assert pe.expand("a golden pyramid", "inpaint").prompt == "a yellow triangle"
    assert pe.expand("", "style").budget == PASSTHROUGH  # a style job needs no prompt


def test_result_is_json_ready(pe):
    res = pe.expand("a little kitty")
    data = json.loads(json.dumps(res.to_dict()))
    assert data["prompt"] == res.prompt and data["budget"] == REWRITE and data["matches"][0]["value"]


def test_expected_prompts_cover_each_row(pe, rows):
    for r in rows:
        if r["kind"] in ("icon", "shapes", "word", "chart", "compose", "edit", "inpaint", "style"):
            assert expected_prompts(r, pe.vocab)


def test_vocabulary_embeddings_are_cached_on_disk(pe, tmp_path, monkeypatch):
    from seedling.model.prompt_expansion.grounding import VocabIndex

    first = VocabIndex.build(pe.vocab, pe.encoder, tmp_path)
    assert len(list(tmp_path.glob("pe_vocab_*.npy"))) == 1

    def no_encoder(*args, **kwargs):
        raise AssertionError("a cached vocabulary must not be encoded again")

    monkeypatch.setattr(pe.encoder, "encode_uncached", no_encoder)
    second = VocabIndex.build(pe.vocab, pe.encoder, tmp_path)
    assert np.array_equal(first._vectors.numpy(), second._vectors.numpy())


# --------------------------------------------------------------------------------------------
# The LM expander, with a tiny random-weight model built from a config
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 with random weights and the MiniLM tokenizer: nothing downloaded."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from seedling.model.text_encoder import minilm_path

    folder = tmp_path_factory.mktemp("tiny-lm")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder


def test_lm_expander_is_grounded_by_the_default_expander(pe, tiny_lm_dir, monkeypatch):
    from seedling.model.prompt_expansion.lm import CausalLMExpander

    lm = CausalLMExpander(tiny_lm_dir, pe, max_new_tokens=8)
    assert lm.name == f"lm:{tiny_lm_dir.name}"
    # A random LM writes junk: the grounded expansion is kept, and the note shows what the LM wrote.
    res = lm.expand("a little kitty")
    assert res.expander == lm.name and res.prompt in ("a cat", "a cat face")
    assert any(n.startswith(f"{lm.name} wrote:") for n in res.notes)
    assert lm.rewrite("a little kitty") == lm.rewrite("a little kitty")  # greedy: deterministic
    # Adaptive budget: the vocabulary passes through without running the LM.
    monkeypatch.setattr(lm.model, "generate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("LM ran")))
    assert lm.expand("a fox").prompt == "a fox"
    # A rewrite that is a training caption is taken.
    monkeypatch.setattr(lm, "rewrite", lambda prompt, task="t2i", hints=None: "a cat")
    taken = lm.expand("a small domestic feline")
    assert taken.prompt == "a cat" and taken.typed == "a small domestic feline"
    assert taken.notes[0] == f"Rewritten by {lm.name}."


def test_load_expander_rejects_a_folder_that_is_no_model(tmp_path):
    from seedling.model.prompt_expansion.lm import CausalLMExpander

    with pytest.raises(FileNotFoundError, match="no config.json"):
        CausalLMExpander(tmp_path, grounded=None)  # type: ignore[arg-type]


def test_compose_results_carry_each_references_box(pe):
    placed = pe.expand("the kitty on the right and the puppy on the left", "compose", n_refs=2)
    assert placed.boxes == [(0.5, 0.25, 1.0, 0.75), (0.0, 0.25, 0.5, 0.75)]  # kitty (ref 1) right
    by_order = pe.expand("the second image on the left and the first one on the right", "compose", n_refs=2)
    assert by_order.prompt == "put the first image on the right and the second image on the left"
    assert by_order.boxes[0][0] == 0.5 and by_order.boxes[1][2] == 0.5  # first right, second left


def test_unnamed_references_side_by_side_or_in_a_grid(pe):
    row = pe.expand("put them side by side", "compose", n_refs=3)
    assert row.grounded and row.budget == REWRITE and pe.recognize(row.prompt, "compose")
    assert [b[0] for b in row.boxes] == sorted(b[0] for b in row.boxes)  # first image leftmost
    grid = pe.expand("arrange them in a grid", "compose", n_refs=4)
    assert grid.grounded and len({b[:2] for b in grid.boxes}) == 4
    refused = pe.expand("put them side by side", "compose", n_refs=4)
    assert not refused.grounded and "side by side" in refused.notes[0] and "2 or 3" in refused.notes[0]


def test_training_captions_pass_through_with_their_boxes(pe):
    named = pe.expand("the dog on the left and the cat on the right", "compose", n_refs=2)
    assert named.budget == PASSTHROUGH and named.boxes == [(0.0, 0.25, 0.5, 0.75), (0.5, 0.25, 1.0, 0.75)]
    ordered = pe.expand("put the second image at the top left, the first image at the top right and "
                        "the third image at the bottom", "compose", n_refs=3)
    assert ordered.budget == PASSTHROUGH
    assert ordered.boxes[1][:2] == (0.0, 0.0) and ordered.boxes[0][0] == 0.5 and ordered.boxes[2][1] == 0.5
