"""Quality (DreamEval-lite) and time against the number of sampling steps, guidance and schedule.

    python bench/bench_steps.py --model assets/default --steps 1 2 4 8 32 --limit 20 [--out runs/bench_steps.json]
    python bench/bench_steps.py --model runs/export --steps 4 --guidance 1 1.5 2.5 --schedules uniform shift:3
    python bench/bench_steps.py --model assets/default --steps 4 --quantize none int8 w8a8 bnb-int8 bnb-nf4
    python bench/bench_steps.py --model assets/default runs/distill/export --steps 1 2 4 --guidance 5 1

Every setting (model x quantization x steps x guidance x schedule) runs the same cases (same
seeds) through the evaluation harness; the table shows each suite's primary score, their mean
("score"), the score relative to the same model and mode at the most steps measured ("vs max
steps"), the difference from fp32 in points (score x 100, same model and steps), the DiT's weight
memory and seconds per case. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path


def apply_mode(pipe, mode: str):
    """Set a freshly loaded pipeline to a benchmark mode and return it: a kernels/quant.py mode,
    "int8/fp32" (int8 weights, fp32 product) or "none/plain" (fp32 with F.linear instead of the
    pipeline's default pre-packed oneDNN linears). Also used by bench_quant.py --pipeline."""
    if mode == "int8/fp32":  # weight-only int8 with the product in fp32 (not bf16)
        pipe.quantize("int8", int8_compute="fp32")
    elif mode == "none/plain":  # fp32, MKL's F.linear (kernels/packed.py is the default)
        pipe.set_linear_kernel("plain")
    elif mode != "none":
        pipe.quantize(mode)
    return pipe


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["assets/default"])
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 32])
    ap.add_argument("--guidance", type=float, nargs="+", default=[None])
    ap.add_argument("--schedules", nargs="+", default=[None], help="uniform, cosine, shift:S")
    ap.add_argument("--limit", type=int, default=20, help="cases per suite")
    ap.add_argument("--n-icons", type=int, default=200)
    ap.add_argument("--suites", nargs="+", default=None)
    ap.add_argument("--quantize", nargs="+", default=["none"], help="modes of kernels/quant.py, or int8/fp32 (int8 weights, fp32 product), or none/plain "
                    "(fp32 with F.linear instead of the pipeline's default pre-packed oneDNN linears)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_steps.json")
    args = ap.parse_args(argv)

    import torch

    from seedling.kernels.quant import weight_bytes
    from seedling.model.data.icons import load_icons
    from seedling.model.eval import generators as gn
    from seedling.model.eval import harness as hs
    from seedling.model.pipeline import SeedlingPipeline

    torch.set_num_threads(args.threads)
    icons = load_icons()
    rows = []
    for model, mode in itertools.product(args.model, args.quantize):
        pipe = apply_mode(SeedlingPipeline.from_pretrained(model), mode)
        mb = weight_bytes(pipe.dit) / 2**20
        base_schedule, base_shift = pipe.settings.schedule, pipe.settings.shift
        for steps, guidance, sched in itertools.product(args.steps, args.guidance, args.schedules):
            if sched and sched.startswith("shift:"):
                pipe.settings.schedule, pipe.settings.shift = "shift", float(sched.split(":")[1])
            else:
                pipe.settings.schedule, pipe.settings.shift = (sched or base_schedule), base_shift
            cfg = hs.EvalConfig(n_icons=args.n_icons, limit=args.limit,
                                suites=tuple(args.suites) if args.suites else None)
            gen = gn.PipelineGenerator(pipe, steps=steps, guidance=guidance)
            t0 = time.perf_counter()
            res = hs.evaluate(icons, gen, cfg)
            wall = time.perf_counter() - t0
            primary = {name: res.metrics["suites"][name].get(hs.SUITES[name].primary)
                       for name in res.metrics["suites"]}
            secs = [m["gen_seconds_per_case"] for m in res.metrics["suites"].values() if "gen_seconds_per_case" in m]
            row = dict(model=model, quantize=mode, dit_weight_mb=mb, steps=steps,
                       guidance=guidance if guidance is not None else pipe.settings.guidance,
                       schedule=sched or base_schedule, primary=primary,
                       score=sum(primary.values()) / max(len(primary), 1),
                       seconds_per_case=sum(secs) / max(len(secs), 1), wall_s=wall)
            rows.append(row)
            print(f"{model} {mode} steps={steps} guidance={row['guidance']} schedule={row['schedule']}: "
                  f"score {row['score']:.3f} ({wall:.0f}s)", flush=True)
    for r in rows:
        same = [o for o in rows if (o["model"], o["quantize"], o["guidance"], o["schedule"])
                == (r["model"], r["quantize"], r["guidance"], r["schedule"])]
        top = max(same, key=lambda o: o["steps"])
        r["vs_max_steps"] = r["score"] / top["score"] if top["score"] > 0 else float("nan")
        r["max_steps"] = top["steps"]
        fp = [o for o in rows if o["quantize"] == "none" and (o["model"], o["steps"], o["guidance"], o["schedule"])
              == (r["model"], r["steps"], r["guidance"], r["schedule"])]
        r["points_vs_fp32"] = 100 * (r["score"] - fp[0]["score"]) if fp else float("nan")
    names = list(rows[0]["primary"])
    print(f"\nDreamEval-lite primary scores, {args.limit} cases per suite, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| model | quant | DiT MB | steps | guidance | schedule | " + " | ".join(names)
          + " | score | vs max steps | pts vs fp32 | s/case |")
    print("|---|---|" + "---:|" * (len(names) + 8))
    for r in rows:
        cells = " | ".join(f"{r['primary'][n]:.2f}" for n in names)
        print(f"| {r['model']} | {r['quantize']} | {r['dit_weight_mb']:.1f} | {r['steps']} | {r['guidance']} | "
              f"{r['schedule']} | {cells} | {r['score']:.3f} | {r['vs_max_steps']:.2f} (of {r['max_steps']}) | "
              f"{r['points_vs_fp32']:+.1f} | {r['seconds_per_case']:.3f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(models=args.model, limit=args.limit, threads=args.threads, rows=rows), indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
