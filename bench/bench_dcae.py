"""Autoencoders at 512 px: round-trip PSNR per category on the held-out set, Tesseract read-back of
the words after the round trip (and on the originals), and decode time of one 512 px image (for a
DCAutoencoder also with its shortcuts unfolded, `decode_ms_unfolded`, timed alternately with it).

    python bench/bench_dcae.py --model f32=/work/runs/ae512/f32_long/model --model f8=... \
        [--v1 assets/default] [--untrained f32c32] --json out.json

`--untrained NAME` times a named config with random weights (decode time does not depend on the
weights) and reports no quality numbers. Prints a table and writes JSON with the CPU's name and
the load average, since absolute times on a shared machine mean little without them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from seedling.model.autoencoder import Autoencoder, autoencoder_folder, images_to_tensor, tensor_to_images
from seedling.model.data.ae_native import CATEGORIES, heldout_set
from seedling.model.data.icons import load_icons
from seedling.model.dcae import DCAutoencoder, compression_ratio, num_params, reference_decode
from seedling.model.eval.ocr import normalize_text, ocr_word, tesseract_missing_reason


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


@torch.inference_mode()
def decode_ms(model, size: int, threads: int, repeats: int = 10) -> dict[str, tuple[float, float]]:
    """{way: (median, fastest)} wall time in ms of decoding one `size` px image's latent with
    `threads` torch threads. On a shared machine the fastest run is the closest to an idle
    machine's time. A DCAutoencoder is also timed with its shortcuts unfolded ("reference":
    `dcae.reference_decode`, the form before they were folded into the convs' taps), alternating
    with the model's own decode so that both see the same load."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    f = model.factor
    z = torch.randn(1, model.config.latent_channels, size // f, size // f)
    ways = {"model": model.decode}  # as the pipeline calls it (the latent scale/shift: 8K numbers)
    if isinstance(model, DCAutoencoder):
        ways["reference"] = lambda z_: reference_decode(model, z_)
    for fn in ways.values():
        for _ in range(3):
            fn(z)
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for k, fn in ways.items():
            t = time.perf_counter()
            fn(z)
            times[k].append(time.perf_counter() - t)
    torch.set_num_threads(old)
    return {k: (round(1000 * statistics.median(v), 1), round(1000 * min(v), 1)) for k, v in times.items()}


@torch.inference_mode()
def quality(model, items, ocr: bool) -> dict:
    per_cat: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    read_orig = read_rt = n_words = 0
    for it in items:
        x = images_to_tensor([it.image])
        rec = np.asarray(tensor_to_images(model.decode(model.encode(x)))[0])
        per_cat[it.category].append(psnr_uint8(rec, it.image))
        if ocr and it.category == "words":
            n_words += 1
            read_orig += normalize_text(ocr_word(it.image) or "") == normalize_text(it.text)
            read_rt += normalize_text(ocr_word(rec) or "") == normalize_text(it.text)
    out = {f"psnr_{c}": round(statistics.mean(v), 2) for c, v in per_cat.items() if v}
    out["psnr_mean"] = round(statistics.mean(out[f"psnr_{c}"] for c in CATEGORIES if f"psnr_{c}" in out), 2)
    if ocr and n_words:
        out.update(ocr_original=round(read_orig / n_words, 3), ocr_roundtrip=round(read_rt / n_words, 3),
                   ocr_words=n_words)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], help="LABEL=FOLDER of a trained DCAutoencoder")
    p.add_argument("--v1", default=None, help="the f8 autoencoder of a pipeline folder, as a baseline")
    p.add_argument("--untrained", action="append", default=[], help="named config: decode time only")
    p.add_argument("--n", type=int, default=16, help="held-out images per category")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the decode timing")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    models: list[tuple[str, object, bool]] = []
    for spec in args.model:
        label, _, folder = spec.partition("=")
        models.append((label, DCAutoencoder.from_pretrained(folder), True))
    if args.v1:
        models.append(("v1-f8", Autoencoder.from_pretrained(autoencoder_folder(args.v1)), True))
    for name in args.untrained:
        models.append((f"{name} (untrained)", DCAutoencoder.from_named(name).eval(), False))

    items = heldout_set(load_icons(), args.n, args.size) if any(q for _, _, q in models) else []
    ocr = tesseract_missing_reason() is None
    rows = []
    for label, m, measure_quality in models:
        row = {"model": label, "factor": m.factor, "latent_channels": m.config.latent_channels,
               "latent": f"{m.config.latent_channels}x{args.size // m.factor}x{args.size // m.factor}",
               "compression": round(compression_ratio(m), 1),
               "decoder_params_M": round(num_params(m.decoder) / 1e6, 2)}
        timing = decode_ms(m, args.size, args.threads)
        row["decode_ms"], row["decode_ms_min"] = timing["model"]
        if "reference" in timing:
            row["decode_ms_unfolded"], row["decode_ms_unfolded_min"] = timing["reference"]
        if measure_quality:
            row.update(quality(m, items, ocr))
        rows.append(row)
        print(json.dumps(row), flush=True)

    cols = ["model", "latent", "compression", "decoder_params_M", "decode_ms", "decode_ms_min",
            "decode_ms_unfolded",
            *(f"psnr_{c}" for c in CATEGORIES), "psnr_mean", "ocr_original", "ocr_roundtrip"]
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    env = {"cpu": cpu_name(), "load_average": os.getloadavg(), "threads": args.threads, "size": args.size,
           "heldout_per_category": args.n, "torch": torch.__version__,
           "ocr": "tesseract" if ocr else tesseract_missing_reason()}
    print(f"\n{env['cpu']}; decode with {args.threads} threads; load average {env['load_average']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
