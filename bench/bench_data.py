"""How fast the DiT's training data is drawn, per task, at 128 px and at 512 px.

    python bench/bench_data.py [--sizes 128 512] [--icon-rasters cache/icon_rasters] [--json out.json]

Each task's batches are the trainer's own (`planned_batch`, one process, as each data worker of
`seedling-train --workers N` draws them), from the same seeds at every size: at 512 px under the
f32 autoencoder and at 128 px under the f8 one an image is 64 tokens either way, so the batches
hold the same draws and only the rendering differs. `--icon-rasters DIR` also times each size
above 128 px with the icons drawn from rasters in DIR (written there first where missing, as
`seedling-train --size 512` does), interleaved with the font's rendering. "drawn / kept" is the
samples drawn per sample a batch keeps (compose and storyboards used to draw 2.5x their batch).
Prints a table of milliseconds per sample (one thread) and writes JSON with the CPU's name and
the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench_dcae import cpu_name  # bench/ is the script's folder

from seedling.model.data.icons import ICON_SIZE, load_icons
from seedling.model.dit import DiTConfig
from seedling.model.data.tasks import TaskSampler, icon_sizes
from seedling.model.task_table import TASK_NAMES
from seedling.model.train_data import planned_batch

TEXT_LEN = DiTConfig().text_len  # the batch size depends on it through the token budget
TOKENS_PER_IMAGE = 64  # a 16x16 latent at patch 2: 128 px under f8, 512 px under f32


def time_task(sampler, task: str, batches: int, seed: int, token_budget: int, max_batch: int) -> tuple[int, int, float]:
    """(samples kept, samples drawn, seconds) for `batches` of `task`: the steps 0..batches-1 of
    a run seeded `seed`, without reference boxes."""
    weights = {t: (1.0 if t == task else 0.0) for t in TASK_NAMES}
    drawn = [0]
    sample = sampler.sample

    def counted(*a, **k):
        drawn[0] += 1
        return sample(*a, **k)

    sampler.sample = counted
    n, t0 = 0, time.perf_counter()
    try:
        for step in range(batches):
            b = planned_batch(sampler, seed, step, batches, token_budget, TEXT_LEN, TOKENS_PER_IMAGE, max_batch,
                              curriculum=False, weights=weights)
            assert b["task"] == task, (b["task"], task)
            n += len(b["prompts"])
    finally:
        sampler.sample = sample
    return n, drawn[0], time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=list(TASK_NAMES))
    p.add_argument("--batches", type=int, default=4, help="batches per task, size and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds, interleaved; the median is reported")
    p.add_argument("--token-budget", type=int, default=3072)
    p.add_argument("--max-batch", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--icon-rasters", default=None,
                   help="also time each size above 128 px with its icons drawn from rasters in this folder "
                        "(written there first where missing)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    icons = load_icons()
    modes = [(size, "font") for size in args.sizes]
    if args.icon_rasters:
        from seedling.model.data.icons import ensure_rasters, use_rasters

        for size in args.sizes:
            if size != ICON_SIZE:
                for side in icon_sizes(size):
                    ensure_rasters(icons, side, args.icon_rasters)
                modes.insert(modes.index((size, "font")) + 1, (size, "rasters"))
        use_rasters(None)
    names = [f"{size}" if size == ICON_SIZE else f"{size}_{how}" for size, how in modes]
    rows = []
    for task in args.tasks:
        times: dict[str, list[float]] = {n: [] for n in names}
        row = {"task": task}
        for r in range(args.rounds):
            for name, (size, how) in zip(names, modes):
                if args.icon_rasters:
                    use_rasters(args.icon_rasters if how == "rasters" else None)
                sampler = TaskSampler(icons, seed=args.seed, size=size)
                if r == 0:
                    time_task(sampler, task, 1, args.seed + 1, args.token_budget, args.max_batch)  # warm the caches
                n, drawn, s = time_task(sampler, task, args.batches, args.seed, args.token_budget, args.max_batch)
                times[name].append(1000 * s / n)
                row[f"kept_{name}"], row[f"drawn_{name}"] = n, drawn
        for name in names:
            row[f"ms_per_sample_{name}"] = round(statistics.median(times[name]), 2)
        rows.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    print()
    print("| task | drawn / kept | " + " | ".join(f"ms/sample, {n.replace('_', ' px, ')}" + (" px" if "_" not in n else "")
                                                for n in names) + " |")
    print("|---" * (2 + len(names)) + "|")
    for r in rows:
        waste = r[f"drawn_{names[-1]}"] / r[f"kept_{names[-1]}"]
        print(f"| {r['task']} | {waste:.2f} | " + " | ".join(f"{r[f'ms_per_sample_{n}']:.1f}" for n in names) + " |")
    out = {"cpu": cpu_name(), "loadavg": os.getloadavg(), "threads": 1, "args": vars(args), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
