"""The default expander: parse the prompt, ground its subjects with MiniLM, write training captions.

Adaptive budget, as Seedream's AdaCoT spends reasoning only where a prompt needs it:
- in the vocabulary already (any training phrasing): unchanged, no encoder call;
- a free-form single image: rewritten into the caption family it belongs to (icon, shapes,
  word, chart) with its subject grounded;
- a story or several subjects: decomposed into storyboard panels or a composition layout.
"""

from __future__ import annotations

import re
import time

from seedling.model.data.captions import with_article
from seedling.model.data.glyphs import font_in_prompt
from seedling.model.data.knowledge import WORD_COLORS
from seedling.model.prompt_expansion import lexicon as lx
from seedling.model.prompt_expansion import vocab as vc
from seedling.model.prompt_expansion.edits import plan_edit
from seedling.model.prompt_expansion.grounding import GROUND_THRESHOLD, Grounding, SentenceEncoder, VocabIndex
from seedling.model.prompt_expansion.layouts import (
    boxes_for_slots,
    resolve_scene,
)
from seedling.model.prompt_expansion.multi_image import MultiImagePlans, _kept
from seedling.model.prompt_expansion.parse import (
    clean_subject,
    core_subject,
    drop_positions,
    is_shape_prompt,
    parse_chart,
    parse_shapes,
    split_subjects,
    strip_quotes,
    word_to_render,
)
from seedling.model.prompt_expansion.recognize import Recognizer
from seedling.model.prompt_expansion.result import (
    DECOMPOSE,
    PASSTHROUGH,
    REWRITE,
    ExpansionResult,
    Match,
    Suggestion,
)
from seedling.model.prompt_expansion.story import parse_story
from seedling.model.prompt_expansion.vocab import Vocabulary
from seedling.model.task_table import STUDIO_TASKS

TASKS = STUDIO_TASKS  # what the studio expands prompts for (the control tasks have no tab yet)
MAX_WORD_LETTERS = 8  # the training words: common words of at most 8 letters, random 3-6 letter strings
_STYLE_PHRASES = re.compile(
    r"\b(?:(?:in|with)\s+(?:the\s+)?(?:same|this|that|its|their)\s+(?:style|look|manner|way)(?:\s+as\s+(?:the\s+)?"
    r"(?:reference|image|picture|example|one|this|that))?|(?:looks?|looking|styled|drawn|done|made|rendered|painted)?"
    r"\s*like\s+(?:this|that|the\s+reference|the\s+(?:image|picture|example))|the\s+same\s+style,?\s*(?:but)?|"
    r"same\s+style|in\s+the\s+style\s+of\s+(?:the\s+)?(?:reference|image|picture|example)|matching\s+the\s+"
    r"(?:reference|style)|styled\s+like\s+the\s+reference|the\s+same\s+way)\b",
    re.IGNORECASE,
)


_BACKGROUND_WORDS = frozenset({"background", "backdrop", "ground", "paper", "page"})
_INK_COLORS = sorted(set(WORD_COLORS))  # the colours a training word is drawn in


def word_look(typed: str) -> tuple[str, str, str | None]:
    """(ink colour among the training word colours, training font key, the background phrase or
    None) a word prompt asks for, read outside its quotes: '"SALE" in big crimson bold letters' ->
    ("red", "dejavu-sans-bold", None). A colour said of the background ("on a yellow background")
    is not the ink's; no ink colour said: black."""
    text = strip_quotes(typed)
    tokens = lx.tokenize(text)
    color, background, i = None, None, 0
    while i < len(tokens):
        found = lx.color_at(tokens, i)
        if found is None:
            i += 1
            continue
        name, used = found
        i += used
        if i < len(tokens) and tokens[i] in _BACKGROUND_WORDS:
            background = background or " ".join(tokens[i - used : i + 1])
        elif color is None:
            color = lx.nearest_color(name, _INK_COLORS)
    low = f" {text.lower()} "
    font = font_in_prompt(low.replace(" monospace ", " typewriter ").replace(" monospaced ", " typewriter "))
    return color or "black", font, background


class GroundedExpander(MultiImagePlans):
    """Expands prompts with the parser, the vocabulary and MiniLM groundings (see the module doc).

    `text_encoder` is a `model.text_encoder.TextEncoder` (the pipeline's, `pipe.text_encoder`);
    a new one is loaded when none is given.
    """

    name = "grounded"

    def __init__(
        self,
        text_encoder=None,
        vocab: Vocabulary | None = None,
        cache_dir=None,
        threshold: float = GROUND_THRESHOLD,
    ):
        if text_encoder is None:
            from seedling.model.text_encoder import TextEncoder

            text_encoder = TextEncoder()
        self.vocab = vocab or Vocabulary.load(cache_dir)
        self.encoder = SentenceEncoder(text_encoder)
        self.index = VocabIndex.build(self.vocab, self.encoder, cache_dir)
        self.recognizer = Recognizer(self.vocab)
        self.threshold = threshold
        self._names = {i.name for i in self.vocab.icons if not i.is_flag}

    # -- entry point --------------------------------------------------------------------------
    def expand(
        self, prompt: str, task: str = "t2i", num_outputs: int | None = None, n_refs: int | None = None
    ) -> ExpansionResult:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        t0 = time.perf_counter()
        typed = prompt or ""
        text = " ".join(typed.split())
        result = self._passthrough(typed, text, task)
        if result is None:
            handler = {
                "t2i": self._t2i,
                "edit": self._edit,
                "inpaint": self._inpaint,
                "compose": self._compose,
                "storyboard": self._storyboard,
                "style": self._style,
            }[task]
            result = handler(typed, text, num_outputs=num_outputs, n_refs=n_refs)
        result.seconds = time.perf_counter() - t0
        return result

    def recognize(self, prompt: str, task: str) -> bool:
        """True when `prompt` is already a training caption of `task` (it would pass through)."""
        return any(r.task == task for r in self.recognizer.recognize(prompt))

    # -- passthrough --------------------------------------------------------------------------
    def _passthrough(self, typed: str, text: str, task: str) -> ExpansionResult | None:
        if not text:
            note = [] if task == "style" else ["The prompt is empty."]
            return ExpansionResult(typed, typed, task, PASSTHROUGH, task == "style", notes=note)
        found = self.recognizer.recognize(text)

        def known(r, **fields) -> ExpansionResult:  # a training caption: passed through unchanged
            return ExpansionResult(typed, typed, task, PASSTHROUGH, True, num_outputs=r.num_outputs, **fields)

        same = [r for r in found if r.task == task]
        if same:
            r = same[0]
            return known(r, matches=[Match(n, "icon", n, 1.0) for n in r.names],
                         notes=["Already in the model's vocabulary: unchanged."],
                         boxes=boxes_for_slots(r.slots) if r.slots else None)
        if task in ("storyboard", "style") and any(r.family == "icon" for r in found):
            return None  # an icon caption is the subject of a storyboard or a style job: wrap it
        if found:  # a training caption of another task: keep it, point to the right tab
            r = found[0]
            return known(r, suggestion=Suggestion(r.task, typed, r.num_outputs), notes=[
                f"This is a {r.task} prompt the model knows; it works best in the {_TAB[r.task]} tab."])
        return None

    # -- subjects -----------------------------------------------------------------------------
    def _forms(self, phrase: str) -> list[str]:
        """Query texts for a subject, most specific first: the whole phrase, its core and its head
        ('a cheerful fox waving' -> 'a fox waving' -> 'a fox')."""
        tokens = drop_positions(clean_subject(phrase))
        while len(tokens) > 1 and tokens[0] in lx.NUMBER_WORDS:
            tokens = tokens[1:]
        if not tokens:
            return []
        forms = [tokens, core_subject(tokens), core_subject(tokens, cut_participles=True)]
        for f in forms[1:]:
            if len(f) == 1 and f[0].endswith("s") and f[0][:-1] in self._names:  # "cats" -> "cat"
                f[0] = f[0][:-1]
        return list(dict.fromkeys(with_article(" ".join(f)) for f in forms))

    def ground(self, phrases: list[str], prefixes: bool = False) -> list[Grounding]:
        """Ground subject phrases in one encoder call; exact icon names skip the encoder.

        `prefixes`: also try the phrase's first 1-4 words (a story sentence: 'the fox wakes up').
        """
        subjects, exact = [], {}
        for k, phrase in enumerate(phrases):
            forms = self._forms(phrase)
            if prefixes:
                tokens = drop_positions(clean_subject(phrase))
                forms += [with_article(" ".join(tokens[:n])) for n in range(1, min(4, len(tokens)) + 1)]
                forms = list(dict.fromkeys(forms))
            whole = forms[0].split(" ", 1)[1] if forms else ""
            if whole in self._names:
                exact[k] = Grounding(phrase, whole, "icon", 1.0, closest=whole)
            elif forms:
                subjects.append((k, phrase, forms))
        found = self.index.ground_many([(p, f) for _, p, f in subjects], self.threshold)
        out: list[Grounding] = [Grounding(p, None, None, 0.0) for p in phrases]
        for (k, _, _), g in zip(subjects, found):
            out[k] = g
        for k, g in exact.items():
            out[k] = g
        return out

    def _noun(self, g: Grounding, definite: bool = False) -> str:
        if g.kind == "shape":
            return f"the {g.value}" if definite else with_article(g.value)
        return self.vocab.icon(g.value).noun(definite)

    @staticmethod
    def _match(g: Grounding) -> Match:
        return Match(
            g.phrase.strip(),
            g.kind or "icon",
            g.value or "",
            round(g.score, 4),
            tuple((v, round(s, 4)) for v, s in g.alternatives),
        )

    def _not_grounded(self, typed: str, task: str, gs: list[Grounding]) -> ExpansionResult:
        notes = [
            f"Not grounded: nothing in the model's vocabulary is close to '{g.phrase.strip()}' (closest: "
            f"'{g.closest}', similarity {g.score:.2f}; a match needs {self.threshold:.2f}). The model would "
            "likely draw noise: rephrase with an object, animal, face, flag, shape, word or chart."
            for g in gs
            if not g.grounded
        ]
        return _kept(typed, task, notes, [self._match(g) for g in gs])

    # -- text to image ------------------------------------------------------------------------
    def _t2i(self, typed: str, text: str, **_) -> ExpansionResult:
        word = word_to_render(text)
        if word is not None:
            return self._word(typed, word)
        chart = parse_chart(text)
        if chart is not None:
            return self._chart(typed, chart)
        story = parse_story(text)
        if story is not None:
            board = self._storyboard(typed, text, num_outputs=None)
            if board.grounded:
                character = next((m for m in board.matches if m.kind == "icon"), None)
                first = self._noun(Grounding(character.phrase, character.value, "icon", character.score))
                note = (
                    f"This reads as a story of {board.num_outputs} panels: the Storyboard tab draws it as one "
                    f"consistent strip. Here: the character alone, '{first}'."
                )
                suggestion = Suggestion("storyboard", board.prompt, board.num_outputs)
                return ExpansionResult(
                    typed,
                    first,
                    "t2i",
                    DECOMPOSE,
                    True,
                    matches=board.matches,
                    notes=[note, *board.notes],
                    suggestion=suggestion,
                )
        plan = parse_shapes(text)
        if is_shape_prompt(plan):
            objects, notes, matches = resolve_scene(plan)
            return ExpansionResult(
                typed, vc.scene_caption(objects), "t2i", REWRITE, True, matches=matches, notes=notes
            )
        return self._subjects(typed, text)

    def _word(self, typed: str, word: str) -> ExpansionResult:
        notes = []
        if " " in word.strip():
            notes.append("The model was trained on single words; several words may not be readable.")
        elif len(word) > MAX_WORD_LETTERS:
            notes.append(f"The model was trained on words of up to {MAX_WORD_LETTERS} letters.")
        color, font, background = word_look(typed)
        if background:
            notes.append(f"The model draws words on white: '{background}' was left out.")
        matches = [Match(word, "text", word, 1.0)]
        if color != "black":
            matches.append(Match(color, "color", color, 1.0))
        return ExpansionResult(
            typed,
            vc.text_caption(word, color, font),
            "t2i",
            REWRITE,
            True,
            matches=matches,
            notes=notes,
        )

    def _chart(self, typed: str, chart) -> ExpansionResult:
        notes = []
        if chart.out_of_range:
            notes.append(f"Bar values must be 1 to 9; dropped {', '.join(map(str, chart.out_of_range))}.")
        values = chart.values[:5]
        if len(chart.values) > 5:
            notes.append("The model was trained on charts of 2 to 5 bars: keeping the first 5 values.")
        if len(values) < 2:
            notes.append(
                "Give the chart at least two bar values from 1 to 9 (e.g. 'a bar chart of 3, 7 and 5')."
            )
            return _kept(typed, "t2i", notes)
        colors = chart.colors[: len(values)] if chart.colors else None
        prompt = vc.chart_caption(values, colors)
        m = [Match(", ".join(map(str, values)), "values", ", ".join(map(str, values)), 1.0)]
        return ExpansionResult(typed, prompt, "t2i", REWRITE, True, matches=m, notes=notes)

    def _subjects(self, typed: str, text: str) -> ExpansionResult:
        parts = split_subjects(text)
        whole_tokens = drop_positions(clean_subject(text))
        single = len(parts) < 2 or " ".join(whole_tokens) in self._names
        gs = self.ground([text] + ([] if single else parts))
        whole, part_gs = gs[0], gs[1:]
        multi = not single and all(g.grounded for g in part_gs) and len({g.value for g in part_gs}) >= 2
        if multi:
            return self._several(typed, parts, part_gs)
        if not whole.grounded:
            return self._not_grounded(typed, "t2i", [whole])
        prompt = self._noun(whole)
        if whole.kind == "shape":
            prompt = vc.scene_caption([(*whole.value.split(), "center")])
        notes = []
        dropped = [
            t
            for t in whole_tokens
            if t not in whole.value.split() and t not in lx.ARTICLES and t not in lx.NUMBER_WORDS
        ]
        if dropped:
            notes.append(
                f"Drawn as the icon '{whole.value}' (similarity {whole.score:.2f}); "
                f"'{' '.join(dropped)}' is not something the model can draw."
            )
        count = next(
            (lx.NUMBER_WORDS[t] for t in whole_tokens if t in lx.NUMBER_WORDS and t not in ("a", "an")), 0
        )
        if count > 1:
            notes.append(f"The model draws one subject per image: set Images to {count} for {count} of them.")
        return ExpansionResult(
            typed,
            prompt,
            "t2i",
            REWRITE,
            True,
            num_outputs=count if count > 1 else None,
            matches=[self._match(whole)],
            notes=notes,
        )

    # -- edits --------------------------------------------------------------------------------
    def _edit(self, typed: str, text: str, **_) -> ExpansionResult:
        plan = plan_edit(text)
        if plan.prompt is None:
            return _kept(typed, "edit", plan.notes, plan.matches)
        return ExpansionResult(
            typed, plan.prompt, "edit", REWRITE, True, matches=plan.matches, notes=plan.notes
        )

    def _inpaint(self, typed: str, text: str, **_) -> ExpansionResult:
        plan = parse_shapes(text)
        if plan is None:
            need = "Masked edits were trained on shapes: say which shape fills the painted area"
            return _kept(typed, "inpaint", [f"{need} ('a red circle')."])
        o = plan.objects[0]
        notes = [] if o.color else ["No colour given: using black."]
        matches = [Match(o.color_word, "color", o.color, 1.0)] if o.color_word else []
        prompt = vc.inpaint_prompt(o.color or "black", o.shape)
        return ExpansionResult(typed, prompt, "inpaint", REWRITE, True, matches=matches, notes=notes)

    # -- style --------------------------------------------------------------------------------
    def _style(self, typed: str, text: str, **_) -> ExpansionResult:
        subject = _STYLE_PHRASES.sub(" ", text)
        subject = " ".join(subject.split()).strip(" ,.")
        if not subject:
            return ExpansionResult(typed, typed, "style", PASSTHROUGH, True)
        (g,) = self.ground([subject])
        if not g.grounded:
            return self._not_grounded(typed, "style", [g])
        return ExpansionResult(
            typed, vc.style_prompt(self._noun(g)), "style", REWRITE, True, matches=[self._match(g)]
        )


_TAB = {
    "t2i": "Generate",
    "edit": "Edit",
    "inpaint": "Edit",
    "compose": "Compose",
    "storyboard": "Storyboard",
    "style": "Compose (style mode)",
}
