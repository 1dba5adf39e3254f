"""Where the reference cache's time goes at 128x128 on the CPU: the fixed cost of a DiT call.

    python bench/cache_overhead.py [--model assets/default] [--refs 1 4] [--batch 1 2] [--out runs/cache_overhead.json]

`bench/bench_cache.py` measures the cache's speedup on whole 8-step generations. This script
splits it into its parts, timing single calls of the DiT (median of `--repeats`):
- `cached`: one cached step (`forward_cached`, the 64 output tokens of one 128x128 image),
- `uncached`: one full step (`forward` over references, text and output),
- `encode`: the context encoding the cache does once per generation (`encode_context`),
and the same three calls at their smallest, on a narrow twin of the model: the same depth and
blocks, but one head of the same head size (width = head_dim, random weights), one output token
(a 2x2 latent), no references and one text token. Those "floor" calls run every operator of the
real call on almost no data and almost no weights, so their time is the per-call cost that grows
with neither tokens nor width: Python, operator dispatch, oneDNN primitive set-up. (The real
model at one token would also count the time to stream its 40 MB of fp32 weights, which a
64-token call overlaps with its arithmetic.) The table gives the 8-step speedup these calls add up to,
8 * uncached / (8 * cached + encode), next to the same with each call's floor taken off, and the
token-count limit. Batch 2 is how the pipeline runs guidance above 1 (the prompt and the
empty-prompt branch as one batch).

Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from bench.bench_cache import load_pipe, timed, token_limit, write_result  # noqa: E402
from seedling.kernels.executor import FusedExecutor  # noqa: E402

EX = FusedExecutor()  # the pipeline's default executor: single calls as a generation makes them


def median_ms(fn, repeats: int) -> float:
    """Median of `repeats` timed calls after 3 warm-up calls, in ms."""
    timed(fn, 3)
    return statistics.median(timed(fn, repeats)) * 1e3


def narrow_twin(dit, linear: str):
    """The same blocks and depth with one head of the same size: per-call costs, no arithmetic."""
    from dataclasses import replace

    from seedling.kernels.packed import pack_linears
    from seedling.model.dit import UnifiedDiT

    cfg = dit.dims
    twin = UnifiedDiT(replace(cfg, width=cfg.head_dim, heads=1)).eval()
    if linear == "packed":
        pack_linears(twin)
    return twin


@torch.no_grad()
def measure(dit, twin, batch: int, refs: int, steps: int, repeats: int, seed: int = 0) -> dict:
    cfg = dit.config
    C, L = cfg.latent_channels, cfg.text_len
    g = torch.Generator().manual_seed(seed)
    t = torch.full((batch,), 0.5)

    def calls(n_refs, text_len, side, dit=dit):
        st = torch.randn(batch, text_len, cfg.text_dim, generator=g)
        po = torch.randn(batch, cfg.text_dim, generator=g)
        rs = [torch.randn(batch, C, 16, 16, generator=g) for _ in range(n_refs)]
        x = torch.randn(batch, 1, C, side, side, generator=g)
        cache = EX.encode_context(dit, st, po, "compose", rs)
        return dict(
            cached=lambda: EX.forward_cached(dit, x, t, cache),
            uncached=lambda: EX.forward(dit, x, t, st, po, "compose", rs),
            encode=lambda: EX.encode_context(dit, st, po, "compose", rs),
        )

    full = {k: median_ms(f, repeats) for k, f in calls(refs, L, 16).items()}
    floor = {k: median_ms(f, repeats) for k, f in calls(0, 1, cfg.patch, twin).items()}
    ratio = steps * full["uncached"] / (steps * full["cached"] + full["encode"])
    net = {k: max(full[k] - floor[k], 1e-6) for k in full}
    ratio_net = steps * net["uncached"] / (steps * net["cached"] + net["encode"])
    return dict(batch=batch, refs=refs, steps=steps, ms=full, floor_ms=floor,
                floor_share_of_cached_step=floor["cached"] / full["cached"],
                speedup=ratio, speedup_without_floor=ratio_net,
                token_limit=token_limit(steps, refs * 64 + L, 64))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="assets/default")
    ap.add_argument("--refs", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--linear", default="packed", help="pipeline.set_linear_kernel: packed or plain")
    ap.add_argument("--out", default="runs/cache_overhead.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_pipe(args.model)
    pipe.set_linear_kernel(args.linear)
    dit = pipe.dit.eval()
    twin = narrow_twin(dit, pipe.linear_kernel)
    rows = [measure(dit, twin, b, n, args.steps, args.repeats) for b in args.batch for n in args.refs]

    print(f"\nDiT calls at 128x128, {args.linear} linears, {args.threads} threads, load {os.getloadavg()[0]:.1f} "
          f"(ms, median of {args.repeats}; floor: the narrow twin, 1 output token, no references, 1 text token)\n")
    print("| batch | refs | cached step (floor) | uncached step (floor) | encode (floor) | floor share of cached step "
          f"| {args.steps}-step speedup | without the floors | token limit |")
    print("|---:|---:|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        m, f = r["ms"], r["floor_ms"]
        print(f"| {r['batch']} | {r['refs']} | {m['cached']:.2f} ({f['cached']:.2f}) | {m['uncached']:.2f} ({f['uncached']:.2f}) "
              f"| {m['encode']:.2f} ({f['encode']:.2f}) | {100 * r['floor_share_of_cached_step']:.0f}% "
              f"| {r['speedup']:.2f}x | {r['speedup_without_floor']:.2f}x | {r['token_limit']:.2f}x |")
    write_result(args.out, args.model, rows=rows, linear=pipe.linear_kernel, threads=args.threads,
                 repeats=args.repeats)


if __name__ == "__main__":
    main()
