"""Does a LoRA learn a user's style in the time a designer waits? Table + JSON + contact sheet.

    python bench/bench_finetune.py --model assets/default            # the judged run (defaults)
    python bench/bench_finetune.py --config tiny --steps 5 --images 4 --prompts 2   # smoke test

1. A distinctive "user set": 16 OpenMoji icons (model/data/icons.py) redrawn as flat stamps: a
   yellow background, a thick black outline, and the glyph in two inks (navy for dark parts,
   coral for light ones). Captions are the icon names, as the base model was trained on.
2. A LoRA trained on it with the app's defaults (model/finetune_config.py), timed end to end.
3. Held-out prompts (icons not in the set), same seeds, without and with the adapter. Style
   statistics of the generated images, lower = closer to the set:
   - palette_dist: mean distance (RGB, 0-255) of each pixel to the nearest of the set's 4 colours;
   - background_dist: distance of the image's border colour (median) to the set's yellow;
   - nn_dist: RMS pixel distance (32x32) to the nearest training image;
   - hist_l1: L1 distance between the image's and the set's 8x8x8 colour histograms (0..2).
   The training set's own values are printed as the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

BACKGROUND = (255, 214, 10)  # yellow
OUTLINE = (0, 0, 0)
INK_DARK = (20, 33, 61)  # navy
INK_LIGHT = (239, 71, 111)  # coral
PALETTE = np.array([BACKGROUND, OUTLINE, INK_DARK, INK_LIGHT], dtype=np.float32)
OUTLINE_PX = 7  # MaxFilter size: about 3 px of outline around the glyph


def stamp(rgba: np.ndarray, size: int = 128) -> Image.Image:
    """An icon (H, W, 4) redrawn in the set's style: yellow ground, black outline, two flat inks."""
    alpha = Image.fromarray(rgba[..., 3]).point(lambda a: 255 if a >= 128 else 0)
    outline = alpha.filter(ImageFilter.MaxFilter(OUTLINE_PX))
    lum = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"), dtype=np.float32)
    ink = np.where(lum[..., None] < 128, np.array(INK_DARK), np.array(INK_LIGHT)).astype(np.uint8)
    out = Image.new("RGB", alpha.size, BACKGROUND)
    out.paste(OUTLINE, mask=outline)
    out.paste(Image.fromarray(ink), mask=alpha.filter(ImageFilter.MinFilter(3)))
    return out.resize((size, size), Image.LANCZOS) if out.size != (size, size) else out


# -- style statistics -------------------------------------------------------------------------------
def _rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float32)


def palette_dist(im: Image.Image) -> float:
    px = _rgb(im).reshape(-1, 1, 3)
    return float(np.sqrt(((px - PALETTE[None]) ** 2).sum(-1)).min(1).mean())


def background_dist(im: Image.Image) -> float:
    a = _rgb(im)
    border = np.concatenate(
        [a[:4].reshape(-1, 3), a[-4:].reshape(-1, 3), a[:, :4].reshape(-1, 3), a[:, -4:].reshape(-1, 3)]
    )
    return float(np.linalg.norm(np.median(border, 0) - np.array(BACKGROUND, dtype=np.float32)))


def _small(im: Image.Image) -> np.ndarray:
    return _rgb(im.resize((32, 32), Image.BILINEAR)).reshape(-1)


def nn_dist(im: Image.Image, refs: np.ndarray) -> float:
    return float(np.sqrt(((refs - _small(im)[None]) ** 2).mean(1)).min())


def histogram(images: list[Image.Image]) -> np.ndarray:
    px = np.concatenate([_rgb(im).reshape(-1, 3) for im in images]).astype(np.int64) // 32
    h = np.bincount(px[:, 0] * 64 + px[:, 1] * 8 + px[:, 2], minlength=512).astype(np.float64)
    return h / h.sum()


def style_stats(images: list[Image.Image], train: list[Image.Image]) -> dict[str, float]:
    refs = np.stack([_small(im) for im in train])
    set_hist = histogram(train)
    return {
        "palette_dist": float(np.mean([palette_dist(im) for im in images])),
        "background_dist": float(np.mean([background_dist(im) for im in images])),
        "nn_dist": float(np.mean([nn_dist(im, refs) for im in images])),
        "hist_l1": float(np.mean([np.abs(histogram([im]) - set_hist).sum() for im in images])),
    }


def contact_sheet(rows: list[list[Image.Image]], labels: list[str], path: Path, cell: int = 96) -> None:
    from PIL import ImageDraw

    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (110 + cols * cell, len(rows) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for y, (row, label) in enumerate(zip(rows, labels)):
        draw.text((4, y * cell + cell // 2 - 6), label, fill="black")
        for x, im in enumerate(row):
            sheet.paste(im.convert("RGB").resize((cell, cell)), (110 + x * cell, y * cell))
    sheet.save(path)


# -- the run ----------------------------------------------------------------------------------------
def resolve_model(arg: str | None) -> str:
    for candidate in [arg] if arg else ["assets/default", "runs/export"]:
        if candidate and (Path(candidate) / "pipeline.json").exists():
            return candidate
    raise SystemExit(
        f"no model folder found ({arg or 'assets/default, runs/export'}); pass --model or --config tiny"
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: assets/default, else runs/export)")
    p.add_argument(
        "--config", default=None, choices=["tiny", "default"], help="random weights instead (smoke test)"
    )
    p.add_argument("--images", type=int, default=16, help="size of the user set")
    p.add_argument("--prompts", type=int, default=8, help="held-out prompts")
    p.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the app's default)")
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--strengths", default="0.5,1.0", help="adapter strengths to evaluate")
    p.add_argument("--gen-steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_finetune.json")
    args = p.parse_args(argv)

    import torch

    from seedling.model.adapters import applied_adapters, save_adapter
    from seedling.model.data.captions import icon_noun
    from seedling.model.data.icons import load_icons
    from seedling.model.finetune import CaptionedImage, FinetuneConfig, finetune
    from seedling.model.pipeline import SeedlingPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.config:
        pipe, model_name = SeedlingPipeline.from_config(args.config, seed=0), f"random:{args.config}"
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a fresh DiT's zero output layer would give the LoRA no gradient
            for prm in pipe.dit.parameters():
                prm.add_(torch.randn(prm.shape, generator=gen) * 0.05)
    else:
        model_name = resolve_model(args.model)
        pipe = SeedlingPipeline.from_pretrained(model_name)
    size = pipe.settings.default_size

    # 1. the user set and the held-out prompts: distinct icons, chosen by seed
    icons = load_icons()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(icons))
    chosen = [icons[i] for i in order[: args.images + args.prompts]]
    train_icons, held_icons = chosen[: args.images], chosen[args.images :]
    train = [
        CaptionedImage(f"{i:02d}.png", stamp(ic.rgba, size), icon_noun(ic.name, ic.group))
        for i, ic in enumerate(train_icons)
    ]
    set_dir = out.with_suffix("") / "set"
    set_dir.mkdir(parents=True, exist_ok=True)
    for ex in train:
        ex.image.save(set_dir / ex.name)
        (set_dir / ex.name).with_suffix(".txt").write_text(ex.caption)
    prompts = [icon_noun(ic.name, ic.group) for ic in held_icons]
    seeds = list(range(100, 100 + args.seeds))

    def generate(label: str) -> list[Image.Image]:
        t0 = time.perf_counter()
        images = [
            pipe(prompt=pr, seed=s, steps=args.gen_steps, height=size, width=size).images[0]
            for pr in prompts
            for s in seeds
        ]
        print(f"  {label}: {len(images)} images in {time.perf_counter() - t0:.1f} s", flush=True)
        return images

    print(
        f"model {model_name}; set of {len(train)} stamped icons; {len(prompts)} held-out prompts x {len(seeds)} seeds"
    )
    base_images = generate("without adapter")

    # 2. train with the app's defaults
    defaults = FinetuneConfig()
    config = FinetuneConfig(
        steps=args.steps or defaults.steps,
        rank=args.rank or defaults.rank,
        learning_rate=args.lr,
        size=size,
        sample_every=0,
        seed=args.seed,
    )
    work = out.with_suffix("") / "work"

    def show(pr) -> None:
        if pr.loss is not None and (pr.step % 25 == 0 or pr.step == pr.total):
            print(f"  step {pr.step}/{pr.total} loss {pr.loss:.4f} ({pr.elapsed:.0f} s)", flush=True)

    t0 = time.perf_counter()
    result = finetune(pipe, train, config, work, callback=show, metadata={"name": "bench-stamp"})
    wall = time.perf_counter() - t0
    adapter_path = save_adapter(result.adapter, out.with_suffix("") / "stamp.safetensors")
    for f in work.glob("**/*"):
        if f.is_file():
            f.unlink()

    # 3. the same prompts and seeds with the adapter
    rows = {
        "training set": style_stats([ex.image for ex in train], [ex.image for ex in train]),
        "without adapter": style_stats(base_images, [ex.image for ex in train]),
    }
    sheet_rows, sheet_labels = [[ex.image for ex in train[:8]], base_images[:8]], ["set", "base"]
    for strength in [float(s) for s in args.strengths.split(",") if s.strip()]:
        with applied_adapters(pipe.dit, [(result.adapter, strength)]):
            images = generate(f"adapter x{strength:g}")
        rows[f"adapter x{strength:g}"] = style_stats(images, [ex.image for ex in train])
        sheet_rows.append(images[:8])
        sheet_labels.append(f"LoRA x{strength:g}")
    sheet = out.with_suffix(".png")
    contact_sheet(sheet_rows, sheet_labels, sheet)

    keys = ["palette_dist", "background_dist", "nn_dist", "hist_l1"]
    print(
        f"\ntraining: {config.steps} steps x batch {config.batch_size}, rank {config.rank}, lr {config.lr:g}: "
        f"{wall:.0f} s wall ({result.seconds:.0f} s in steps, {config.steps / max(result.seconds, 1e-9):.2f} steps/s), "
        f"final loss {result.final_loss:.4f}"
    )
    print(f"{'images':<18}" + "".join(f"{k:>17}" for k in keys))
    for name, stats in rows.items():
        print(f"{name:<18}" + "".join(f"{stats[k]:>17.3f}" for k in keys))
    report = {
        "model": model_name,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "set_size": len(train),
        "held_out_prompts": prompts,
        "seeds": seeds,
        "config": config.to_dict(),
        "train_wall_s": wall,
        "train_step_s": result.seconds,
        "final_loss": result.final_loss,
        "loss_every_10": result.losses[::10],
        "stats": rows,
        "adapter": str(adapter_path),
        "contact_sheet": str(sheet),
    }
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} and {sheet}")
    return report


if __name__ == "__main__":
    main()
