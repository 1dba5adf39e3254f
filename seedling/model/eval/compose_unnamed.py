"""The unnamed compose suite: references placed by their order or arranged, never named.

The harness's `compose` suite names every reference ("the fox on the left and the cat on the
right"). A designer also says which picture goes where without naming what is in it: by number
("image 2 on the left and image 1 on the right"), by ordinal ("the first picture at the top
left, ..."), or by arrangement alone ("put them side by side", "in a grid"). Half of the cases
are by order (a random assignment of references to the layout's slots, in one of ORDER_FORMS),
half arranged (the references in reading order, in one of ARRANGED_FORMS). The judge is
`compose`'s: each slot's crop retrieved among the references and a few distractors.
"""

from __future__ import annotations

import numpy as np

from seedling.model.data import captions as cap
from seedling.model.data import tasks as tk
from seedling.model.data.styles import composite

# item templates for one reference: {n} its number (1-based), {ord} its ordinal, {slot} the place
ORDER_FORMS = (
    ("", "image {n} {slot}"),
    ("place ", "the {ord} picture {slot}"),
    ("", "picture {n} goes {slot}"),
    ("", "the {ord} photo {slot}"),
)
# (layout kind, prompt); {count} is the number of references in words
ARRANGED_FORMS = (
    ("row", "put them side by side"),
    ("row", "the {count} images side by side"),
    ("row", "arrange the pictures in a row"),
    ("grid", "put the {count} images in a grid"),
    ("grid", "arrange them in a grid"),
)


def by_order_prompt(slot_phrases: list[str], assignment: list[int], rng: np.random.Generator) -> str:
    """A by-order prompt for assignment[slot] = reference index, items in reference order."""
    head, item = ORDER_FORMS[rng.integers(len(ORDER_FORMS))]
    by_ref = sorted(range(len(assignment)), key=lambda s: assignment[s])
    parts = [item.format(n=assignment[s] + 1, ord=cap.ORDINALS[assignment[s]], slot=slot_phrases[s]) for s in by_ref]
    return head + cap.join_and(parts)


def _arranged(ctx, rng: np.random.Generator) -> tk.Sample:
    kind, template = ARRANGED_FORMS[rng.integers(len(ARRANGED_FORMS))]
    counts = sorted(tk.ARRANGED_LAYOUTS[kind])
    n = counts[rng.integers(len(counts))]
    layout = tk.ARRANGED_LAYOUTS[kind][n]
    picked = rng.choice(len(ctx.icons), n, replace=False)
    icons = [ctx.icons[int(i)] for i in picked]
    boxes, _ = tk.LAYOUTS[layout]
    out = tk.canvas()
    for (x0, y0, x1, y1), icon in zip(boxes, icons):  # reading order: reference s in slot s
        tk.paste(out, tk.scaled_rgba(icon, x1 - x0), x0, y0)
    meta = {"layout": layout, "names": [i.name for i in icons], "slots": [(s, box) for s, box in enumerate(boxes)],
            "form": "arranged"}
    prompt = template.format(count=cap.NUMBER_WORDS[n])
    return tk.Sample("compose", prompt, [composite(i.rgba) for i in icons], None, [out], meta)


def unnamed_compose_cases(ctx, rng: np.random.Generator, n: int) -> list[tk.Sample]:
    """n compose cases, alternating by order and arranged; meta as `TaskSampler.compose`'s plus
    "form" and the judge's "distractors"."""
    cases = []
    for i in range(n):
        if i % 2 == 0:
            s = ctx.sampler.compose(rng, phrasing=1)
            slots = [r for r, _ in s.meta["slots"]]
            s = tk.Sample(s.task, by_order_prompt(list(tk.LAYOUTS[s.meta["layout"]][1]), slots, rng), s.refs,
                          s.mask, s.outputs, {**s.meta, "form": "by order"})
        else:
            s = _arranged(ctx, rng)
        pool = [ic.name for ic in ctx.icons if ic.name not in s.meta["names"]]
        k = min(ctx.cfg.n_distractors, len(pool))
        s.meta["distractors"] = [pool[j] for j in rng.choice(len(pool), k, replace=False)]
        cases.append(s)
    return cases
