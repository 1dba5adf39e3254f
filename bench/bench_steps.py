"""Quality (DreamEval-lite) and time against the number of sampling steps, guidance and schedule.

    python bench/bench_steps.py --model assets/default --steps 1 2 4 8 32 --limit 20 [--out runs/bench_steps.json]
    python bench/bench_steps.py --model runs/export --steps 4 --guidance 1 1.5 2.5 --schedules uniform shift:3

Every setting runs the same cases (same seeds) through the evaluation harness; the table shows
each suite's primary score, their mean ("score") and seconds per case. Prints a markdown table
and writes JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="assets/default")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 32])
    ap.add_argument("--guidance", type=float, nargs="+", default=[None])
    ap.add_argument("--schedules", nargs="+", default=[None], help="uniform, cosine, shift:S")
    ap.add_argument("--limit", type=int, default=20, help="cases per suite")
    ap.add_argument("--n-icons", type=int, default=200)
    ap.add_argument("--suites", nargs="+", default=None)
    ap.add_argument("--quantize", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_steps.json")
    args = ap.parse_args(argv)

    import torch

    from model.data.icons import load_icons
    from model.eval import harness as hs
    from model.pipeline import SeedlingPipeline

    torch.set_num_threads(args.threads)
    pipe = SeedlingPipeline.from_pretrained(args.model)
    if args.quantize:
        pipe.quantize(args.quantize)
    icons = load_icons()
    rows = []
    base_schedule, base_shift = pipe.config.schedule, pipe.config.shift
    for steps, guidance, sched in itertools.product(args.steps, args.guidance, args.schedules):
        if sched and sched.startswith("shift:"):
            pipe.config.schedule, pipe.config.shift = "shift", float(sched.split(":")[1])
        else:
            pipe.config.schedule, pipe.config.shift = (sched or base_schedule), base_shift
        cfg = hs.EvalConfig(n_icons=args.n_icons, limit=args.limit,
                            suites=tuple(args.suites) if args.suites else None)
        gen = hs.PipelineGenerator(pipe, steps=steps, guidance=guidance)
        t0 = time.perf_counter()
        res = hs.evaluate(icons, gen, cfg)
        wall = time.perf_counter() - t0
        primary = {name: res.metrics["suites"][name].get(hs.SUITES[name].primary)
                   for name in res.metrics["suites"]}
        secs = [m["gen_seconds_per_case"] for m in res.metrics["suites"].values() if "gen_seconds_per_case" in m]
        row = dict(steps=steps, guidance=guidance if guidance is not None else pipe.config.guidance,
                   schedule=sched or base_schedule, primary=primary,
                   score=sum(primary.values()) / max(len(primary), 1),
                   seconds_per_case=sum(secs) / max(len(secs), 1), wall_s=wall)
        rows.append(row)
        print(f"steps={steps} guidance={row['guidance']} schedule={row['schedule']}: score {row['score']:.3f} "
              f"({wall:.0f}s)", flush=True)
    names = list(rows[0]["primary"])
    print(f"\nDreamEval-lite primary scores, {args.limit} cases per suite, model {args.model}, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| steps | guidance | schedule | " + " | ".join(names) + " | score | s/case |")
    print("|" + "---:|" * (len(names) + 5))
    for r in rows:
        cells = " | ".join(f"{r['primary'][n]:.2f}" for n in names)
        print(f"| {r['steps']} | {r['guidance']} | {r['schedule']} | {cells} | {r['score']:.3f} | "
              f"{r['seconds_per_case']:.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(model=args.model, limit=args.limit, rows=rows), indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
