"""Train the autoencoder: `python -m seedling.model.train_ae --out runs/ae --minutes 15`.

accelerate drives it, so the same command runs on CPU, one GPU, or `accelerate launch` on
several. Crops of 64x64 from 128x128 images (convolutions are translation invariant, so crops
teach the same filters at a quarter of the cost). Checkpoints every `--ckpt-every` steps hold
the model, optimiser, step and RNG state; rerunning the same command resumes exactly.
At the end the latent shift/scale are measured on fresh images and written into the config.

Fine-tuning the decoder of a trained autoencoder (`--init FOLDER --decoder-only`): the encoder,
and with it the latent space and its shift/scale, stay exactly as they are, so a DiT trained on
that autoencoder keeps working and only decodes better. A sharper decoder shows in everything the
pipeline outputs: words, edges, and the pixels an instruction edit should keep.

    python -m seedling.model.train_ae --init assets/default/autoencoder --decoder-only --out runs/ae_dec --minutes 90
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from seedling.model.autoencoder import AE_CONFIGS, Autoencoder, autoencoder_folder, images_to_tensor
from seedling.model.data.ae_images import random_training_image
from seedling.model.data.icons import load_icons


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
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget for this invocation")
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop this invocation after N steps (the schedule still follows --max-steps)",
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--init", default=None,
                   help="start from this autoencoder folder (or a pipeline folder holding autoencoder/); "
                        "its config replaces --config")
    p.add_argument("--decoder-only", action="store_true",
                   help="train the decoder alone: the encoder and the latent shift/scale stay fixed (needs --init)")
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args(argv)
    if args.decoder_only and not args.init:
        p.error("--decoder-only fine-tunes a trained autoencoder: give it with --init FOLDER")

    from accelerate import Accelerator

    if args.threads:
        torch.set_num_threads(args.threads)
    acc = Accelerator()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
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
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    step = 0
    rng = np.random.default_rng(args.seed + acc.process_index)
    ck = out / "checkpoint"
    if (ck / "model.safetensors").exists():
        model.load_state_dict(load_file(str(ck / "model.safetensors")))
        opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
        meta = torch.load(ck / "state.pt", weights_only=False)
        step = meta["step"]
        rng.bit_generator.state = meta["rng"]
        torch.set_rng_state(meta["torch_rng"])
        acc.print(f"resumed from step {step}")
    model, opt = acc.prepare(model, opt)

    def save_ckpt():
        ck.mkdir(parents=True, exist_ok=True)
        m = acc.unwrap_model(model)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(ck / "model.safetensors.tmp"))
        torch.save(opt.state_dict(), ck / "optimizer.pt.tmp")
        torch.save(
            {"step": step, "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
            ck / "state.pt.tmp",
        )
        for n in ("model.safetensors", "optimizer.pt", "state.pt"):
            (ck / f"{n}.tmp").replace(ck / n)

    log = open(out / "loss.csv", "a", newline="")
    writer = csv.writer(log)
    t_end = time.time() + args.minutes * 60
    bar = tqdm(total=args.max_steps, initial=step, desc="autoencoder", disable=not acc.is_main_process)
    model.train()
    start_step = step
    while (
        step < args.max_steps
        and time.time() < t_end
        and not (args.stop_after and step - start_step >= args.stop_after)
    ):
        # cosine decay over the planned steps, short warm-up
        lr = (
            args.lr
            * min(1.0, (step + 1) / max(1, args.warmup))
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / args.max_steps, 1.0))))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch_of_crops(rng, icons, args.batch, args.crop).to(acc.device)
        with torch.set_grad_enabled(not args.decoder_only):
            z = acc.unwrap_model(model).encode_raw(x)
        # latent noise makes the decoder tolerant of the imperfect latents diffusion produces
        z_in = z + 0.1 * z.detach().std() * torch.randn_like(z) * (
            torch.rand(z.shape[0], 1, 1, 1, device=z.device) < 0.5
        )
        rec = acc.unwrap_model(model).decode_raw(z_in)
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % 20 == 0:
            pv = psnr(rec.detach(), x)
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{pv:.1f}")
            writer.writerow([step, f"{loss.item():.5f}", f"{pv:.2f}", f"{lr:.2e}"])
            log.flush()
        if step % args.ckpt_every == 0:
            save_ckpt()
    save_ckpt()
    bar.close()

    # measure latent statistics on fresh full-size images and export a self-describing folder
    m = acc.unwrap_model(model).eval()
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
    acc.print(
        f"step {step}: validation PSNR {val_psnr:.2f} dB on 128 fresh 128x128 images; saved {out / 'final'}"
    )
    record = {"step": step, "psnr": round(val_psnr, 3)}
    if args.init:
        record.update(init=str(args.init), init_psnr=round(roundtrip_psnr(Autoencoder.from_pretrained(init)), 3),
                      decoder_only=args.decoder_only)
        acc.print(f"the --init autoencoder scores {record['init_psnr']:.2f} dB on the same images")
    (out / "final" / "val.json").write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
