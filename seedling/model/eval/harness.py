"""DreamEval-lite harness: build evaluation cases, generate, judge, aggregate.

Each suite draws its cases from `TaskSampler` with its own seeded generator, so a suite's cases
do not depend on which other suites run or on `limit` (a quick run scores a prefix of the full
run's cases). A generator (generators.py) turns a case (`Sample`) into output images:
`PipelineGenerator` runs the model, `OracleGenerator` returns the ground-truth targets, which must
score ~100% on every suite; that is the proof the judges work.

Suites and their judges (model/eval/detectors.py):
  t2i_icons          retrieval among the evaluated icons (top-1, top-5) and among all icons
  t2i_icons_free     the same judge; prompts in phrasings no training caption uses (free_phrasing.py)
  shapes_1/shapes_2  exact colour/shape/count/cell of 1 or 2 objects
  words              Tesseract OCR, dictionary words of at most 8 letters
  words_styled       the same, prompts that name the ink and the font (the text task's), plus the
                     ink colour read off the letters (exact_and_ink)
  charts             bar values read off the image
  edit_<kind>        the kind's detector on the result + PSNR outside the edited region
  inpaint            exact scene + PSNR outside the mask
  compose            per-slot retrieval among the references and distractors
  compose_unnamed    the same judge, references placed by order ("image 2 on the left ...") or
                     arranged ("side by side", "in a grid"), never named (compose_unnamed.py)
  storyboard         per-panel identity of the character (the named icon in every panel; and
                     named_top5: the named icon among each panel's 5 nearest), and
                     identity_kept: every panel shows the same icon as the first, whichever it is;
                     scene_background / scene_position: each panel's scene words followed
                     (det.storyboard_scene), and identity_and_scenes: both, in every panel
  storyboard_ref     the same judges, the character's picture given as the storyboard's reference
The control suites (edges, sketch, colourise, upscale) are in control_suites.py; eval/run.py runs
them after these (`evaluate(..., registry=...)`), and skips them for a model without their tasks.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from seedling.model.data import tasks as tk
from seedling.model.data.icon_names import icon_names
from seedling.model.data.icons import Icon
from seedling.model.data.styles import composite
from seedling.model.eval import detectors as det
from seedling.model.eval import ocr
from seedling.model.eval.compose_unnamed import unnamed_compose_cases
from seedling.model.eval.free_phrasing import free_icon_cases

PSNR_CAP = 60.0  # dB; identical pixels (PSNR = inf) count as this in means


@dataclass
class EvalConfig:
    n_icons: int = 200  # icons evaluated for t2i; also the pool for compose and storyboards
    n_shapes: int = 50  # per object count (1 and 2)
    n_words: int = 50
    n_charts: int = 20
    n_edits: int = 10  # per edit kind
    n_inpaint: int = 20
    n_compose: int = 30
    n_storyboard: int = 20
    n_distractors: int = 6  # extra candidates per compose judgement
    seed: int = 0
    limit: int | None = None  # caps the cases of every suite (quick runs)
    suites: tuple[str, ...] | None = None  # None = all
    # PSNR outside the edit at or above which the rest counts as kept. Ground truth after the
    # default autoencoder's round trip keeps 25-37 dB on shape scenes and words, but only 18-24 dB
    # on the icon pixels a background edit keeps (fine detail); redrawing instead of editing
    # lands well below either line.
    preserve_db: float = 20.0
    preserve_db_icon: float = 16.0
    contact_per_suite: int = 8


# --------------------------------------------------------------------------------------------
# Context and suites
# --------------------------------------------------------------------------------------------


def select_eval_icons(
    icons: list[Icon], n: int, seed: int = 0, index: det.IconIndex | None = None
) -> list[Icon]:
    """`n` icons chosen by seed, without look-alikes (no judge can tell those apart), by name."""
    index = index or det.IconIndex(icons)
    order = np.random.default_rng([seed, 1234]).permutation(len(icons))
    chosen: list[Icon] = []
    for i in order:
        if len(index.aliases(icons[i].name)) == 1:
            chosen.append(icons[i])
        if len(chosen) == n:
            break
    if len(chosen) < min(n, 4):
        raise ValueError(f"need at least 4 distinct icons to evaluate, found {len(chosen)}")
    return sorted(chosen, key=lambda i: i.name)


@dataclass
class EvalContext:
    cfg: EvalConfig
    icons: list[Icon]  # the evaluated icons
    sampler: tk.TaskSampler
    index: det.IconIndex  # "center" framing over the evaluated icons
    index_all: det.IconIndex  # "center" framing over every icon
    index_crop: det.IconIndex  # "crop" framing with rotations, for storyboard panels
    ocr_missing: str | None  # why OCR cannot run, or None
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # icon_names over every icon

    @classmethod
    def build(cls, all_icons: list[Icon], cfg: EvalConfig) -> EvalContext:
        index_all = det.IconIndex(all_icons)
        icons = select_eval_icons(all_icons, cfg.n_icons, cfg.seed, index_all)
        return cls(
            cfg=cfg,
            icons=icons,
            sampler=tk.TaskSampler(icons, cfg.seed),
            index=det.IconIndex(icons),
            index_all=index_all,
            index_crop=det.IconIndex(icons, framing="crop", angles=(-10, -5, 0, 5, 10)),
            ocr_missing=ocr.tesseract_missing_reason(),
            names=icon_names(all_icons),
        )


Scores = dict[str, float | bool]
Info = dict[str, object]


@dataclass
class Suite:
    name: str
    count: Callable[[EvalConfig], int]
    build: Callable[[EvalContext, np.random.Generator, int], list[tk.Sample]]
    score: Callable[[EvalContext, tk.Sample, list[np.ndarray]], tuple[Scores, Info]]
    primary: str  # the score a contact-sheet cell is marked by
    needs_ocr: bool = False
    task: str | None = None  # a task not every model has: skipped (with the reason) for one without


def _icons_build(ctx, rng, n):
    return [ctx.sampler.t2i_icon(rng, icon, phrasing=1) for icon in ctx.icons[:n]]


def _icons_score(ctx, s, out):
    truth = s.meta["name"]
    top = ctx.index.rank(out[0], k=5)
    top_all = ctx.index_all.rank(out[0], k=1)[0]
    return (
        {
            "top1": ctx.index.is_match(top[0], truth),
            "top5": any(ctx.index.is_match(t, truth) for t in top),
            "top1_all": ctx.index_all.is_match(top_all, truth),
        },
        {"retrieved": top[0], "retrieved_all": top_all, "name_used": s.meta.get("name_used", truth)},
    )


def _shapes_build(n_objects):
    def build(ctx, rng, n):
        return [ctx.sampler.t2i_shapes(rng, n_objects, phrasing=0) for _ in range(n)]

    return build


def _shapes_score(ctx, s, out):
    found = det.parse_scene(out[0])
    return det.match_scene(out[0], s.meta["scene"]), {
        "found": [f"{o.color} {o.shape} @ {o.cell}" for o in found]
    }


def _words_build(ctx, rng, n):
    # Dictionary words only: Tesseract reads random letter strings at ~87% even on ground truth.
    return [ctx.sampler.t2i_word(rng, phrasing=0, p_random_letters=0.0) for _ in range(n)]


def _words_score(ctx, s, out):
    truth = ocr.normalize_text(s.meta["word"].text)
    read = ocr.normalize_text(ocr.ocr_word(out[0]) or "")
    return {"exact": read == truth, "cer": ocr.edit_distance(read, truth) / len(truth)}, {"read": read}


def _words_styled_build(ctx, rng, n):
    # The prompts of the text task's training (colour said unless black, font unless plain), asked
    # as a designer asks: text to image, the pipeline draws the glyph when the model has the task.
    return [replace(ctx.sampler.text(rng, phrasing=0, p_random_letters=0.0), task="t2i", refs=[]) for _ in range(n)]


def _words_styled_score(ctx, s, out):
    scores, info = _words_score(ctx, s, out)
    info["ink"] = det.ink_color(out[0])
    scores["ink_right"] = info["ink"] == s.meta["word"].color
    scores["exact_and_ink"] = bool(scores["exact"] and scores["ink_right"])
    return scores, info


def _charts_build(ctx, rng, n):
    return [ctx.sampler.t2i_chart(rng, phrasing=0) for _ in range(n)]


def _charts_score(ctx, s, out):
    values = det.parse_chart(out[0])
    return {"exact": values == list(s.meta["chart"].values)}, {"values": values}


def _preservation(ctx, gen, source, region, threshold: float) -> Scores:
    p = det.psnr(gen, source, ~region)
    return {"psnr_outside": min(p, PSNR_CAP), "preserved": p >= threshold}


def _edit_build(kind):
    def build(ctx, rng, n):
        return [ctx.sampler.edit(rng, kind) for _ in range(n)]

    return build


def _edit_score(ctx, s, out):
    gen, meta, kind = out[0], s.meta, s.meta["kind"]
    info: Info = {}
    if kind in ("recolor", "add", "remove", "move"):
        ok = det.check_scene(gen, meta["target"])
    elif kind == "background":
        info["background"] = det.dominant_border_color(gen)
        ok = info["background"] == meta["target_background"]
    elif kind == "word":
        info["read"] = ocr.normalize_text(ocr.ocr_word(gen) or "")
        ok = info["read"] == ocr.normalize_text(meta["target"].text)
    else:
        raise ValueError(f"no judge for edit kind {kind!r}")
    threshold = ctx.cfg.preserve_db_icon if kind == "background" else ctx.cfg.preserve_db
    scores = {"success": ok, **_preservation(ctx, gen, s.refs[0], meta["region"], threshold)}
    scores["success_and_preserved"] = bool(ok and scores["preserved"])
    return scores, info


def _inpaint_build(ctx, rng, n):
    return [ctx.sampler.inpaint(rng) for _ in range(n)]


def _inpaint_score(ctx, s, out):
    ok = det.check_scene(out[0], s.meta["target"])
    scores = {"success": ok, **_preservation(ctx, out[0], s.refs[0], s.meta["region"], ctx.cfg.preserve_db)}
    scores["success_and_preserved"] = bool(ok and scores["preserved"])
    return scores, {}


def _compose_build(ctx, rng, n):
    cases = []
    for _ in range(n):
        s = ctx.sampler.compose(rng, phrasing=0)
        # The judge picks each slot's icon among the references and a few other icons.
        pool = [i.name for i in ctx.icons if i.name not in s.meta["names"]]
        k = min(ctx.cfg.n_distractors, len(pool))
        s.meta["distractors"] = [pool[i] for i in rng.choice(len(pool), k, replace=False)]
        cases.append(s)
    return cases


def _compose_score(ctx, s, out):
    ok = det.check_compose(out[0], s.meta["slots"], s.meta["names"], ctx.index, s.meta["distractors"])
    return {"slot_accuracy": float(np.mean(ok)), "all_slots": all(ok)}, {"slots_ok": ok}


def _storyboard_build(ctx, rng, n):
    return [ctx.sampler.storyboard(rng, phrasing=0) for _ in range(n)]


def _storyboard_score(ctx, s, out):
    ok = det.check_storyboard(out, s.meta["character"], ctx.index_crop)
    named5 = det.check_storyboard(out, s.meta["character"], ctx.index_crop, k=5)
    kept, top = det.storyboard_identity_kept(out, ctx.index_crop)
    scenes = [det.storyboard_scene(o, p) for o, p in zip(out, s.meta["panels"])]
    background = [b for b, _ in scenes]
    position = [q for _, q in scenes]
    return ({"panel_accuracy": float(np.mean(ok)), "all_panels": all(ok), "identity_kept": kept,
             "named_top5": float(np.mean(named5)), "named_top5_all_panels": all(named5),
             "scene_background": float(np.mean(background)), "scene_position": float(np.mean(position)),
             "identity_and_scenes": kept and all(background) and all(position)},
            {"panels_ok": ok, "panel_nearest": top, "background_ok": background, "position_ok": position})


def _storyboard_ref_build(ctx, rng, n):
    # The storyboard tab's other way in: the character's picture given (its icon, on white).
    by_name = {i.name: i for i in ctx.icons}
    cases = [ctx.sampler.storyboard(rng, phrasing=0) for _ in range(n)]
    return [replace(s, refs=[composite(by_name[s.meta["character"]].rgba)]) for s in cases]


SUITES: dict[str, Suite] = {
    s.name: s
    for s in [
        Suite("t2i_icons", lambda c: c.n_icons, _icons_build, _icons_score, "top1"),
        Suite("shapes_1", lambda c: c.n_shapes, _shapes_build(1), _shapes_score, "exact"),
        Suite("shapes_2", lambda c: c.n_shapes, _shapes_build(2), _shapes_score, "exact"),
        Suite("words", lambda c: c.n_words, _words_build, _words_score, "exact", needs_ocr=True),
        Suite("charts", lambda c: c.n_charts, _charts_build, _charts_score, "exact"),
        *[
            Suite(
                f"edit_{k}",
                lambda c: c.n_edits,
                _edit_build(k),
                _edit_score,
                "success_and_preserved",
                needs_ocr=(k == "word"),
            )
            for k in tk.EDIT_KINDS
        ],
        Suite("inpaint", lambda c: c.n_inpaint, _inpaint_build, _inpaint_score, "success_and_preserved"),
        Suite("compose", lambda c: c.n_compose, _compose_build, _compose_score, "all_slots"),
        Suite("storyboard", lambda c: c.n_storyboard, _storyboard_build, _storyboard_score, "all_panels"),
        # new suites go last: a suite's cases are seeded by its position
        Suite("t2i_icons_free", lambda c: c.n_icons, free_icon_cases, _icons_score, "top5"),
        Suite("words_styled", lambda c: c.n_words, _words_styled_build, _words_styled_score, "exact_and_ink",
              needs_ocr=True),
        Suite("compose_unnamed", lambda c: c.n_compose, unnamed_compose_cases, _compose_score, "all_slots"),
        Suite("storyboard_ref", lambda c: c.n_storyboard, _storyboard_ref_build, _storyboard_score, "identity_kept"),
    ]
}


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    suite: str
    index: int
    seed: int
    sample: tk.Sample = field(repr=False)
    outputs: list[np.ndarray] = field(repr=False)
    scores: Scores
    info: Info
    seconds: float

    def record(self) -> dict:
        """A JSON-ready row for cases.jsonl."""
        return {
            "suite": self.suite,
            "index": self.index,
            "seed": self.seed,
            "task": self.sample.task,
            "prompt": self.sample.prompt,
            "seconds": round(self.seconds, 4),
            **{k: _json_number(v) for k, v in self.scores.items()},
            **self.info,
        }


@dataclass
class EvalResult:
    metrics: dict
    cases: list[CaseResult]


def _json_number(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    v = float(v)
    return v if math.isfinite(v) else None


def run_suite(ctx: EvalContext, suite: Suite, generate, progress=None) -> list[CaseResult]:
    cfg = ctx.cfg
    n = suite.count(cfg) if cfg.limit is None else min(suite.count(cfg), cfg.limit)
    # Seeded by the suite's place in SUITES; a suite not (yet) in it by a hash of its name.
    sid = list(SUITES).index(suite.name) if suite.name in SUITES else zlib.crc32(suite.name.encode())
    rng = np.random.default_rng([cfg.seed, sid])
    results = []
    for i, sample in enumerate(suite.build(ctx, rng, n)):
        seed = cfg.seed * 100_003 + i  # distinct per case, the same across runs
        t0 = time.perf_counter()
        outputs = generate(sample, seed)
        seconds = time.perf_counter() - t0
        scores, info = suite.score(ctx, sample, outputs)
        results.append(CaseResult(suite.name, i, seed, sample, outputs, scores, info, seconds))
        if progress is not None:
            progress(suite.name, i + 1, n)
    return results


def aggregate(results: list[CaseResult]) -> dict:
    """Mean of every score over a suite's cases, plus counts and generation time."""
    if not results:
        return {"n": 0}
    out: dict = {"n": len(results)}
    for key in results[0].scores:
        out[key] = round(float(np.mean([float(r.scores[key]) for r in results])), 4)
    out["gen_seconds_per_case"] = round(float(np.mean([r.seconds for r in results])), 4)
    return out


def evaluate(
    all_icons: list[Icon], generate, cfg: EvalConfig, progress=None, registry: dict[str, Suite] | None = None
) -> EvalResult:
    """Run the configured suites of `registry` (default SUITES; eval/run.py adds the control
    suites) with `generate` and return the metrics and every case. A suite whose task the
    generator's model lacks (`generate.tasks`, when it has one) is skipped with that reason."""
    registry = SUITES if registry is None else registry
    unknown = set(cfg.suites or ()) - set(registry)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; known: {list(registry)}")
    t0 = time.perf_counter()
    ctx = EvalContext.build(all_icons, cfg)
    suites_metrics, skipped, cases = {}, {}, []
    model_tasks = getattr(generate, "tasks", None)
    for name, suite in registry.items():
        if cfg.suites and name not in cfg.suites:
            continue
        if suite.needs_ocr and ctx.ocr_missing:
            skipped[name] = ctx.ocr_missing
            continue
        if suite.task is not None and model_tasks is not None and suite.task not in model_tasks:
            skipped[name] = f"the model was not trained for the {suite.task!r} task"
            continue
        res = run_suite(ctx, suite, generate, progress)
        suites_metrics[name] = aggregate(res)
        cases += res
    summary = {
        f"{s}/{k}": v
        for s, m in suites_metrics.items()
        for k, v in m.items()
        if k not in ("n", "gen_seconds_per_case")
    }
    metrics = {
        "mode": getattr(generate, "name", type(generate).__name__),
        "config": asdict(cfg),
        "n_eval_icons": len(ctx.icons),
        "ocr": {"available": ctx.ocr_missing is None, "reason": ctx.ocr_missing},
        "suites": suites_metrics,
        "skipped": skipped,
        "summary": summary,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return EvalResult(metrics, cases)
