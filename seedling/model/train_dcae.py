"""Train the deep-compression autoencoder on crops of natively rendered 512 px images.

    python -m seedling.model.train_dcae --config f32c32 --out /work/runs/ae512/f32 --minutes 60

Convolutions are translation invariant, so crops teach the filters that run on full images at a
fraction of the cost; the model is then used at 512 or 1024 px. Rerunning the same command
resumes: one checkpoint file (`checkpoint.safetensors`: weights, AdamW moments, torch RNG; its
metadata holds the step, the data RNG and the optimiser's hyper-parameters as JSON) is written to
a temporary name and `os.replace`d, so a kill at any moment leaves the last complete one. Each
checkpoint also exports `latest/` (save_pretrained, with the latent shift/scale measured on fresh
images) for the benchmark to read while training goes on.

Loss: L1 + L2 on pixels, an L1 on image gradients (edges and letter strokes are where a blurry
reconstruction loses, and no downloaded perceptual network is needed), and a small L2 on the
latent to keep its scale bounded. AdamW with a warm-up and a cosine decay over `--max-steps`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from seedling.model.autoencoder import images_to_tensor
from seedling.model.data.ae_native import random_crops, split_icons
from seedling.model.data.icons import load_icons
from seedling.model.dcae import DCAE_CONFIGS, DCAutoencoder

CKPT = "checkpoint.safetensors"


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


def lr_at(step: int, base: float, warmup: int, max_steps: int) -> float:
    return base * min(1.0, (step + 1) / max(1, warmup)) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step / max_steps, 1.0))))


def save_checkpoint(path: Path, model, opt, step: int, rng: np.random.Generator) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for i, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v.detach().cpu().reshape(v.shape).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "numpy_rng": rng.bit_generator.state, "param_groups": sd["param_groups"]}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, opt, rng: np.random.Generator) -> int:
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["state"])
        names = list(f.keys())
        tensors = {k: f.get_tensor(k) for k in names}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    rng.bit_generator.state = meta["numpy_rng"]
    return int(meta["step"])


@torch.no_grad()
def export(model: DCAutoencoder, folder: Path, icons, size: int, device) -> dict:
    """save_pretrained with the latent shift/scale measured on fresh training images."""
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
    p.add_argument("--out", required=True, help="run folder: checkpoint, loss.csv, latest/")
    p.add_argument("--config", default="f32c32", choices=sorted(DCAE_CONFIGS))
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of this invocation")
    p.add_argument("--cpu-minutes", type=float, default=0.0,
                   help="stop once this process has used this much CPU time: on a shared machine the fair "
                        "budget for comparing configs, whatever the others running do to the wall clock")
    p.add_argument("--max-steps", type=int, default=20000, help="the cosine schedule's length")
    p.add_argument("--stop-after", type=int, default=0, help="stop this invocation after N steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--size", type=int, default=512, help="size the images are rendered at before cropping")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--grad-weight", type=float, default=1.0, help="weight of the image-gradient L1")
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    icons = split_icons(load_icons())[0]  # the held-out icons never reach training
    torch.manual_seed(args.seed)
    model = DCAutoencoder.from_named(args.config)
    if args.crop % model.factor:
        p.error(f"--crop {args.crop} must be a multiple of the autoencoder's factor {model.factor}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    rng = np.random.default_rng(args.seed)
    step = 0
    if (out / CKPT).exists():
        step = load_checkpoint(out / CKPT, model, opt, rng)
        print(f"resumed {out / CKPT} at step {step}", flush=True)
    model.to(args.device).train()

    with open(out / "loss.csv", "a", newline="") as log:
        writer = csv.writer(log)
        start, t0, cpu0 = step, time.time(), time.process_time()
        last_ckpt = t0
        while step < args.max_steps and time.time() - t0 < args.minutes * 60 and not (
            args.stop_after and step - start >= args.stop_after
        ) and not (args.cpu_minutes and time.process_time() - cpu0 >= args.cpu_minutes * 60):
            lr = lr_at(step, args.lr, args.warmup, args.max_steps)
            for g in opt.param_groups:
                g["lr"] = lr
            x = images_to_tensor(list(random_crops(rng, icons, args.batch, args.crop, args.size)), args.device)
            z = model.encode_raw(x)
            # Latent noise on half the batch: the decoder must tolerate the imperfect latents a DiT makes.
            noisy = (torch.rand(z.shape[0], 1, 1, 1, device=z.device) < 0.5).float()
            rec = model.decode_raw(z + 0.1 * z.detach().std() * torch.randn_like(z) * noisy)
            loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + args.grad_weight * gradient_l1(rec, x) + 1e-4 * z.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            writer.writerow([step, f"{loss.item():.5f}", f"{psnr(rec.detach(), x):.2f}", f"{lr:.2e}",
                             f"{time.time() - t0:.1f}", f"{time.process_time() - cpu0:.1f}"])
            if step % 20 == 0:
                log.flush()
                print(f"step {step} loss {loss.item():.4f} lr {lr:.2e}", flush=True)
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save_checkpoint(out / CKPT, model, opt, step, rng)
                export(model, out / "latest", icons, args.size, args.device)
                last_ckpt = time.time()
    save_checkpoint(out / CKPT, model, opt, step, rng)
    stats = export(model, out / "latest", icons, args.size, args.device)
    print(f"step {step}: checkpoint {out / CKPT}, model {out / 'latest'} {stats}", flush=True)
    return step


if __name__ == "__main__":
    main()
