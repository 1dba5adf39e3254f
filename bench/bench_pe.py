"""Benchmark prompt expansion (PE): grounding accuracy, passthrough, speed, and images from raw vs
expanded prompts scored by the DreamEval-lite judges.

    python bench/bench_pe.py                                # assets/default, every free-form prompt
    python bench/bench_pe.py --model runs/export --limit 3  # a quick look: 3 prompts per kind
    python bench/bench_pe.py --config tiny --limit 2        # random weights: a smoke run of the code path
    python bench/bench_pe.py --no-images                    # expansion metrics only (no model needed)

1. Expansion (no image model): accuracy of the grounded expander on tests/data/pe_prompts.jsonl
   per kind, passthrough rate on training captions of every task, and ms per prompt (warm
   vocabulary cache, each prompt's text encoded for the first time).
2. Images: every prompt of a kind the judges can score is generated twice with the same seed,
   from the raw prompt and from the expanded one (with `--seeds N`, N times each, and a prompt's
   score is its mean over the seeds), and judged: icon retrieval among all OpenMoji
   icons (top-1, aliases count), exact shape scenes, Tesseract OCR for words, chart values,
   per-panel identity for storyboards, per-slot retrieval for compositions (references rendered
   from the expected icons).

Prints markdown tables and writes everything (per-case rows too) as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from seedling.model.data import knowledge as kn
from seedling.model.data import tasks as tk
from seedling.model.prompt_expansion.evaluation import is_correct, load_prompt_set
from seedling.model.prompt_expansion.grounded import GroundedExpander
from seedling.model.prompt_expansion.result import PASSTHROUGH

IMAGE_KINDS = ("icon", "several", "shapes", "word", "chart", "story", "compose")
DEFAULT_PROMPTS = Path(__file__).resolve().parents[1] / "tests" / "data" / "pe_prompts.jsonl"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", default="assets/default", help="model folder (SeedlingPipeline.from_pretrained)"
    )
    p.add_argument("--config", default=None, help="random weights from a named config instead (smoke runs)")
    p.add_argument("--prompts", default=str(DEFAULT_PROMPTS))
    p.add_argument("--limit", type=int, default=None, help="at most this many prompts per kind for images")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds", type=int, default=1,
        help="images per prompt and side; a prompt's score is the mean over its seeds (less noise per pair)",
    )
    p.add_argument(
        "--captions-per-task", type=int, default=300, help="training captions per task (passthrough)"
    )
    p.add_argument("--no-images", action="store_true", help="expansion metrics only")
    p.add_argument("--out", default="runs/bench_pe.json")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Expansion metrics
# --------------------------------------------------------------------------------------------


def training_captions(icons, per_task: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, task): every icon in its 4 phrasings, and `per_task` sampled captions per task."""
    from seedling.model.data import captions as cap

    rng = np.random.default_rng(seed)
    out = [(cap.icon_caption(i.name, i.group, rng, k), "t2i") for i in icons for k in range(4)]
    sampler = tk.TaskSampler(icons, seed)
    for task in tk.TASKS:
        out += [(sampler.sample(task, rng).prompt, task) for _ in range(per_task)]
    return out


def expansion_metrics(pe: GroundedExpander, rows: list[dict], captions: list[tuple[str, str]]) -> dict:
    for r in rows[:5]:  # warm up the encoder (first calls allocate)
        pe.expand(r["prompt"], r["task"])
    per_kind: dict[str, list[bool]] = {}
    ms, cases = [], []
    for r in rows:
        pe.encoder._cache.clear()  # time each prompt as if it were new
        res = pe.expand(r["prompt"], r["task"], n_refs=len(r.get("refs", [])) or None)
        ok = is_correct(r, res, pe.vocab)
        per_kind.setdefault(r["kind"], []).append(ok)
        ms.append(res.seconds * 1000)
        cases.append(
            {
                "prompt": r["prompt"],
                "task": r["task"],
                "kind": r["kind"],
                "expanded": res.prompt,
                "grounded": res.grounded,
                "budget": res.budget,
                "correct": ok,
                "ms": round(ms[-1], 3),
            }
        )
    passthrough = [pe.expand(p, t) for p, t in captions]
    unchanged = sum(
        res.prompt == p and res.budget == PASSTHROUGH for (p, _), res in zip(captions, passthrough)
    )
    all_ok = [ok for oks in per_kind.values() for ok in oks]
    return {
        "accuracy": round(float(np.mean(all_ok)), 4),
        "n_prompts": len(rows),
        "per_kind": {k: {"n": len(v), "accuracy": round(float(np.mean(v)), 4)} for k, v in per_kind.items()},
        "passthrough_rate": round(unchanged / len(captions), 6),
        "n_training_captions": len(captions),
        "ms_per_prompt": {
            "median": round(statistics.median(ms), 2),
            "p90": round(float(np.percentile(ms, 90)), 2),
            "max": round(max(ms), 2),
        },
        "ms_passthrough_median": round(statistics.median(r.seconds * 1000 for r in passthrough), 3),
        "cases": cases,
    }


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


class Judge:
    def __init__(self, icons, rows):
        from seedling.model.eval import detectors as det
        from seedling.model.eval import ocr
        from seedling.model.eval.harness import select_eval_icons

        self.det, self.ocr = det, ocr
        self.icons = {i.name: i for i in icons}
        self.index = det.IconIndex(icons)
        characters = {n for r in rows if r["kind"] == "story" for n in r["character"]}
        pool = {i.name for i in select_eval_icons(icons, 200, 0, self.index)} | characters
        self.index_crop = det.IconIndex(
            [self.icons[n] for n in sorted(pool)], framing="crop", angles=(-10, -5, 0, 5, 10)
        )
        self.ocr_missing = ocr.tesseract_missing_reason()

    def _is_any(self, index, retrieved: str, names: list[str]) -> bool:
        return any(index.is_match(retrieved, n) for n in names)

    def _best_rank(self, image: np.ndarray, names: list[str]) -> tuple[int, int]:
        """(0-based rank of the best-placed expected icon or alias among all icons, how many icons).
        Rank 0 is exactly the strict judgement: the nearest icon matches one of `names`."""
        ordered, d = self.index.distances(image)
        wanted = set(names) | {a for n in names for a in self.index.aliases(n)}
        order = np.argsort(d, kind="stable")
        return next(r for r, i in enumerate(order) if ordered[i] in wanted), len(order)

    def score(self, row: dict, images: list[np.ndarray]) -> tuple[float, float] | None:
        """(strict, graded) in [0, 1]. Strict is the harness's pass/fail judgement; graded gives
        partial credit from the same judges (retrieval rank, scene facts, 1 - CER, bar values,
        panels, slots), so a weak model's differences still show."""
        det, ocr, kind = self.det, self.ocr, row["kind"]
        if kind in ("icon", "several"):
            names = row["icons"] if kind == "icon" else [n for s in row["subjects"] for n in s]
            rank, n = self._best_rank(images[0], names)  # 1 = first of all icons, 0 = last
            return float(rank == 0), 1.0 - rank / max(n - 1, 1)
        if kind == "shapes":
            scene = kn.ShapeScene(tuple(kn.ShapeObject(c, s, cell) for c, s, cell in row["objects"]))
            m = det.match_scene(images[0], scene)
            return float(m["exact"]), float(np.mean([m[k] for k in ("count", "colors", "shapes", "cells")]))
        if kind == "word":
            if self.ocr_missing:
                return None
            read, truth = ocr.normalize_text(ocr.ocr_word(images[0]) or ""), ocr.normalize_text(row["text"])
            return float(read == truth), max(0.0, 1.0 - ocr.edit_distance(read, truth) / max(len(truth), 1))
        if kind == "chart":
            got, want = det.parse_chart(images[0]), list(row["values"])
            same = sum(g == w for g, w in zip(got, want))
            return float(got == want), same / max(len(got), len(want), 1)
        if kind == "story":
            ok = [
                self._is_any(self.index_crop, self.index_crop.rank(p, k=1)[0], row["character"])
                for p in images
            ]
            return float(np.mean(ok)), float(np.mean(ok))
        if kind == "compose":
            slots = compose_slots(row)
            ok = det.check_compose(images[0], slots, row["refs"], self.index)
            return float(all(ok)), float(np.mean(ok))
        return None

    def references(self, row: dict) -> list[np.ndarray]:
        return [tk.composite(self.icons[n].rgba) for n in row.get("refs", [])]


def compose_slots(row: dict) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(reference index, box) per slot of the row's expected composition."""
    import re

    from seedling.model.prompt_expansion.vocab import SLOT_PHRASES

    expected = row["expect"][0]
    slot_alt = "|".join(sorted(SLOT_PHRASES, key=len, reverse=True))
    ordinals = {"first": 0, "second": 1, "third": 2, "fourth": 3}
    pairs = []  # (reference index, slot phrase)
    if expected.startswith("put "):
        for m in re.finditer(rf"the (first|second|third|fourth) image ({slot_alt})", expected):
            pairs.append((ordinals[m[1]], m[2]))
    else:
        for m in re.finditer(rf"the (.+?) ({slot_alt})(?:, | and |$)", expected):
            pairs.append((row["refs"].index(m[1]), m[2]))
    layout = next(
        name for name in tk.LAYOUTS_BY_COUNT[len(pairs)] if set(tk.LAYOUTS[name][1]) == {s for _, s in pairs}
    )
    boxes, phrases = tk.LAYOUTS[layout]
    return [(r, boxes[phrases.index(s)]) for r, s in pairs]


def task_of(row: dict) -> tuple[str, int]:
    if row["kind"] == "story":
        return "storyboard", row["panels"]
    return row["task"], 1


def generate(pipe, prompt: str, task: str, refs, n: int, seed: int, steps: int | None) -> list[np.ndarray]:
    from PIL import Image

    res = pipe(
        prompt=prompt,
        task=task,
        images=[Image.fromarray(r) for r in refs] or None,
        num_outputs=n,
        steps=steps,
        seed=seed,
        height=tk.SIZE,
        width=tk.SIZE,
    )
    return [np.asarray(im.convert("RGB")) for im in res.images]


def paired(raw: list[float], expanded: list[float], seed: int = 0, resamples: int = 10_000) -> dict:
    """Mean of (expanded - raw) over paired cases, a 95% bootstrap interval, wins/losses/ties."""
    diff = np.asarray(expanded, float) - np.asarray(raw, float)
    if not len(diff):
        return {"n": 0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {
        "n": int(len(diff)),
        "mean_diff": round(float(diff.mean()), 4),
        "ci95": [round(float(lo), 4), round(float(hi), 4)],
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
        "ties": int((diff == 0).sum()),
    }


SEED_STRIDE = 1_000_003  # seed j of a prompt: its first seed + j * SEED_STRIDE


def seed_mean(pairs: list[tuple]) -> tuple:
    """[(raw, expanded) per seed], each a (strict, graded) score or None -> the per-side mean over
    the seeds where both sides could be judged; (None, None) if there is none."""
    kept = [(r, e) for r, e in pairs if r is not None and e is not None]
    if not kept:
        return None, None

    def mean(side):
        return tuple(float(np.mean([score[i] for score in side])) for i in range(2))

    return mean([r for r, _ in kept]), mean([e for _, e in kept])


def image_metrics(pipe, pe: GroundedExpander, judge: Judge, rows: list[dict], args) -> dict:
    per_kind: dict[str, dict[str, list[float]]] = {}
    cases = []
    for k, row in enumerate(rows):
        task, n = task_of(row)
        refs = judge.references(row)
        res = pe.expand(
            row["prompt"], task, num_outputs=n if task == "storyboard" else None, n_refs=len(refs) or None
        )
        seed = args.seed * 100_003 + k
        t0 = time.perf_counter()
        n_expanded = (res.num_outputs or n) if task == "storyboard" else n
        sides = ((row["prompt"], n), (res.prompt, n_expanded))  # (raw, expanded): prompt, outputs
        raw, expanded = seed_mean(
            [
                tuple(judge.score(row, generate(pipe, prompt, task, refs, m, s, args.steps)) for prompt, m in sides)
                for s in (seed + j * SEED_STRIDE for j in range(max(1, args.seeds)))
            ]
        )
        if raw is None or expanded is None:
            continue
        d = per_kind.setdefault(
            row["kind"], {"raw": [], "expanded": [], "raw_graded": [], "expanded_graded": []}
        )
        for key, (strict, graded) in (("raw", raw), ("expanded", expanded)):
            d[key].append(strict)
            d[f"{key}_graded"].append(graded)
        cases.append(
            {
                "prompt": row["prompt"],
                "kind": row["kind"],
                "task": task,
                "expanded": res.prompt,
                "raw_score": raw[0],
                "expanded_score": expanded[0],
                "raw_graded": round(raw[1], 4),
                "expanded_graded": round(expanded[1], 4),
                "seed": seed,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        print(
            f"  [{k + 1}/{len(rows)}] {row['kind']:8s} raw {raw[0]:.2f} ({raw[1]:.2f}) "
            f"expanded {expanded[0]:.2f} ({expanded[1]:.2f})  {row['prompt']!r}",
            flush=True,
        )
    keys = ("raw", "expanded", "raw_graded", "expanded_graded")
    summary = {
        k: {"n": len(v["raw"]), **{key: round(float(np.mean(v[key])), 4) for key in keys}}
        for k, v in per_kind.items()
    }
    pooled = {key: [x for v in per_kind.values() for x in v[key]] for key in keys}
    overall = {
        "n": len(pooled["raw"]),
        **{key: (round(float(np.mean(pooled[key])), 4) if pooled[key] else None) for key in keys},
        "paired_strict": paired(pooled["raw"], pooled["expanded"], args.seed),
        "paired_graded": paired(pooled["raw_graded"], pooled["expanded_graded"], args.seed),
    }
    return {"per_kind": summary, "overall": overall, "ocr": judge.ocr_missing or "available", "cases": cases}


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    from seedling.model.data.icons import load_icons

    rows = load_prompt_set(args.prompts)
    icons = load_icons()
    pipe = None
    if not args.no_images:
        from seedling.model.pipeline import SeedlingPipeline

        if args.config:
            pipe = SeedlingPipeline.from_config(args.config)
        elif Path(args.model, "pipeline.json").exists():
            pipe = SeedlingPipeline.from_pretrained(args.model)
        else:
            print(
                f"no model at {args.model} (no pipeline.json): expansion metrics only "
                "(pass --model FOLDER, or --config tiny for a smoke run)"
            )
    t0 = time.perf_counter()
    pe = GroundedExpander(text_encoder=pipe.text_encoder if pipe is not None else None)
    init_s = time.perf_counter() - t0
    exp = expansion_metrics(pe, rows, training_captions(icons, args.captions_per_task, args.seed))
    print("\n## Prompt expansion (grounded expander)\n")
    print("| kind | n | grounding accuracy |\n| --- | --- | --- |")
    for kind, m in exp["per_kind"].items():
        print(f"| {kind} | {m['n']} | {m['accuracy']:.3f} |")
    print(f"| **all** | {exp['n_prompts']} | **{exp['accuracy']:.3f}** |\n")
    t = exp["ms_per_prompt"]
    print(
        f"passthrough of training captions: {exp['passthrough_rate']:.4%} of {exp['n_training_captions']}"
        f" (median {exp['ms_passthrough_median']} ms)"
    )
    print(
        f"ms per free-form prompt (warm vocabulary cache, new text): median {t['median']}, p90 {t['p90']}, "
        f"max {t['max']}; expander start-up {init_s:.1f} s"
    )
    out = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "expander_init_s": round(init_s, 2),
        "expansion": exp,
    }
    if pipe is not None:
        judge = Judge(icons, rows)
        chosen: list[dict] = []
        for kind in IMAGE_KINDS:
            of_kind = [r for r in rows if r["kind"] == kind]
            chosen += of_kind[: args.limit] if args.limit else of_kind
        print(
            f"\n## Images from raw vs expanded prompts ({len(chosen)} prompts, model "
            f"{args.config or args.model})\n"
        )
        img = image_metrics(pipe, pe, judge, chosen, args)
        print(
            "\n| kind | n | raw (strict) | expanded (strict) | raw (graded) | expanded (graded) |\n"
            "| --- | --- | --- | --- | --- | --- |"
        )
        for kind, m in img["per_kind"].items():
            print(
                f"| {kind} | {m['n']} | {m['raw']:.3f} | {m['expanded']:.3f} | {m['raw_graded']:.3f} | "
                f"{m['expanded_graded']:.3f} |"
            )
        o = img["overall"]
        if o["n"]:
            print(
                f"| **all** | {o['n']} | **{o['raw']:.3f}** | **{o['expanded']:.3f}** | "
                f"**{o['raw_graded']:.3f}** | **{o['expanded_graded']:.3f}** |"
            )
            for name in ("strict", "graded"):
                p = o[f"paired_{name}"]
                print(
                    f"\nexpanded - raw, {name}: mean {p['mean_diff']:+.4f}, 95% bootstrap interval "
                    f"[{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}], wins/losses/ties "
                    f"{p['wins']}/{p['losses']}/{p['ties']} of {p['n']}"
                )
        if judge.ocr_missing:
            print(f"\nwords not scored: {judge.ocr_missing}")
        out["images"] = {"model": args.config or args.model, "steps": args.steps, "seed": args.seed,
                         "seeds": args.seeds, **img}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
