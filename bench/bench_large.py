"""The large config at high resolution: per-step and per-image times (random weights).

    python bench/bench_large.py [--config large] [--size 1024] [--device cuda] [--dtype bf16]
                                [--refs 1,4] [--repeats 5] [--out runs/bench_large.json]

Builds the named DiT config (default "large", 1.53B parameters) with random weights, a matching
random autoencoder (same layout as the default one, with the config's latent channels) and the
real MiniLM text encoder, and times on one device:
- one DiT forward (= one sampler step) for text-to-image at `--size`, one branch (guidance 1)
  and two branches batched (text guidance);
- whole images through `SeedlingPipeline.__call__` (text encoding, every step, decoding), at the
  distilled default (2 steps, guidance 1) and the base model's (8 steps, guidance 3);
- compose with N references at 8 steps, the reference K/V cache on and off (the same loop as
  bench/bench_cache.py), with the speedup and the token-count limit.
Times are medians of `--repeats` runs after a warm-up, with the device synchronised around each.
`--dtype bf16` keeps the DiT's weights in bf16 and runs under bf16 autocast. Prints a markdown
table and writes JSON. Meant for a GPU; `--config tiny --size 64 --device cpu` runs anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_cache, also when loaded by path

from bench_cache import sample, token_limit  # noqa: E402

from seedling.model.autoencoder import AE_CONFIGS, Autoencoder  # noqa: E402
from seedling.model.dit import DiT_configs, UnifiedDiT  # noqa: E402
from seedling.model.pipeline import PipelineConfig, SeedlingPipeline  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def build(config: str, device: str, dtype: torch.dtype, seed: int = 0) -> SeedlingPipeline:
    torch.manual_seed(seed)
    dit = UnifiedDiT(DiT_configs[config]())
    with torch.no_grad():  # off the zero init, so every block does real work
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    base = AE_CONFIGS["tiny" if config == "tiny" else "default"]
    ae_cfg = dataclasses.replace(base, latent_channels=dit.config.latent_channels)
    pipe = SeedlingPipeline(dit, Autoencoder(ae_cfg), pipeline_config=PipelineConfig(text_len=dit.config.text_len))
    pipe.to(device)
    if dtype != torch.float32:
        pipe.dit.to(dtype)
    return pipe


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="large", choices=sorted(DiT_configs))
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--refs", default="1,4", help="comma list of reference counts for the cache rows ('' for none)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="runs/bench_large.json")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch")
    dtype = DTYPES[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    pipe = build(args.config, str(device), dtype)
    if args.size % pipe.grid:
        raise SystemExit(f"--size must be a multiple of {pipe.grid}")
    dit, cfg = pipe.dit, pipe.dit.config
    n_params = sum(p.numel() for p in dit.parameters())
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    h = args.size // pipe.autoencoder.factor
    tokens = (h // cfg.patch) ** 2
    C, L = cfg.latent_channels, cfg.text_len
    g = torch.Generator().manual_seed(0)
    states = torch.randn(2, L, 384, generator=g).to(device)
    pooled = torch.randn(2, 384, generator=g).to(device)

    rows = []
    with torch.no_grad(), amp:
        for branches in (1, 2):
            x = torch.randn(branches, 1, C, h, h, generator=g).to(device)
            t = torch.full((branches,), 0.5, device=device)

            def step(x=x, t=t, branches=branches):
                return pipe.executor.forward(dit, x, t, states[:branches], pooled[:branches], "t2i", [], None)

            sec = median_time(step, device, args.repeats)
            rows.append(dict(kind="step", what=f"t2i DiT forward, {branches} branch{'es' if branches > 1 else ''}",
                             tokens=tokens + L, batch=branches, ms=sec * 1e3))

        for steps, guidance in ((2, 1.0), (8, 3.0)):
            def image(steps=steps, guidance=guidance):
                return pipe("a red fox in the snow", steps=steps, guidance=guidance, seed=0,
                            height=args.size, width=args.size, previews=False)

            sec = median_time(image, device, args.repeats)
            nfe = steps * (2 if guidance != 1.0 else 1)
            rows.append(dict(kind="image", what=f"t2i image, {steps} steps, guidance {guidance:g} ({nfe} DiT evaluations)",
                             tokens=tokens + L, batch=2 if guidance != 1.0 else 1, ms=sec * 1e3, steps=steps))

        for n in [int(v) for v in args.refs.split(",") if v.strip()]:
            refs = [torch.randn(1, C, h, h, generator=g).to(device) for _ in range(n)]
            x = torch.randn(1, 1, C, h, h, generator=g).to(device)

            def compose(cached, refs=refs, x=x):  # one branch: guidance 1
                return sample(pipe, x, states, pooled, refs, 8, cached)

            a, b = compose(True).float(), compose(False).float()
            rel = ((a - b).abs().max() / b.abs().max()).item()
            tc = median_time(lambda: compose(True), device, args.repeats)
            tu = median_time(lambda: compose(False), device, args.repeats)
            ctx = n * tokens + L
            limit = token_limit(8, ctx, tokens)
            rows.append(dict(kind="cache", what=f"compose, {n} ref{'s' if n > 1 else ''}, 8 steps, cache on / off",
                             tokens=ctx + tokens, batch=1, ms=tc * 1e3, uncached_ms=tu * 1e3, speedup=tu / tc,
                             token_limit=limit, max_rel_diff=rel))

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"\n{args.config} config ({n_params / 1e9:.2f}B parameters), {args.size}x{args.size} "
          f"({tokens} image tokens + {L} text), {args.dtype}, {dev_name}, torch {torch.__version__}\n")
    print("| what | tokens | batch | ms | per step ms | cache off ms | speedup (token limit) | max rel diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per_step = r["ms"] / r["steps"] if "steps" in r else (r["ms"] / 8 if r["kind"] == "cache" else r["ms"])
        extra = (f"{r['uncached_ms']:.1f} | {r['speedup']:.2f}x ({r['token_limit']:.2f}x) | {r['max_rel_diff']:.1e}"
                 if r["kind"] == "cache" else " | | ")
        print(f"| {r['what']} | {r['tokens']} | {r['batch']} | {r['ms']:.1f} | {per_step:.2f} | {extra} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(
        config=args.config, parameters=n_params, size=args.size, image_tokens=tokens, text_tokens=L,
        dtype=args.dtype, device=dev_name, torch=torch.__version__, repeats=args.repeats, rows=rows), indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
