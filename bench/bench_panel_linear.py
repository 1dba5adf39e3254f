"""Linear kernels of the fused DiT block: oneDNN's packed linear against brgemm tiles over panels.

    python bench/bench_panel_linear.py [--rows 1 64 128 352 704] [--repeats 7] [--out runs/bench_panel_linear.json]

`kernels/packed.py` multiplies with `mkldnn::_linear_pointwise` on a once-reordered weight; the
fused blocks (kernels/fused.py) call oneDNN's brgemm micro-kernels per (64-row, panel) tile over
a weight packed once into contiguous panels (`pack_panels`), with bias and GELU in the tile's
epilogue. This times both on the DiT's four block layers (qkv 256->768, proj 256->256, fc1
256->1024 with the tanh GELU, fc2 1024->256) at the row counts of its calls (64 = a cached step's
outputs at one branch, 128 at two, 352 / 704 = an uncached step with 4 references at one / two
branches), checks they agree, and prints a markdown table (us per call, median) and writes JSON.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bench.bench_attention import per_call_us  # noqa: E402
from bench.bench_cache import write_result  # noqa: E402
from seedling.kernels import fused  # noqa: E402

LAYERS = [("qkv", 256, 768, False), ("proj", 256, 256, False), ("fc1+gelu", 256, 1024, True), ("fc2", 1024, 256, False)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 64, 128, 352, 704])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_panel_linear.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not fused.available():
        raise SystemExit(f"the fused blocks are unavailable here: {fused.last_error()}")
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        for M in args.rows:
            for name, K, N, gelu in LAYERS:
                x, w, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g) * 0.05, torch.randn(N, generator=g)
                packed = torch.ops.mkldnn._reorder_linear_weight(w, 128)
                panels = fused.pack_panels(w)
                post, alg = ("gelu", "tanh") if gelu else ("none", "")

                def onednn():
                    return torch.ops.mkldnn._linear_pointwise(x, packed, b, post, [], alg)

                def brgemm():
                    return fused.panel_linear(x, panels, b, gelu)

                want = F.linear(x, w, b)
                want = F.gelu(want, approximate="tanh") if gelu else want
                diff = max((onednn() - want).abs().max().item(), (brgemm() - want).abs().max().item())
                t_o, t_b = [], []
                for _ in range(2):  # interleaved
                    t_o.append(per_call_us(onednn, args.repeats, inner=100, warmup=20))
                    t_b.append(per_call_us(brgemm, args.repeats, inner=100, warmup=20))
                o, p = min(t_o), min(t_b)
                rows.append(dict(rows=M, layer=name, K=K, N=N, onednn_us=o, panels_us=p, speedup=o / p, max_abs_diff=diff))
    print(f"\nBlock linears, {args.threads} threads (us per call, best of 2 medians)\n")
    print("| rows | layer | oneDNN packed | brgemm panels | speedup | max abs diff vs F.linear |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['rows']} | {r['layer']} | {r['onednn_us']:.1f} | {r['panels_us']:.1f} | {r['speedup']:.2f}x "
              f"| {r['max_abs_diff']:.1e} |")
    write_result(args.out, "none", rows=rows, threads=args.threads)


if __name__ == "__main__":
    main()
