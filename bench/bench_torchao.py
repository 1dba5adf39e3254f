"""Benchmark torchao's int8 layers against the studio's hand-written quantization modes on CPU.

Candidates (rows): fp32 (the pipeline's default, pre-packed oneDNN linears), the studio's int8
weight-only ("int8": bf16 product where the CPU multiplies bf16 natively; "int8/fp32": fp32
product), "w8a8" (per-token int8 activations, `torch._int_mm`), "w8a8-packed" (fbgemm/oneDNN
int8 GEMMs with packed weights), and torchao 0.x's `Int8WeightOnlyConfig` ("torchao int8") and
`Int8DynamicActivationInt8WeightConfig` ("torchao w8a8"), applied through
`quantize(..., backend="torchao")` (kernels/quant_torchao.py).

Two parts, every candidate timed in the same loop, one call each in turn (interleaved, so
background load hits all alike), min and median reported:
  - one Linear of the DiT's MLP shape (default 96 tokens x 256 -> 1024: an uncached 128x128
    step's 64 output + 32 text tokens), with fp32 plain `F.linear` as an extra row: ms per call,
    weight bytes, max / mean abs error vs fp32;
  - the shipped DiT (`--model`, default assets/default): weight bytes of its linears; one
    uncached DiT call (a denoising step without the reference cache, 128x128, batch 1) with max /
    mean abs error of its velocity vs fp32; whole generations of fixed prompts and seeds at the
    model's default steps and guidance: ms per image, ms per denoising step (the pipeline's own
    "sample" timing / steps) and PSNR of the images vs the fp32 images.

    python bench/bench_torchao.py [--model assets/default] [--repeats 20] [--out runs/bench_torchao.json]
    ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python bench/bench_torchao.py --out runs/bench_torchao_avx2.json

The second line caps oneDNN and fbgemm at AVX2 (no AVX512, no VNNI) for the whole process, as
tests/test_quant.py does; run each ISA in its own process. Prints two markdown tables and writes
the rows as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seedling.kernels import fused
from seedling.kernels.packed import pack_linears
from seedling.kernels.quant import (
    int8_gemm_saturates,
    int_mm_available,
    native_bf16_cpu,
    quantize,
    weight_bytes,
)
from seedling.kernels.quant_torchao import torchao_available, torchao_version

# row -> the arguments of quantize() that make it
CANDIDATES = {
    "fp32": {"mode": "none"},
    "int8": {"mode": "int8", "backend": "studio"},
    "int8/fp32": {"mode": "int8", "backend": "studio", "int8_compute": "fp32"},
    "w8a8": {"mode": "w8a8", "backend": "studio"},
    "w8a8-packed": {"mode": "w8a8-packed"},
    "torchao int8": {"mode": "int8", "backend": "torchao"},
    "torchao w8a8": {"mode": "w8a8", "backend": "torchao"},
}
PROMPTS = ["two red circles at the top left", "a yellow star", "the word cat", "a green triangle"]


def apply(model: nn.Module, row: str) -> nn.Module:
    return quantize(model, **CANDIDATES[row])


def interleaved(calls: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of every callable, `repeats` rounds of one call each in turn."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def summary(seconds: list[float]) -> dict:
    return {"min_ms": min(seconds) * 1e3, "median_ms": statistics.median(seconds) * 1e3}


def errors(y: torch.Tensor, ref: torch.Tensor) -> dict:
    diff = (y.float() - ref.float()).abs()
    return {"max_abs_err": diff.max().item(), "mean_abs_err": diff.mean().item()}


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB of 8-bit images; None where they are identical (infinite)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else 10 * math.log10(255.0**2 / mse)


def bench_linear(rows: list[str], shape: tuple[int, int, int], repeats: int) -> tuple[list[dict], dict]:
    tokens, k, n = shape
    gen = torch.Generator().manual_seed(0)
    base = nn.Linear(k, n)
    with torch.no_grad():  # trained transformer weights are roughly Gaussian
        base.weight.copy_(torch.randn(n, k, generator=gen) * k**-0.5)
        base.bias.copy_(torch.randn(n, generator=gen) * 0.02)
    x = torch.randn(tokens, k, generator=gen)
    layers, skipped = {"fp32/plain": nn.Sequential(copy.deepcopy(base)).eval()}, {}
    for row in rows:
        model = nn.Sequential(copy.deepcopy(base)).eval()
        pack_linears(model)  # as the pipeline does first; quantize() then replaces the packed layer
        try:
            layers[row] = apply(model, row)
        except RuntimeError as exc:
            skipped[row] = str(exc)
    with torch.no_grad():  # not inference_mode: the packed layers key their caches on version counters
        ref = layers["fp32/plain"](x)
        outputs = {row: layer(x) for row, layer in layers.items()}  # also the warm-up
        times = interleaved({row: (lambda layer=layer: layer(x)) for row, layer in layers.items()}, repeats)
    fp_bytes = weight_bytes(layers["fp32"])
    out = []
    for row, layer in layers.items():
        out.append({"row": row, "weight_bytes": weight_bytes(layer), "weight_ratio": weight_bytes(layer) / fp_bytes,
                    **summary(times[row]), **errors(outputs[row], ref)})
    return out, skipped


def bench_dit(rows: list[str], folder: str, repeats: int) -> tuple[list[dict], dict]:
    from seedling.model.pipeline import SeedlingPipeline

    first = SeedlingPipeline.from_pretrained(folder)
    pipes, skipped = {}, {}
    for row in rows:
        pipe = first if row == "fp32" else SeedlingPipeline.from_pretrained(folder, text_encoder=first.text_encoder)
        try:
            apply(pipe.dit, row)
            pipes[row] = pipe
        except RuntimeError as exc:
            skipped[row] = str(exc)

    size = first.settings.default_size
    f, c = first.autoencoder.factor, first.dit.config.latent_channels
    gen = torch.Generator().manual_seed(0)
    x_out = torch.randn(1, 1, c, size // f, size // f, generator=gen)
    t = torch.tensor([0.5])
    states, pooled = first.text_encoder.encode([PROMPTS[0]])

    def dit_call(pipe):
        return pipe.dit(x_out, t, states, pooled, "t2i")

    def generate(pipe, i):
        return pipe(PROMPTS[i % len(PROMPTS)], seed=i)

    with torch.no_grad():  # not inference_mode: the packed layers key their caches on version counters
        velocity = {row: dit_call(p) for row, p in pipes.items()}  # also the warm-up
        images = {row: [np.asarray(generate(p, i).images[0]) for i in range(len(PROMPTS))] for row, p in pipes.items()}
        dit_times = interleaved({row: (lambda p=p: dit_call(p)) for row, p in pipes.items()}, repeats)
        image_times = {row: [] for row in pipes}
        step_times = {row: [] for row in pipes}
        steps = first.settings.default_steps
        for r in range(repeats):
            for row, pipe in pipes.items():
                start = time.perf_counter()
                result = generate(pipe, r)
                image_times[row].append(time.perf_counter() - start)
                step_times[row].append(result.timings["sample"] / steps)
    fp_bytes = weight_bytes(pipes["fp32"].dit)
    out = []
    for row, pipe in pipes.items():
        image = summary(image_times[row])
        step = summary(step_times[row])
        call = summary(dit_times[row])
        out.append({
            "row": row, "dit_weight_bytes": weight_bytes(pipe.dit), "weight_ratio": weight_bytes(pipe.dit) / fp_bytes,
            "dit_call_min_ms": call["min_ms"], "dit_call_median_ms": call["median_ms"],
            "step_min_ms": step["min_ms"], "step_median_ms": step["median_ms"],
            "image_min_ms": image["min_ms"], "image_median_ms": image["median_ms"],
            **errors(velocity[row], velocity["fp32"]),
            "psnr_db": [psnr(a, b) for a, b in zip(images[row], images["fp32"])],
        })
    meta = {"model": folder, "size": size, "steps": steps, "guidance": first.settings.guidance, "prompts": PROMPTS}
    return out, {"skipped": skipped, **meta}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt_db(values: list[float | None]) -> str:
    finite = [v for v in values if v is not None]
    if not finite:
        return "identical"
    return f"{statistics.mean(finite):.1f} (min {min(finite):.1f})" + ("" if len(finite) == len(values) else " +exact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="assets/default")
    parser.add_argument("--out", default="runs/bench_torchao.json")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--linear", default="96x256x1024", help="tokens x in x out of the Linear part")
    parser.add_argument("--rows", default=",".join(CANDIDATES), help="comma-separated subset of the candidates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = ["fp32"] + [r for r in args.rows.split(",") if r and r != "fp32"]
    if not torchao_available():
        print("torchao does not import here: its rows are skipped")
    shape = tuple(int(v) for v in args.linear.split("x"))

    linear_rows, linear_skipped = bench_linear(rows, shape, args.repeats * 10)
    dit_rows, dit_meta = bench_dit(rows, args.model, args.repeats)

    isa = {name: os.environ.get(name) for name in ("ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS")}
    meta = {
        "cpu": cpu_name(), "torch": torch.__version__, "torchao": torchao_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "isa_env": isa,
        "native_bf16": native_bf16_cpu(), "int_mm_exact": int_mm_available("cpu"),
        "int8_gemm_saturates": int8_gemm_saturates(), "fused_blocks": fused.available(), "threads": args.threads, "repeats": args.repeats,
        "linear": list(shape), "loadavg_1min": os.getloadavg()[0],
    }
    print(f"{meta['cpu']}, torch {meta['torch']}, torchao {meta['torchao']}, ISA env {isa}, "
          f"{args.threads} threads, load {meta['loadavg_1min']:.1f}; min / median of interleaved repeats\n")
    print(f"One Linear, {shape[0]} tokens x {shape[1]} -> {shape[2]}, {args.repeats * 10} calls per row")
    print("| row | weight KiB | vs fp32 | ms / call (min / median) | max abs err | mean abs err |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in linear_rows:
        print(f"| {r['row']} | {r['weight_bytes'] / 1024:.0f} | {r['weight_ratio']:.3f}x | "
              f"{r['min_ms']:.3f} / {r['median_ms']:.3f} | {r['max_abs_err']:.2e} | {r['mean_abs_err']:.2e} |")
    print(f"\nDiT {dit_meta['model']}, {dit_meta['size']}x{dit_meta['size']}, {dit_meta['steps']} steps, "
          f"guidance {dit_meta['guidance']:g}, {len(PROMPTS)} prompts, {args.repeats} images per row")
    print("| row | DiT linears MB | vs fp32 | DiT call ms | step ms | image ms | v max abs err | v mean abs err "
          "| image PSNR dB vs fp32 (mean, min) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in dit_rows:
        print(f"| {r['row']} | {r['dit_weight_bytes'] / 2**20:.1f} | {r['weight_ratio']:.2f}x "
              f"| {r['dit_call_min_ms']:.1f} / {r['dit_call_median_ms']:.1f} "
              f"| {r['step_min_ms']:.1f} / {r['step_median_ms']:.1f} | {r['image_min_ms']:.1f} / {r['image_median_ms']:.1f} "
              f"| {r['max_abs_err']:.2e} | {r['mean_abs_err']:.2e} | {fmt_db(r['psnr_db'])} |")
    for row, why in {**linear_skipped, **dit_meta["skipped"]}.items():
        print(f"\nskipped {row}: {why}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "linear": linear_rows, "dit": dit_rows, "dit_meta": dit_meta,
                               "linear_skipped": linear_skipped}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
