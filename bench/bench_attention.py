"""Attention kernels at the DiT's 128x128 shapes: ATen's CPU flash kernel against the plain product.

    python bench/bench_attention.py [--repeats 9] [--threads 2] [--out runs/bench_attention.json]

The fused DiT blocks (kernels/csrc/fused_block.cpp) compute unmasked attention as two batched
GEMMs around a softmax over the materialised scores ("math") when the score matrix is small
(<= 4M entries), and with ATen's flash kernel otherwise. This times both on the shapes a 128x128
call has (4 heads of 64; 64 output queries against context + outputs for 1, 2 and 4 references,
and the context attending to itself), at batch 1 (guidance 1) and 2 (guidance branches batched),
and checks they agree. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_cache import write_result  # noqa: E402

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


def per_call_us(fn, repeats: int, inner: int = 50) -> float:
    for _ in range(10):
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
    rows = []
    with torch.no_grad():
        for B in args.batches:
            for Lq, Lk, what in SHAPES:
                q, k, v = (torch.randn(B, 4, n, 64, generator=g) for n in (Lq, Lk, Lk))
                diff = (math_attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs().max().item()
                t_flash, t_math = [], []
                for _ in range(2):  # interleaved
                    t_flash.append(per_call_us(lambda: flash_attention(q, k, v), args.repeats))
                    t_math.append(per_call_us(lambda: math_attention(q, k, v), args.repeats))
                f, m = min(t_flash), min(t_math)
                rows.append(dict(batch=B, queries=Lq, keys=Lk, what=what, flash_us=f, math_us=m, speedup=f / m,
                                 max_abs_diff=diff))
    print(f"\nUnmasked attention, 4 heads x 64, {args.threads} threads (us per call, best of 2 medians)\n")
    print("| batch | queries x keys | what | flash | math | math speedup | max abs diff |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch']} | {r['queries']} x {r['keys']} | {r['what']} | {r['flash_us']:.1f} | {r['math_us']:.1f} "
              f"| {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    write_result(args.out, "none", rows=rows, threads=args.threads)


if __name__ == "__main__":
    main()
