"""Attention kernels at the DiT's 128x128 shapes: ATen's CPU flash kernel, the plain product, and
the fused blocks' brgemm tiles.

    python bench/bench_attention.py [--repeats 9] [--threads 2] [--out runs/bench_attention.json]

The fused DiT blocks (kernels/csrc/fused_block.cpp, `tile_attention`) compute attention per
(batch, head, 64 query rows) with two oneDNN brgemm micro-kernel calls around a row softmax
("tile"; up to 4096 keys, ATen's flash kernel beyond). This times it against ATen's flash kernel
("flash", what F.scaled_dot_product_attention runs on CPU) and the plain product ("math": two
batched GEMMs around a softmax over the materialised scores) on the shapes a 128x128 call has
(4 heads of 64; 64 output queries against context + outputs for 1, 2 and 4 references, and the
context attending to itself), at batch 1 (guidance 1) and 2 (guidance branches batched), and
checks they agree. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from bench.bench_cache import write_result  # noqa: E402
from seedling.kernels import fused  # noqa: E402

TEXT = 32  # text tokens of the default model
# (queries, keys, what): cached-step / uncached-output attention and context self-attention
SHAPES = [(64, 64 * n + TEXT + 64, f"outputs, {n} ref") for n in (1, 2, 4)] + [
    (64 * n + TEXT, 64 * n + TEXT, f"context, {n} ref") for n in (1, 2, 4)
]


def math_attention(q, k, v):
    """The fused block's small-score path, in Python: softmax(q k^T / sqrt(d)) v."""
    B, H, Lq, Dh = q.shape
    Lk = k.shape[2]
    s = torch.baddbmm(q.new_empty(1, 1, 1), q.reshape(B * H, Lq, Dh), k.reshape(B * H, Lk, Dh).transpose(1, 2),
                      beta=0, alpha=1 / math.sqrt(Dh))
    torch.softmax(s, -1, out=s)
    return torch.bmm(s, v.reshape(B * H, Lk, Dh)).view(B, H, Lq, Dh)


def flash_attention(q, k, v):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]


def per_call_us(fn, repeats: int, inner: int = 50, warmup: int = 10) -> float:
    """Median over `repeats` of the mean time of `inner` back-to-back calls, in microseconds."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        runs.append((time.perf_counter() - t0) / inner)
    return statistics.median(runs) * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default="runs/bench_attention.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    tile = fused.available()
    rows = []
    with torch.no_grad():
        for B in args.batches:
            for Lq, Lk, what in SHAPES:
                q, k, v = (torch.randn(B, 4, n, 64, generator=g) for n in (Lq, Lk, Lk))
                want = F.scaled_dot_product_attention(q, k, v)
                kernels = {"flash": flash_attention, "math": math_attention}
                if tile:
                    kernels["tile"] = fused.attention
                diff = max((fn(q, k, v) - want).abs().max().item() for fn in kernels.values())
                times = {name: [] for name in kernels}
                for _ in range(2):  # interleaved
                    for name, fn in kernels.items():
                        times[name].append(per_call_us(lambda fn=fn: fn(q, k, v), args.repeats))
                row = dict(batch=B, queries=Lq, keys=Lk, what=what, max_abs_diff=diff)
                row.update({f"{name}_us": min(t) for name, t in times.items()})
                rows.append(row)
    print(f"\nUnmasked attention, 4 heads x 64, {args.threads} threads (us per call, best of 2 medians)\n")
    print("| batch | queries x keys | what | flash | math | tile (fused blocks) | tile vs flash | max abs diff |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        tile_us = r.get("tile_us")
        tile_col = "-" if tile_us is None else f"{tile_us:.1f}"
        ratio_col = "-" if tile_us is None else f"{r['flash_us'] / tile_us:.2f}x"
        print(f"| {r['batch']} | {r['queries']} x {r['keys']} | {r['what']} | {r['flash_us']:.1f} | {r['math_us']:.1f} "
              f"| {tile_col} | {ratio_col} | {r['max_abs_diff']:.1e} |")
    write_result(args.out, "none", rows=rows, threads=args.threads)


if __name__ == "__main__":
    main()
