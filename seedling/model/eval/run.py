"""DreamEval-lite from the command line: metrics.json, cases.jsonl and contact_sheet.png.

Examples (from the repository root):

  python -m seedling.model.eval.run --model assets/default --out runs/eval --steps 4 --n-icons 200 --seed 0
  python -m seedling.model.eval.run --model assets/default --out runs/eval-quick --limit 3   # a quick look
  python -m seedling.model.eval.run --oracle --out runs/eval-oracle           # judges on ground truth: ~100%
  python -m seedling.model.eval.run --oracle-ae runs/ae/final --out runs/eval-ae   # ground truth through the AE
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from seedling.atomic import write_atomic
from seedling.configs import build_from
from seedling.model.eval import generators as gn
from seedling.model.eval import harness as hs
from seedling.model.eval.contact_sheet import contact_sheet, render_cell
from seedling.model.eval.control_suites import CONTROL_SUITES

ALL_SUITES = {**hs.SUITES, **CONTROL_SUITES}  # the harness's, then the control tasks'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m seedling.model.eval.run", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model folder (SeedlingPipeline.from_pretrained)")
    src.add_argument(
        "--oracle", action="store_true", help="score the ground-truth targets instead of generations"
    )
    src.add_argument(
        "--oracle-ae",
        metavar="FOLDER",
        help="score the ground truth after an autoencoder round trip (an autoencoder folder, or a model "
        "folder with autoencoder/ inside): the ceiling the decoder allows",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--image-guidance", type=float, default=None)
    p.add_argument(
        "--n-icons", type=int, default=200, help="icons evaluated for t2i (and compose/storyboard pool)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None,
                   help="generate at this size in px (default: the model's native size); judged at 128")
    p.add_argument("--limit", type=int, default=None, help="at most this many cases per suite")
    p.add_argument("--suites", nargs="+", default=None, choices=list(ALL_SUITES), help="run only these suites")
    p.add_argument("--n-shapes", type=int, default=50)
    p.add_argument("--n-words", type=int, default=50)
    p.add_argument("--n-edits", type=int, default=10, help="cases per edit kind")
    p.add_argument("--n-compose", type=int, default=30)
    p.add_argument("--n-storyboard", type=int, default=20)
    p.add_argument("--preserve-db", type=float, default=20.0, help="PSNR outside an edit that counts as kept")
    p.add_argument(
        "--preserve-db-icon", type=float, default=16.0, help="the same for background edits of icons"
    )
    p.add_argument("--quantize", default=None, help="quantize the model first (int8, w8a8, ...)")
    p.add_argument(
        "--icon-cache", default=None, help="icon cache folder (default: $SEEDLING_CACHE or cache/)"
    )
    return p.parse_args(argv)


def write_outputs(result: hs.EvalResult, out: Path, per_suite: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "metrics.json", json.dumps(result.metrics, indent=2))
    write_atomic(out / "cases.jsonl", "".join(json.dumps(c.record(), default=str) + "\n" for c in result.cases))
    rows = []
    for name in result.metrics["suites"]:
        shown = [c for c in result.cases if c.suite == name][:per_suite]
        primary = ALL_SUITES[name].primary
        value = result.metrics["suites"][name].get(primary)
        cells = [
            render_cell(
                c.sample.prompt,
                c.sample.refs
                + ([c.sample.mask[..., None].repeat(3, -1)] if c.sample.mask is not None else []),
                c.outputs,
                bool(c.scores[primary]),
            )
            for c in shown
        ]
        rows.append((f"{name} {primary}={value}", cells))
    sheet = contact_sheet(rows)
    write_atomic(out / "contact_sheet.png", lambda f: sheet.save(f, format="PNG"))


def format_table(metrics: dict) -> str:
    lines = [f"{'suite':<20} {'n':>4}  metrics"]
    for name, m in metrics["suites"].items():
        vals = "  ".join(f"{k}={v}" for k, v in m.items() if k != "n")
        lines.append(f"{name:<20} {m['n']:>4}  {vals}")
    for name, reason in metrics["skipped"].items():
        lines.append(f"{name:<20} skipped: {reason}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from seedling.model.data.icons import load_icons

    icons = load_icons(args.icon_cache)
    if args.oracle:
        generate = gn.OracleGenerator()
    elif args.oracle_ae:
        from seedling.model.autoencoder import Autoencoder, autoencoder_folder

        generate = gn.AutoencoderGenerator(Autoencoder.from_pretrained(autoencoder_folder(args.oracle_ae)))
    else:
        from seedling.model.pipeline import SeedlingPipeline

        pipe = SeedlingPipeline.from_pretrained(args.model)
        if args.quantize:
            pipe.quantize(args.quantize)
        generate = gn.PipelineGenerator(pipe, args.steps, args.guidance, args.image_guidance, args.size)
    # the options named like EvalConfig's fields set them
    cfg = build_from(hs.EvalConfig, args, suites=tuple(args.suites) if args.suites else None)
    t0 = time.perf_counter()

    def progress(suite, i, n):
        if i == n or i % 25 == 0:
            print(f"  {suite}: {i}/{n} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    result = hs.evaluate(icons, generate, cfg, progress, registry=ALL_SUITES)
    result.metrics["model"] = args.model or args.oracle_ae
    result.metrics["steps"] = args.steps
    write_outputs(result, Path(args.out), cfg.contact_per_suite)
    print(format_table(result.metrics))
    print(f"wrote {args.out}/metrics.json, cases.jsonl, contact_sheet.png in {result.metrics['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
