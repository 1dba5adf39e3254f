"""Train the deep-compression autoencoder on crops of natively rendered 512 px images.

    python -m seedling.model.train_dcae --config f32c32 --out runs/ae512/f32 --minutes 60

Convolutions are translation invariant, so crops teach the filters that run on full images at a
fraction of the cost; the model is then used at 512 or 1024 px. A recipe on model/training.py:
its checkpoints (every `--ckpt-every` steps; rerunning the same command resumes exactly), its
diffusers learning-rate schedule and progress. Each checkpoint also exports `model/`
(save_pretrained, with the latent shift/scale measured on fresh images) for the benchmark to read
while training goes on. `--init FOLDER` starts from an exported model (weights only);
`--init FOLDER --decoder-only` then trains the decoder alone (the encoder and its latent
statistics stay fixed), the last phase of DC-AE's recipe.

On a GPU the rendering must keep up: `--workers N` draws each step's crops in N processes from a
generator seeded by (seed, step) (`ae_native.CropBatches`), so a run's batches do not depend on
the number of workers and a resumed run sees exactly the batches it would have seen. With
`--workers 0` (the default) the crops come from the trainer's own random stream.

    python -m seedling.model.train_dcae --config f32c32 --workers 12 --batch 64 --crop 256 \
        --max-steps 20000 --out runs/ae512/f32

Loss: L1 + L2 on pixels, an L1 on image gradients (edges and letter strokes are where a blurry
reconstruction loses, and no downloaded perceptual network is needed), and a small L2 on the
latent to keep its scale bounded.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seedling.model.autoencoder import images_to_tensor
from seedling.model.data.ae_native import CropBatches, as_delivered, parse_mix, random_crops, split_icons
from seedling.model.data.icons import load_icons
from seedling.model.dcae import DCAE_CONFIGS, DCAutoencoder
from seedling.model.training import Trainer, add_run_arguments


def gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences of two image batches."""
    def dx(t):
        return t[..., :, 1:] - t[..., :, :-1]

    def dy(t):
        return t[..., 1:, :] - t[..., :-1, :]

    return F.l1_loss(dx(a), dx(b)) + F.l1_loss(dy(a), dy(b))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(a.clamp(-1, 1), b).item() / 4.0
    return 10 * math.log10(1.0 / max(mse, 1e-10))


@torch.no_grad()
def export(model: DCAutoencoder, folder: Path, icons, size: int, device, measure: bool = True) -> dict:
    """save_pretrained with the latent shift/scale measured on fresh training images (kept as
    they are with `measure=False`: a fixed encoder keeps its statistics)."""
    if not measure:
        model.save_pretrained(folder)
        return {"latent_shift": model.config.latent_shift, "latent_scale": model.config.latent_scale}
    model.eval()
    crops = random_crops(np.random.default_rng(12345), icons, 8, min(size, 256), size, per_image=1)
    x = images_to_tensor(list(crops), device)
    z = torch.cat([model.encode_raw(x[i : i + 2]) for i in range(0, len(x), 2)])
    model.register_to_config(latent_shift=float(z.mean()), latent_scale=float(1.0 / z.std()))
    model.save_pretrained(folder)
    model.train()
    return {"latent_shift": model.config.latent_shift, "latent_scale": model.config.latent_scale}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder: checkpoints, loss.csv, model/")
    p.add_argument("--config", default="f32c32", choices=sorted(DCAE_CONFIGS))
    p.add_argument("--init", default=None, help="start from this exported model folder (weights only)")
    # lr 5e-4: +2.9 dB over 1e-3 at 3000 steps of batch 8, and 2e-3 was worse (docs/autoencoder.md,
    # "The learning rate and twice the latent channels")
    add_run_arguments(p, minutes=30.0, max_steps=20000, ckpt_every=100, lr=5e-4, warmup=100)
    p.add_argument("--cpu-minutes", type=float, default=0.0,
                   help="stop once this process has used this much CPU time: on a shared machine the fair "
                        "budget for comparing configs, whatever the others running do to the wall clock")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--size", type=int, default=512, help="size the images are rendered at before cropping")
    p.add_argument("--mix", default="",
                   help="what the crops show, e.g. icons=0.55,shapes=0.1,words=0.2,charts=0.15 "
                        "(normalised; a category left out is not drawn; default: ae_native.TRAIN_MIX)")
    p.add_argument("--grad-weight", type=float, default=1.0, help="weight of the image-gradient L1")
    p.add_argument("--workers", type=int, default=0,
                   help="render the crops in this many processes, each step's from (seed, step) (see above)")
    p.add_argument("--decoder-only", action="store_true",
                   help="train the decoder alone: the encoder and its latent shift/scale stay fixed (needs --init)")
    args = p.parse_args(argv)
    if args.decoder_only and not args.init:
        p.error("--decoder-only fine-tunes a trained autoencoder: give it with --init FOLDER")
    if args.workers < 0:
        p.error("--workers must be 0 (render in this process) or more")
    try:
        mix = parse_mix(args.mix) if args.mix else None
    except ValueError as e:
        p.error(str(e))

    icons = split_icons(load_icons())[0]  # the held-out icons never reach training
    torch.manual_seed(args.seed)
    model = DCAutoencoder.from_pretrained(args.init) if args.init else DCAutoencoder.from_named(args.config)
    if args.crop % model.factor:
        p.error(f"--crop {args.crop} must be a multiple of the autoencoder's factor {model.factor}")
    if args.decoder_only:
        model.encoder.requires_grad_(False)
    out = Path(args.out)
    # ckpt_every=0: the loop below saves, and exports model/ with each checkpoint
    trainer = Trainer.from_args(out, args, ckpt_every=0, desc="dc-autoencoder")
    model = trainer.add("dcae", model.train(), lr=args.lr, schedule=args.lr_schedule, warmup=args.warmup,
                        weight_decay=0.01)
    if trainer.resume():
        trainer.acc.print(f"resumed {trainer.latest_checkpoint()} at step {trainer.step_count}")
    raw = trainer.unwrap("dcae")
    planned = None
    if args.workers:
        planned = iter(torch.utils.data.DataLoader(
            CropBatches(args.seed + 1000 * trainer.acc.process_index, trainer.step_count, args.max_steps, icons,
                        args.batch, args.crop, args.size, mix),
            batch_size=None, num_workers=args.workers, prefetch_factor=2, collate_fn=as_delivered,
            generator=torch.Generator().manual_seed(args.seed)))  # not the global RNG: resume stays exact
    cpu0 = time.process_time()
    while trainer.running() and not (args.cpu_minutes and time.process_time() - cpu0 >= args.cpu_minutes * 60):
        if planned is not None:
            step, crops = next(planned)
            if step != trainer.step_count:
                raise RuntimeError(f"crop worker delivered step {step}, expected {trainer.step_count}")
        else:
            crops = random_crops(trainer.rng, icons, args.batch, args.crop, args.size, mix=mix)
        x = images_to_tensor(list(crops), trainer.device)
        with torch.set_grad_enabled(not args.decoder_only):
            z = raw.encode_raw(x)
        # Latent noise on half the batch: the decoder must tolerate the imperfect latents a DiT makes.
        noisy = (torch.rand(z.shape[0], 1, 1, 1, device=z.device) < 0.5).float()
        rec = raw.decode_raw(z + 0.1 * z.detach().std() * torch.randn_like(z) * noisy)
        loss = (F.l1_loss(rec, x) + F.mse_loss(rec, x) + args.grad_weight * gradient_l1(rec, x)
                + 1e-4 * z.pow(2).mean())
        lr = trainer.lr("dcae")
        trainer.step("dcae", loss)
        trainer.end_step(loss=f"{loss.item():.4f}")
        trainer.log_row({"step": trainer.step_count, "loss": loss.item(), "psnr": psnr(rec.detach(), x), "lr": lr})
        if trainer.step_count % args.ckpt_every == 0:
            trainer.save()
            export(raw, out / "model", icons, args.size, trainer.device, measure=not args.decoder_only)
    trainer.finish()
    stats = export(raw, out / "model", icons, args.size, trainer.device, measure=not args.decoder_only)
    trainer.acc.print(f"step {trainer.step_count}: checkpoint {trainer.latest_checkpoint()}, "
                      f"model {out / 'model'} {stats}")
    return trainer.step_count


if __name__ == "__main__":
    main()
