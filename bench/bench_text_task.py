"""What the task adapters cost per generation: a quoted-text prompt (glyph drawn, the text task's
adapter merged for the call and taken off after, at the text task's own guidance) and, where the
model has them, the control tasks (an icon's edge map, its gray picture), beside a plain
text-to-image prompt, same model, same size, same seeds, interleaved; plus each adapter's
merge-and-restore alone.

    python bench/bench_text_task.py --model assets/default --rounds 30 [--out runs/bench_text_task.json]

Prints a markdown table (median / p90 seconds) and writes JSON. Name the CPU with the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="assets/default")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=None, help="output side (default: the model's)")
    ap.add_argument("--out", default="runs/bench_text_task.json")
    args = ap.parse_args(argv)

    import torch
    from bench_dcae import cpu_name  # this script's folder is on sys.path
    from PIL import Image

    from seedling.model.adapters import added_adapters
    from seedling.model.data import controls as ctl
    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import composite
    from seedling.model.pipeline import SeedlingPipeline, shared_task_adapters

    torch.set_num_threads(args.threads)
    pipe = SeedlingPipeline.from_pretrained(args.model)
    if "text" not in pipe.task_adapters:
        raise SystemExit(f"{args.model} has no text task adapter (task_adapters/text.safetensors): nothing to compare")
    size = args.size or pipe.settings.default_size
    icon = composite(load_icons()[0].rgba)
    cases = {  # name -> (prompt, extra call arguments)
        "t2i, plain prompt": ("a red circle in the top left", {}),
        "text task (glyph + adapter)": ('the word "SALE" in red', {}),
    }
    for task, control in (("edges", ctl.edges_control(icon)), ("colourise", ctl.grayscale_control(icon))):
        if task in pipe.task_adapters:
            cases[f"{task} (control + adapter)"] = ("a picture", {"task": task, "images": [Image.fromarray(control)]})
    adapters = {"+".join(tasks): adapter for tasks, adapter in shared_task_adapters(pipe.task_adapters)}
    times: dict[str, list[float]] = {k: [] for k in cases}
    times.update({f"adapter merge + restore alone ({name})": [] for name in adapters})
    for name, (prompt, extra) in cases.items():  # warm-up: first-call costs (packing, plans) out of the figures
        pipe(prompt, seed=0, height=size, width=size, **extra)
    for r in range(args.rounds):
        for name, (prompt, extra) in cases.items():
            t0 = time.perf_counter()
            pipe(prompt, seed=r, height=size, width=size, **extra)
            times[name].append(time.perf_counter() - t0)
        for name, adapter in adapters.items():
            t0 = time.perf_counter()
            with added_adapters(pipe.dit, [(adapter, 1.0)]):
                pass
            times[f"adapter merge + restore alone ({name})"].append(time.perf_counter() - t0)

    rows = {k: {"median_s": float(np.median(v)), "p90_s": float(np.percentile(v, 90)), "n": len(v)}
            for k, v in times.items()}
    base = rows["t2i, plain prompt"]["median_s"]
    print(f"\n{args.model}, {size}x{size}, {args.threads} threads, {cpu_name()}\n")
    print("| call | median s | p90 s | vs plain t2i |")
    print("|---|---:|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v['median_s']:.4f} | {v['p90_s']:.4f} | {v['median_s'] / base:.2f}x |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "size": size, "threads": args.threads, "cpu": cpu_name(),
                               "guidance": pipe.settings.guidance,
                               "task_guidance": pipe.settings.task_guidance,
                               "adapters": {k: {"kind": a.kind, "rank": a.rank} for k, a in adapters.items()}, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
