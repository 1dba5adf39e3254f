"""Benchmark the quantization modes of kernels/quant.py against fp32 on CPU.

A stack of DiT-shaped linears (per block: qkv 256->768, MLP up 256->1024, down 1024->256)
runs on batch 1-3 x 64-400 tokens. Every mode is timed in the same loop, one forward each in
turn (interleaved, so background load hits all modes alike), and the median is reported.

    python bench/bench_quant.py [--out runs/bench_quant.json] [--depth 4] [--repeats 30]

On a CPU with native bf16 "int8" multiplies in bf16 and an extra row "int8/fp32" shows the
same weights multiplied in fp32. The row "fp32/packed" is the fp32 model with the pre-packed
oneDNN linears the pipeline uses on CPU by default (kernels/packed.py); the last column compares
every mode with it.

Prints a markdown table (mode, weight MB, ratio, batch x tokens, ms, speed vs fp32, relative
error) and writes the same rows as JSON.

    python bench/bench_quant.py --pipeline assets/default [--out runs/bench_quant_pipeline.json]

times whole images instead: one pipeline per mode (fp32 packed, the pipeline's default; fp32
plain `F.linear`; every quantization mode), each generating the same prompts at the model's
default steps and guidance, interleaved (one image per mode in turn), median per mode, with the
DiT's weight memory and the mean absolute pixel difference from fp32 (0-255).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from seedling.kernels.packed import linear_gelu, pack_linears  # noqa: E402
from seedling.kernels.quant import QUANT_MODES, native_bf16_cpu, quantize, weight_bytes

WIDTH, MLP_WIDTH = 256, 1024
CASES = [(1, 64), (1, 400), (3, 64), (3, 400)]  # (batch, tokens)


class LinearStack(nn.Module):
    """`depth` blocks of our linear shapes; x (B, T, 256) -> (B, T, 256)."""

    def __init__(self, depth: int):
        super().__init__()
        self.qkv = nn.ModuleList(nn.Linear(WIDTH, 3 * WIDTH) for _ in range(depth))
        self.up = nn.ModuleList(nn.Linear(WIDTH, MLP_WIDTH) for _ in range(depth))
        self.down = nn.ModuleList(nn.Linear(MLP_WIDTH, WIDTH) for _ in range(depth))
        for lin in [*self.qkv, *self.up, *self.down]:
            # Trained transformer weights are roughly Gaussian; NF4's grid assumes that.
            nn.init.normal_(lin.weight, std=lin.in_features**-0.5)
            nn.init.normal_(lin.bias, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for qkv, up, down in zip(self.qkv, self.up, self.down):
            # 0.1: a residual gate (AdaLN-style) that keeps the stream's scale steady over depth
            x = x + qkv(x)[..., :WIDTH] * 0.1  # (B, T, 768): its q part stands in for attention
            # the DiT's MLP: tanh-GELU, fused into the first linear where the layer can
            # (packed fp32, w8a8-packed), as model/dit.py runs it
            x = x + down(linear_gelu(up, x, "tanh")) * 0.1  # (B, T, 1024) -> (B, T, 256)
        return x


def build(mode: str, depth: int) -> nn.Module:
    """`mode` is a QUANT_MODES entry, "int8/fp32" (weight-only int8 with its product forced to
    fp32; plain "int8" multiplies in bf16 on CPUs with native bf16) or "fp32/packed" (the fp32
    stack with oneDNN-packed linears)."""
    torch.manual_seed(0)  # the same fp weights for every mode
    if mode == "fp32/packed":
        model = LinearStack(depth).eval()
        if not pack_linears(model):
            raise RuntimeError("this torch build has no oneDNN linear ops")
        return model
    if mode == "int8/fp32":
        return quantize(LinearStack(depth).eval(), "int8", int8_compute="fp32")
    return quantize(LinearStack(depth).eval(), mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_quant.json")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default=",".join(QUANT_MODES), help="comma-separated subset")
    parser.add_argument("--pipeline", default=None, help="a model folder: time whole images per mode instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.pipeline:
        return bench_pipeline(args)
    # bitsandbytes' LLM.int8 logs a warning on every call that it casts fp32 inputs to fp16.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)

    modes = ["none"] + [m for m in args.modes.split(",") if m and m != "none"]
    if "int8" in modes and native_bf16_cpu():  # show both int8 products side by side
        modes.insert(modes.index("int8") + 1, "int8/fp32")
    modes.insert(1, "fp32/packed")
    models, skipped = {}, {}
    for mode in modes:
        try:
            models[mode] = build(mode, args.depth)
        except RuntimeError as exc:  # a bnb mode that cannot run here: report it, bench the rest
            skipped[mode] = str(exc)
    inputs = {case: torch.randn(*case, WIDTH, generator=torch.Generator().manual_seed(1)) for case in CASES}

    rows = []
    with torch.inference_mode():
        for case, x in inputs.items():
            ref = models["none"](x)
            outputs = {mode: model(x) for mode, model in models.items()}  # warm-up (bnb repacks NF4 here)
            times = {mode: [] for mode in models}
            for _ in range(args.repeats):
                for mode, model in models.items():
                    start = time.perf_counter()
                    model(x)
                    times[mode].append(time.perf_counter() - start)
            fp_ms = statistics.median(times["none"]) * 1e3
            packed_ms = statistics.median(times["fp32/packed"]) * 1e3 if "fp32/packed" in times else float("nan")
            for mode, model in models.items():
                ms = statistics.median(times[mode]) * 1e3
                rows.append(
                    {
                        "mode": mode,
                        "batch": case[0],
                        "tokens": case[1],
                        # measured after the warm-up: NF4 on CPU changes layout on first use
                        "weight_mb": weight_bytes(model) / 2**20,
                        "weight_ratio": weight_bytes(model) / weight_bytes(models["none"]),
                        "ms": ms,
                        "speed_ratio": ms / fp_ms,
                        "speed_ratio_vs_packed": ms / packed_ms,
                        # on the residual updates (out - x): x itself would hide the error
                        "rel_error": ((outputs[mode] - ref).norm() / (ref - x).norm()).item(),
                    }
                )

    print("| mode | weight MB | ratio | B x T | ms | time vs fp32 | time vs fp32/packed | rel. error |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['weight_mb']:.2f} | {r['weight_ratio']:.3f} | {r['batch']} x {r['tokens']} "
            f"| {r['ms']:.2f} | {r['speed_ratio']:.2f}x | {r['speed_ratio_vs_packed']:.2f}x | {r['rel_error']:.1e} |"
        )
    for mode, why in skipped.items():
        print(f"\nskipped {mode}: {why}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16_cpu(),
        "machine": platform.machine(),
        "threads": args.threads,
        "depth": args.depth,
        "repeats": args.repeats,
        # timings are only comparable on an idle machine; this says how idle it was
        "loadavg_1min": os.getloadavg()[0],
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows, "skipped": skipped}, indent=2))
    print(f"\nwrote {out}")


PIPELINE_PROMPTS = ["two red circles at the top left", "a yellow star", "the word cat", "a green triangle"]


def bench_pipeline(args) -> None:
    """Whole images per mode, interleaved; see the module docstring."""
    import numpy as np
    from bench_steps import apply_mode  # this script's folder is on sys.path

    from seedling.model.pipeline import SeedlingPipeline

    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    modes = ["none", "none/plain"] + [m for m in args.modes.split(",") if m and m != "none"]
    pipes, skipped = {}, {}
    for mode in modes:
        try:
            pipes[mode] = apply_mode(SeedlingPipeline.from_pretrained(args.pipeline), mode)
        except RuntimeError as exc:  # a mode that cannot run here: report it, bench the rest
            skipped[mode] = str(exc)

    def generate(pipe, i):
        return pipe(PIPELINE_PROMPTS[i % len(PIPELINE_PROMPTS)], seed=i).images[0]

    images = {mode: [np.asarray(generate(p, i), dtype=np.float32) for i in range(len(PIPELINE_PROMPTS))]
              for mode, p in pipes.items()}  # warm-up, and the images compared with fp32
    times = {mode: [] for mode in pipes}
    for r in range(args.repeats):
        for mode, pipe in pipes.items():
            start = time.perf_counter()
            generate(pipe, r)
            times[mode].append(time.perf_counter() - start)
    cfg = next(iter(pipes.values())).settings
    base = statistics.median(times["none"])
    rows = []
    for mode, pipe in pipes.items():
        ms = statistics.median(times[mode]) * 1e3
        diff = float(np.mean([np.abs(a - b).mean() for a, b in zip(images[mode], images["none"])]))
        rows.append({"mode": mode, "dit_weight_mb": weight_bytes(pipe.dit) / 2**20,
                     "weight_ratio": weight_bytes(pipe.dit) / weight_bytes(pipes["none"].dit),
                     "ms_per_image": ms, "vs_fp32_packed": ms / 1e3 / base,
                     "vs_fp32_plain": ms / 1e3 / statistics.median(times["none/plain"]) if "none/plain" in times else None,
                     "mean_abs_pixel_diff": diff})
    print(f"Whole images, {args.pipeline}, {cfg.default_steps} steps, guidance {cfg.guidance:g}, 128x128, "
          f"{args.repeats} per mode interleaved, {args.threads} threads, load {os.getloadavg()[0]:.1f}\n")
    print("| mode | DiT weights MB | vs fp32 | ms / image | vs fp32 packed | vs fp32 plain | mean abs pixel diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        plain = f"{r['vs_fp32_plain']:.2f}x" if r["vs_fp32_plain"] is not None else "-"
        print(f"| {r['mode']} | {r['dit_weight_mb']:.1f} | {r['weight_ratio']:.2f}x | {r['ms_per_image']:.1f} | "
              f"{r['vs_fp32_packed']:.2f}x | {plain} | {r['mean_abs_pixel_diff']:.2f} |")
    for mode, why in skipped.items():
        print(f"\nskipped {mode}: {why}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "model": args.pipeline, "steps": cfg.default_steps,
            "guidance": cfg.guidance, "threads": args.threads, "repeats": args.repeats,
            "loadavg_1min": os.getloadavg()[0]}
    out.write_text(json.dumps({"meta": meta, "rows": rows, "skipped": skipped}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
