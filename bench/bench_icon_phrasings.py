"""How well a model draws icons in each training phrasing of an icon caption ("fox", "a fox",
"an emoji of a fox", "fox icon"): the `t2i_icons` suite's icons, seeds and judge, one suite per
phrasing. Says whether the prompt expander could gain by rewriting into another phrasing.

    python bench/bench_icon_phrasings.py --model assets/default [--n-icons 200] [--json out.json]

Prints a markdown table and writes JSON. Takes about 5 minutes for 200 icons on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from seedling.model.data.captions import icon_caption


def phrasing_names() -> list[str]:
    """The phrasings `captions.icon_caption` picks from, shown on a sample name (the k-th is
    `phrasing=k`; it counts modulo their number, so the first repeat ends the list)."""
    out: list[str] = []
    while (p := icon_caption("fox", "animals & nature", None, phrasing=len(out))) not in out:
        out.append(p)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="assets/default")
    ap.add_argument("--n-icons", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from seedling.model.data.icons import load_icons
    from seedling.model.eval import generators as gn
    from seedling.model.eval import harness as hs
    from seedling.model.pipeline import SeedlingPipeline

    torch.set_num_threads(args.threads)
    generate = gn.PipelineGenerator(SeedlingPipeline.from_pretrained(args.model))  # the model's defaults
    base = hs.SUITES["t2i_icons"]
    ctx = hs.EvalContext.build(load_icons(), hs.EvalConfig(n_icons=args.n_icons, seed=args.seed))  # once
    rows = []
    for k, name in enumerate(phrasing_names()):
        def build(ctx, rng, n, k=k):
            return [ctx.sampler.t2i_icon(rng, icon, phrasing=k) for icon in ctx.icons[:n]]

        # the name keeps t2i_icons' seeds (run_suite seeds a suite by its name's place in SUITES)
        m = hs.aggregate(hs.run_suite(ctx, replace(base, build=build), generate))
        rows.append({"phrasing": name, **{key: m[key] for key in ("n", "top1", "top5", "top1_all")}})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| phrasing | n | top-1 | top-5 | top-1 among all icons |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phrasing']!r} | {r['n']} | {r['top1']:.1%} | {r['top5']:.1%} | {r['top1_all']:.1%} |")
    env = {"model": args.model, "seed": args.seed, "threads": args.threads, "load_average": os.getloadavg()}
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
