"""Train the autoencoder: `python -m seedling.model.train_ae --out runs/ae --minutes 15`.

accelerate drives it, so the same command runs on CPU, one GPU, or `accelerate launch` on
several. Crops of 64x64 from 128x128 images (convolutions are translation invariant, so crops
teach the same filters at a quarter of the cost). The loop, checkpoints (every `--ckpt-every`
steps) and the learning-rate schedule are model/training.py's; rerunning the same command resumes exactly.
At the end the latent shift/scale are measured on fresh images and written into the config.

Fine-tuning the decoder of a trained autoencoder (`--init FOLDER --decoder-only`): the encoder,
and with it the latent space and its shift/scale, stay exactly as they are, so a DiT trained on
that autoencoder keeps working and only decodes better. A sharper decoder shows in everything the
pipeline outputs: words, edges, and the pixels an instruction edit should keep.

    python -m seedling.model.train_ae --init assets/default/autoencoder --decoder-only --out runs/ae_dec --minutes 90
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seedling.atomic import write_atomic
from seedling.model.autoencoder import AE_CONFIGS, Autoencoder, autoencoder_folder, images_to_tensor
from seedling.model.data.ae_images import random_training_image
from seedling.model.data.icons import load_icons
from seedling.model.training import Trainer, add_run_arguments


def batch_of_crops(rng: np.random.Generator, icons, n: int, crop: int) -> torch.Tensor:
    out = []
    per_image = 4
    while len(out) < n:
        img = random_training_image(rng, icons)
        for _ in range(per_image):
            y, x = (int(v) for v in rng.integers(0, 128 - crop + 1, 2))
            out.append(img[y : y + crop, x : x + crop])
    return images_to_tensor(out[:n])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(-1, 1), b).item() / 4.0  # [-1,1] -> [0,1] scale
    return 10 * math.log10(1.0 / max(mse, 1e-10))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="runs/ae")
    p.add_argument("--config", default="default", choices=sorted(AE_CONFIGS))
    add_run_arguments(p, minutes=15.0, max_steps=100000, ckpt_every=200, lr=1e-3, warmup=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--init", default=None,
                   help="start from this autoencoder folder (or a pipeline folder holding autoencoder/); "
                        "its config replaces --config")
    p.add_argument("--decoder-only", action="store_true",
                   help="train the decoder alone: the encoder and the latent shift/scale stay fixed (needs --init)")
    args = p.parse_args(argv)
    if args.decoder_only and not args.init:
        p.error("--decoder-only fine-tunes a trained autoencoder: give it with --init FOLDER")

    out = Path(args.out)
    trainer = Trainer.from_args(out, args, desc="autoencoder")
    icons = load_icons()
    torch.manual_seed(args.seed)
    if args.init:
        init = autoencoder_folder(args.init)
        if not (init / "config.json").exists():
            raise SystemExit(f"--init {args.init}: no autoencoder there (expected config.json and model.safetensors)")
        model = Autoencoder.from_pretrained(init).train()
    else:
        model = Autoencoder(AE_CONFIGS[args.config])
    if args.decoder_only:
        model.encoder.requires_grad_(False)
    model = trainer.add("autoencoder", model, lr=args.lr, schedule=args.lr_schedule, warmup=args.warmup)
    if trainer.resume():
        trainer.acc.print(f"resumed from step {trainer.step_count}")
    raw = trainer.unwrap("autoencoder")
    model.train()
    while trainer.running():
        x = batch_of_crops(trainer.rng, icons, args.batch, args.crop).to(trainer.device)
        with torch.set_grad_enabled(not args.decoder_only):
            z = raw.encode_raw(x)
        # latent noise makes the decoder tolerant of the imperfect latents diffusion produces
        z_in = z + 0.1 * z.detach().std() * torch.randn_like(z) * (
            torch.rand(z.shape[0], 1, 1, 1, device=z.device) < 0.5
        )
        rec = raw.decode_raw(z_in)
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * z.pow(2).mean()
        lr = trainer.lr("autoencoder")
        trainer.step("autoencoder", loss)
        trainer.end_step(loss=f"{loss.item():.4f}")
        if trainer.step_count % 20 == 0:
            trainer.log_row({"step": trainer.step_count, "loss": loss.item(), "psnr": psnr(rec.detach(), x), "lr": lr})
    trainer.finish()
    step = trainer.step_count

    # measure latent statistics on fresh full-size images and export a self-describing folder
    m = raw.eval()
    erng = np.random.default_rng(12345)
    xs = torch.cat([batch_of_crops(erng, icons, 16, 128) for _ in range(8)])

    @torch.no_grad()
    def roundtrip_psnr(ae: Autoencoder) -> float:
        return psnr(torch.cat([ae.decode(ae.encode(xs[i : i + 32])) for i in range(0, len(xs), 32)]), xs)

    if not args.decoder_only:  # a fixed encoder keeps its latent statistics
        with torch.no_grad():
            zs = torch.cat([m.encode_raw(xs[i : i + 32]) for i in range(0, len(xs), 32)])
        m.register_to_config(latent_shift=float(zs.mean()), latent_scale=float(1.0 / zs.std()))
    val_psnr = roundtrip_psnr(m)
    m.save_pretrained(out / "final")
    trainer.acc.print(
        f"step {step}: validation PSNR {val_psnr:.2f} dB on 128 fresh 128x128 images; saved {out / 'final'}"
    )
    record = {"step": step, "psnr": round(val_psnr, 3)}
    if args.init:
        record.update(init=str(args.init), init_psnr=round(roundtrip_psnr(Autoencoder.from_pretrained(init)), 3),
                      decoder_only=args.decoder_only)
        trainer.acc.print(f"the --init autoencoder scores {record['init_psnr']:.2f} dB on the same images")
    write_atomic(out / "final" / "val.json", json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
