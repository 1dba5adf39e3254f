"""Reference K/V cache and attention-backend benchmark.

    python bench/bench_cache.py [--model assets/default] [--steps 8] [--repeats 7] [--linear packed,plain]
                                [--blocks fused,python] [--guidance 1 3] [--out runs/bench_cache.json]

For compose with N = 1, 2, 4 references (128x128, one output) it times the whole 8-step
denoising loop with the reference cache (context encoded once, blocks run on the 64 output tokens
per step) and without it (the full [refs ; text ; outputs] sequence every step), checks the two
give the same latents (fp32, max relative difference), and reports the per-step cost. The loop is
the pipeline's own (`SeedlingPipeline.make_branches` + `euler_sample`), at one branch (guidance 1)
and at the model's default compose guidance, where the prompt and empty-prompt branches run as
one batch of two; `--guidance` lists the settings instead (any value other than 1 batches two
branches). It also times one uncached forward with the dense masked SDPA against the split backend.
Runs are interleaved (cache, no cache, cache, ...) and the median is reported, so a busy machine
slows both sides alike. `--linear` runs everything once per linear kernel of the pipeline
("packed": oneDNN with pre-packed weights, the pipeline's CPU default; "plain": F.linear / MKL;
see kernels/packed.py). `--blocks` does the same for the DiT blocks ("fused": one C++ call per block,
kernels/fused.py, the default where it builds; "python": the Python blocks; packed linears only).
Every row uses the same kernels on both sides. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from seedling.kernels import fused  # noqa: E402
from seedling.model.pipeline import SeedlingPipeline  # noqa: E402
from seedling.model.sampler import euler_sample, make_schedule, step_pairs  # noqa: E402


def load_pipe(model: str | None) -> SeedlingPipeline:
    if model and Path(model, "pipeline.json").exists():
        return SeedlingPipeline.from_pretrained(model)
    pipe = SeedlingPipeline.from_config("default", seed=0)
    for p in pipe.dit.parameters():  # random weights off the zero init, so every path does real work
        with torch.no_grad():
            p.add_(torch.randn_like(p) * 0.02)
    return pipe


@torch.no_grad()
def sample(pipe, x, states, pooled, refs, steps, cached: bool, guidance: float = 1.0):
    """The pipeline's compose denoising loop (no image guidance), from the given noise."""
    masks = [torch.zeros_like(r[:, :1]) for r in refs]
    p = pipe.dit.config.patch
    n_out = x.shape[1] * (x.shape[-2] // p) * (x.shape[-1] // p)
    times = make_schedule(steps)
    branches = pipe.make_branches("compose", states, pooled, refs, masks, x.shape[0], guidance, 1.0, cached,
                                  n_out=n_out, steps=step_pairs(times, pipe.settings.shortcut))
    return euler_sample(branches, x.clone(), times, guidance, 1.0, shortcut=pipe.settings.shortcut)


def token_limit(steps: int, ctx_tokens: int, out_tokens: int) -> float:
    """The cache's speedup if time were proportional to tokens: the full sequence every step
    against the context once and the outputs every step."""
    return steps * (ctx_tokens + out_tokens) / (ctx_tokens + steps * out_tokens)


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="assets/default")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--refs", default="1,2,4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--linear", default="packed,plain", help="comma list of linear kernels (pipeline.set_linear_kernel)")
    ap.add_argument("--blocks", default="fused", help="comma list: fused (C++ blocks, kernels/fused.py), python")
    ap.add_argument("--guidance", type=float, nargs="+", default=None,
                    help="guidance settings (default: 1 and the model's default guidance)")
    ap.add_argument("--out", default="runs/bench_cache.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_pipe(args.model)
    pipe.dit.eval()
    dit = pipe.dit
    cfg = dit.config
    C, L = cfg.latent_channels, cfg.text_len
    g = torch.Generator().manual_seed(0)
    states, pooled = torch.randn(2, L, 384, generator=g), torch.randn(2, 384, generator=g)
    st, po = states[:1], pooled[:1]
    x = torch.randn(1, 1, C, 16, 16, generator=g)
    rows = []
    guidances = args.guidance or sorted({1.0, float(pipe.settings.guidance)})
    settings = []
    for value in dict.fromkeys(guidances):
        default = " (the model's default)" if value == pipe.settings.guidance else ""
        label = "1 branch (guidance 1)" if value == 1.0 else f"guidance {value:g}: cond + no_text batched"
        settings.append((value, label + default))
    kernels = [k.strip() for k in args.linear.split(",") if k.strip()]
    was_enabled = fused.enabled()
    block_kinds = [b.strip() for b in args.blocks.split(",") if b.strip()]
    if "fused" in block_kinds and not fused.available():
        print(f"fused blocks unavailable ({fused.last_error()}): timing the Python blocks only")
        block_kinds = [b for b in block_kinds if b != "fused"] or ["python"]
    cases = [(n, kind, blocks) for kind in kernels for blocks in block_kinds for n in (int(v) for v in args.refs.split(","))
             if not (blocks == "fused" and kind != "packed")]
    for n, kind, blocks in cases:
        pipe.set_linear_kernel(kind)
        fused.set_enabled(blocks == "fused")
        refs = [torch.randn(1, C, 16, 16, generator=g) for _ in range(n)]
        for guidance, label in settings:
            def run(cached, refs=refs, guidance=guidance):
                return sample(pipe, x, states, pooled, refs, args.steps, cached, guidance)

            a, b = run(True), run(False)
            rel = ((a - b).abs().max() / b.abs().max()).item()
            t_c, t_u = [], []
            for _ in range(args.repeats):  # interleaved
                t_c += timed(partial(run, True), 1)
                t_u += timed(partial(run, False), 1)
            mc, mu = statistics.median(t_c), statistics.median(t_u)
            tokens_ctx = n * 64 + L
            limit = token_limit(args.steps, tokens_ctx, 64)
            rows.append(dict(refs=n, linear=pipe.linear_kernel, blocks=blocks, setting=label, guidance=guidance, tokens=tokens_ctx + 64,
                             cached_ms=mc * 1e3, uncached_ms=mu * 1e3,
                             cached_ms_per_step=mc * 1e3 / args.steps, uncached_ms_per_step=mu * 1e3 / args.steps,
                             speedup=mu / mc, token_limit=limit, max_rel_diff=rel))
    # dense vs split attention on one uncached forward with 4 references (the Python blocks: the
    # fused block implements split only)
    pipe.set_linear_kernel(kernels[0])
    fused.set_enabled(False)
    refs = [torch.randn(1, C, 16, 16, generator=g) for _ in range(4)]
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        fd = lambda: dit(x, t, st, po, "compose", refs, backend="dense")  # noqa: E731
        fs = lambda: dit(x, t, st, po, "compose", refs, backend="split")  # noqa: E731
        td, ts = [], []
        for _ in range(args.repeats * 2):
            td += timed(fd, 1)
            ts += timed(fs, 1)
        attn_rel = ((fd() - fs()).abs().max() / fs().abs().max()).item()
    fused.set_enabled(was_enabled)
    attn = dict(refs=4, dense_ms=statistics.median(td) * 1e3, split_ms=statistics.median(ts) * 1e3,
                max_rel_diff=attn_rel)

    print(f"\nReference K/V cache, compose 128x128, {args.steps} steps, "
          f"{args.threads} threads, load {os.getloadavg()[0]:.1f}\n")
    print("| linear | blocks | refs | branches | tokens | cached ms (per step) | uncached ms (per step) | speedup | token limit | max rel diff |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['linear']} | {r['blocks']} | {r['refs']} | {r['setting']} | {r['tokens']} | {r['cached_ms']:.1f} ({r['cached_ms_per_step']:.2f}) | "
              f"{r['uncached_ms']:.1f} ({r['uncached_ms_per_step']:.2f}) | {r['speedup']:.2f}x | "
              f"{r['token_limit']:.2f}x | {r['max_rel_diff']:.1e} |")
    print(f"\nAttention backends ({kernels[0]} linears, Python blocks), one uncached forward, 4 refs: dense {attn['dense_ms']:.2f} ms, "
          f"split {attn['split_ms']:.2f} ms ({attn['dense_ms'] / attn['split_ms']:.2f}x), "
          f"max rel diff {attn['max_rel_diff']:.1e}")
    write_result(args.out, args.model, rows=rows, attention=attn, steps=args.steps, threads=args.threads,
                 linear_kernels=kernels, block_kinds=block_kinds)


def write_result(out: str, model: str, **fields) -> None:
    """`fields` plus the model and the machine, as JSON at `out`."""
    result = dict(**fields, model=model if Path(model, "dit").exists() else "random default config",
                  machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                  loadavg=os.getloadavg()[0], torch=torch.__version__)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
