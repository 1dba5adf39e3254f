"""Few-step distillation: distribution matching (DMD2-style) on top of a trained pipeline.

    python -m seedling.model.distill --model assets/default --out runs/distill --minutes 40 --export runs/distill/export

The base model is already trained few-step (shortcut objective, 4 NFE). This stage pushes it to
1-2 NFE the way DMD2 (Yin et al., 2024, "Improved Distribution Matching Distillation") does,
without a discriminator:

- three copies of the base DiT: the frozen **teacher** ("real" score, with classifier-free
  guidance), the **student** (the generator being distilled) and the **fake** score model that
  tracks the student's output distribution;
- the student generates x0 from noise with the pipeline's own shortcut Euler sampler in k = 1 or
  2 steps (d = 1/k), gradients flowing through every step, for the task tuples of the base
  training data (t2i, edit, inpaint, compose, storyboard, style; same conditioning);
- generator loss: noise x0 to a random t, ask both score models for their x0 predictions; the
  KL gradient is (x0_fake - x0_real), normalised per sample by mean |x0 - x0_real| (DMD's
  weighting), applied through 0.5 * ||x0 - sg(x0 - grad)||^2;
- the fake model is updated `--fake-updates` times per generator step (two time-scale rule)
  with flow matching on the student's (detached) samples;
- regulariser (keeps the multi-step path): the base objective (flow matching + shortcut
  self-consistency) on real data for the student, weight `--reg`.

Because the teacher's score is guided, the student needs no guidance: sample it with guidance 1
(one DiT call per step instead of two). The export sets `default_steps` and `guidance`.
Checkpoints every `--ckpt-every` steps; rerunning the command resumes. Loss log in
<out>/loss.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from seedling import DEFAULT_MODEL
from seedling.model.autoencoder import Autoencoder
from seedling.model.dit import UnifiedDiT
from seedling.model.flow import add_noise, shortcut_flow_loss
from seedling.model.sampler import combine_guidance


def student_sample(fn, z: torch.Tensor, steps: int, project=None) -> torch.Tensor:
    """The pipeline's shortcut Euler sampler (uniform schedule, d = 1/steps) with gradients.
    fn(x, t, d) -> v; z: noise at t = 1. Returns x0."""
    x, B = z, z.shape[0]
    for i in range(steps):
        t, dt = 1.0 - i / steps, 1.0 / steps
        v = fn(x, torch.full((B,), t, device=z.device), torch.full((B,), dt, device=z.device))
        x = x - dt * v
        if project is not None:
            x = project(x, t - dt)
    return x


def dmd_loss(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """Distribution-matching generator loss for student samples x0 (B, ...), given the real
    (teacher) and fake score models' x0 predictions from the same noised x_t (no gradient).
    d loss / d x0 = (x0_fake - x0_real) / mean|x0 - x0_real| per sample (DMD's normaliser)."""
    dims = tuple(range(1, x0.dim()))
    with torch.no_grad():
        w = (x0 - x0_real).abs().mean(dims, keepdim=True).clamp_min(1e-4)
        grad = torch.nan_to_num((x0_fake - x0_real) / w)
        target = x0 - grad
    n = x0[0].numel()
    return 0.5 * F.mse_loss(x0.float(), target.float(), reduction="sum") / (x0.shape[0] * n)


def guided_v(model, x, t, d, cond, uncond, task, refs, masks, guidance: float):
    """Teacher velocity with text guidance (references kept in both branches, as the pipeline's
    default image_guidance = 1), combined as the sampler combines it."""
    v = {"cond": model(x, t, *cond, task, refs, masks, d=d)}
    if guidance != 1.0:
        v["no_text"] = model(x, t, *uncond, task, refs, masks, d=d)
    return combine_guidance(v, guidance, 1.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="base pipeline folder (teacher + init)")
    p.add_argument("--out", default="runs/distill")
    p.add_argument("--minutes", type=float, default=40.0)
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--stop-after", type=int, default=0, help="stop this invocation after N steps")
    p.add_argument("--token-budget", type=int, default=1536)
    p.add_argument("--lr", type=float, default=2e-5, help="student learning rate")
    p.add_argument("--lr-fake", type=float, default=4e-5)
    p.add_argument("--fake-updates", type=int, default=2, help="fake-score updates per generator step")
    p.add_argument("--teacher-guidance", type=float, default=None, help="default: the base pipeline's")
    p.add_argument("--student-steps", default="1,2", help="NFE values trained (sampled uniformly)")
    p.add_argument("--reg", type=float, default=0.25, help="weight of the base objective on real data")
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--ckpt-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--export", default="", help="write a pipeline folder (student EMA, fp16) here at the end")
    p.add_argument("--export-steps", type=int, default=2, help="default_steps of the exported pipeline")
    args = p.parse_args(argv)

    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler
    from seedling.model.pipeline import SeedlingPipeline
    from seedling.model.text_encoder import TextEncoder
    from seedling.model.train import BatchMaker, Throughput, draw_task, ema_update, encode_batch

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    ck = out / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    base = SeedlingPipeline.from_pretrained(args.model, device=str(dev))
    ae: Autoencoder = base.autoencoder.requires_grad_(False)
    teacher: UnifiedDiT = base.dit.eval().requires_grad_(False)
    cfg = teacher.dims
    guidance = base.settings.guidance if args.teacher_guidance is None else args.teacher_guidance
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    ema = copy.deepcopy(teacher).eval()
    opt_s = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=(0.0, 0.99), weight_decay=0.0)
    opt_f = torch.optim.AdamW(fake.parameters(), lr=args.lr_fake, betas=(0.0, 0.99), weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    step, samples_seen = 0, 0
    if (ck / "state.pt").exists():
        student.load_state_dict(load_file(str(ck / "model.safetensors")))
        ema.load_state_dict(load_file(str(ck / "ema.safetensors")))
        fake.load_state_dict(load_file(str(ck / "fake.safetensors")))
        opt_s.load_state_dict(torch.load(ck / "opt_student.pt", weights_only=True))
        opt_f.load_state_dict(torch.load(ck / "opt_fake.pt", weights_only=True))
        meta = torch.load(ck / "state.pt", weights_only=False)
        step, samples_seen = meta["step"], meta["samples"]
        rng.bit_generator.state = meta["rng"]
        torch.set_rng_state(meta["torch_rng"])
        print(f"resumed from step {step} ({samples_seen} samples)")

    def save_ckpt():
        ck.mkdir(parents=True, exist_ok=True)
        (ck / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        files = {
            "model.safetensors": lambda f: save_file(
                {k: v.contiguous() for k, v in student.state_dict().items()}, f),
            "ema.safetensors": lambda f: save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, f),
            "fake.safetensors": lambda f: save_file({k: v.contiguous() for k, v in fake.state_dict().items()}, f),
            "opt_student.pt": lambda f: torch.save(opt_s.state_dict(), f),
            "opt_fake.pt": lambda f: torch.save(opt_f.state_dict(), f),
            "state.pt": lambda f: torch.save({"step": step, "samples": samples_seen, "rng": rng.bit_generator.state,
                                              "torch_rng": torch.get_rng_state()}, f),
        }
        for name, write in files.items():
            write(str(ck / f"{name}.tmp"))
        for name in files:  # state.pt last: a checkpoint counts only once everything is in place
            (ck / f"{name}.tmp").replace(ck / name)

    icons = load_icons()
    sampler = TaskSampler(icons, seed=args.seed + 7)
    te = TextEncoder(max_length=cfg.text_len, device=dev, cache_size=100000)
    tpi = (128 // ae.factor // cfg.patch) ** 2
    maker = BatchMaker(sampler, rng, args.token_budget, cfg.text_len, tpi)
    nfe_choices = [int(v) for v in args.student_steps.split(",")]
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    log = open(out / "loss.csv", "a", newline="")
    writer = csv.writer(log)
    if log.tell() == 0:
        writer.writerow(["step", "task", "nfe", "batch", "loss_dmd", "loss_reg", "loss_fake", "samples_per_s"])
    t_end = time.time() + args.minutes * 60
    bar = tqdm(total=args.max_steps, initial=step, desc="distill")
    start, meter = step, Throughput(samples_seen)
    while step < args.max_steps and time.time() < t_end and not (args.stop_after and step - start >= args.stop_after):
        task = draw_task(rng, 1.0)
        samples = maker.next(task)
        B = len(samples)
        refs, masks, x0_real_data = encode_batch(samples, ae, dev)
        states, pooled = te.encode([s.prompt for s in samples] + [""])
        cond = (states[:B], pooled[:B])
        uncond = (states[B:].expand(B, -1, -1), pooled[B:].expand(B, -1))
        nfe = int(rng.choice(nfe_choices))
        z = torch.randn_like(x0_real_data)
        project = None
        if task == "inpaint" and masks is not None:  # the pipeline holds the known region
            keep = (1 - masks[0])[:, None]
            src = refs[0][:, None]

            def project(x, t, keep=keep, src=src, z=z):
                return x * (1 - keep) + keep * ((1 - t) * src + t * z)

        def s_fn(x, t, d):
            return student(x, t, *cond, task, refs, masks, d=d)

        # -- generator step ------------------------------------------------------------------
        with amp:
            x0 = student_sample(s_fn, z, nfe, project)
            t = (0.02 + 0.96 * torch.rand(B, device=dev))
            eps = torch.randn_like(x0)
            xt = add_noise(x0.detach(), eps, t)
            tt = t.reshape(-1, *([1] * (x0.dim() - 1)))
            zero = torch.zeros(B, device=dev)
            with torch.no_grad():
                x0_real = xt - tt * guided_v(teacher, xt, t, zero, cond, uncond, task, refs, masks, guidance)
                x0_fake = xt - tt * fake(xt, t, *cond, task, refs, masks, d=zero)
            loss_dmd = dmd_loss(x0, x0_real, x0_fake)

            def reg_fn(x, t_, d_, sl):
                rm = [m[sl] for m in masks] if masks is not None else None
                return student(x, t_, states[:B][sl], pooled[:B][sl], task, [r[sl] for r in refs], rm, d=d_)

            loss_reg, _ = shortcut_flow_loss(reg_fn, x0_real_data) if args.reg > 0 else (torch.zeros(()), {})
            loss = loss_dmd + args.reg * loss_reg
        opt_s.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt_s.step()
        ema_update(ema, student, step, args.ema)

        # -- fake-score steps: flow matching on the student's samples --------------------------
        x_fake_data = x0.detach()
        for _ in range(args.fake_updates):
            with amp:
                tf = torch.sigmoid(torch.randn(B, device=dev))
                ef = torch.randn_like(x_fake_data)
                v = fake(add_noise(x_fake_data, ef, tf), tf, *cond, task, refs, masks, d=torch.zeros(B, device=dev))
                loss_fake = F.mse_loss(v.float(), (ef - x_fake_data).float())
            opt_f.zero_grad(set_to_none=True)
            loss_fake.backward()
            torch.nn.utils.clip_grad_norm_(fake.parameters(), 1.0)
            opt_f.step()

        step += 1
        samples_seen += B
        bar.update(1)
        if step % 10 == 0:
            sps = meter.rate(samples_seen)
            bar.set_postfix(dmd=f"{loss_dmd.item():.4f}", reg=f"{float(loss_reg):.3f}", sps=f"{sps:.1f}")
            writer.writerow([step, task, nfe, B, f"{loss_dmd.item():.5f}", f"{float(loss_reg):.5f}",
                             f"{loss_fake.item():.5f}", f"{sps:.1f}"])
            log.flush()
        if step % args.ckpt_every == 0:
            save_ckpt()
    save_ckpt()
    bar.close()
    print(f"stopped at step {step} ({samples_seen} samples)")
    if args.export:
        from seedling.model.export import export

        base_cfg = {k: v for k, v in base.settings.to_dict().items() if k != "text_len"}
        base_cfg.update(default_steps=args.export_steps, guidance=1.0, schedule="uniform")
        export(ck, Path(args.model) / "autoencoder", args.export, fp16=True, ema=True, pipeline_config=base_cfg,
               extra_info={"distilled_from": str(args.model), "args": vars(args)})
        print(f"exported pipeline to {args.export}")


if __name__ == "__main__":
    main()
