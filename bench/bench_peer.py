"""Our DiT step against diffusers' FluxTransformer2DModel of the same width, depth, heads and tokens.

    python bench/bench_peer.py [--model assets/default] [--repeats 15] [--threads 2] [--out runs/bench_peer.json]

Both run one denoising step (no grad, fp32, batch 1) on 64 image tokens (128x128 at f8/patch 2)
and 32 text tokens of width 384. The peer is built from a config with random weights:
- "flux single-stream": 8 single-stream blocks, 4 heads x 64 (the same block shape as ours);
- "flux double-stream": 8 double-stream (MM-DiT) blocks, the same width/heads (2x parameters).
Our DiT runs uncached (the whole sequence) and cached (context K/V precomputed, as in every
step after the first). Every model runs twice: with its stock linears (F.linear / MKL) and with
the pre-packed oneDNN linears our pipeline uses on CPU (kernels/packed.py), so the table gives
both "our pipeline's DiT vs stock diffusers" and "the same linear kernel on both sides".
Runs are interleaved and the median reported. Prints a markdown table and writes JSON.
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="assets/default")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_peer.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffusers import FluxTransformer2DModel

    from seedling.model.dit import DiT_configs, UnifiedDiT

    if Path(args.model, "dit").exists():
        ours = UnifiedDiT.from_pretrained(Path(args.model) / "dit")
    else:
        torch.manual_seed(0)
        ours = UnifiedDiT(DiT_configs["default"]()).eval()
    cfg = ours.dims  # the DiTConfig (config is a FrozenDict without head_dim)
    D, H, Dh, depth, L = cfg.width, cfg.heads, cfg.head_dim, cfg.depth, cfg.text_len
    C = cfg.latent_channels * cfg.patch**2
    n_img = 64
    common = dict(patch_size=1, in_channels=C, attention_head_dim=Dh, num_attention_heads=H,
                  joint_attention_dim=384, pooled_projection_dim=384, axes_dims_rope=tuple(cfg.rope_axes))
    peers = {
        "flux single-stream": FluxTransformer2DModel(num_layers=0, num_single_layers=depth, **common).eval(),
        "flux double-stream": FluxTransformer2DModel(num_layers=depth, num_single_layers=0, **common).eval(),
    }
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, cfg.latent_channels, 16, 16, generator=g)
    st, po = torch.randn(1, L, 384, generator=g), torch.randn(1, 384, generator=g)
    t = torch.full((1,), 0.5)
    hs = torch.randn(1, n_img, C, generator=g)
    img_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(8.0), torch.arange(8.0), indexing="ij"), -1).reshape(-1, 3)
    txt_ids = torch.zeros(L, 3)

    import copy

    from seedling.kernels.executor import FusedExecutor
    from seedling.kernels.packed import pack_linears

    ex = FusedExecutor()  # the pipeline's default: what "ours" runs in the studio

    def packed(m):
        m = copy.deepcopy(m)
        pack_linears(m)
        return m

    variants = {"": ours, ", packed linears": packed(ours)}
    peers = {f"{name}{suffix}": (m if not suffix else packed(m)) for name, m in peers.items()
             for suffix in ("", ", packed linears")}
    runs = {}
    params = {}
    with torch.no_grad():
        for suffix, m in variants.items():
            cache = ex.encode_context(m, st, po, "t2i")
            runs[f"ours (uncached{suffix})"] = partial(ex.forward, m, x, t, st, po, "t2i")
            runs[f"ours (cached context{suffix})"] = partial(ex.forward_cached, m, x, t, cache)
            params[f"ours (uncached{suffix})"] = params[f"ours (cached context{suffix})"] = m.num_parameters()
        for name, m in peers.items():
            runs[name] = (lambda m=m: m(hidden_states=hs, encoder_hidden_states=st, pooled_projections=po,
                                         timestep=t * 1000, img_ids=img_ids, txt_ids=txt_ids, return_dict=False))
        times = {k: [] for k in runs}
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    params.update({k: sum(p.numel() for p in m.parameters()) for k, m in peers.items()})
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ref = med["flux single-stream"]
    print(f"\nOne denoising step, {n_img} image + {L} text tokens, width {D}, depth {depth}, {H} heads, "
          f"{args.threads} threads, load {os.getloadavg()[0]:.1f}\n")
    ref_p = med["flux single-stream, packed linears"]
    print("| model | params (M) | ms / step (median) | vs flux single-stream | vs flux single-stream, packed |")
    print("|---|---:|---:|---:|---:|")
    for k in runs:
        print(f"| {k} | {params[k] / 1e6:.2f} | {med[k]:.2f} | {med[k] / ref:.2f}x | {med[k] / ref_p:.2f}x |")
    out = dict(ms=med, params=params, ratio_vs_flux_single={k: med[k] / ref for k in med},
               ratio_vs_flux_single_packed={k: med[k] / ref_p for k in med}, threads=args.threads,
               tokens=dict(image=n_img, text=L), width=D, depth=depth, heads=H, loadavg=os.getloadavg()[0],
               machine=platform.processor() or platform.machine(), torch=torch.__version__)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
