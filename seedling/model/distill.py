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
The loop, checkpoints (every `--ckpt-every` steps; rerunning the command resumes) and EMA are
model/training.py's; the data side is train_data.py's. Loss log in <out>/loss.csv.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from seedling import DEFAULT_MODEL
from seedling.model.autoencoder import Autoencoder
from seedling.model.dit import UnifiedDiT
from seedling.model.flow import add_noise, shortcut_flow_loss
from seedling.model.sampler import combine_guidance
from seedling.model.train_data import BatchMaker, Throughput, draw_task, encode_batch
from seedling.model.training import Trainer, add_run_arguments


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
    add_run_arguments(p, minutes=40.0, max_steps=4000, ckpt_every=50, lr=2e-5, lr_schedule="constant")
    p.add_argument("--token-budget", type=int, default=1536)
    p.add_argument("--lr-fake", type=float, default=4e-5, help="the fake score model's (--lr: the student's)")
    p.add_argument("--fake-updates", type=int, default=2, help="fake-score updates per generator step")
    p.add_argument("--teacher-guidance", type=float, default=None, help="default: the base pipeline's")
    p.add_argument("--student-steps", default="1,2", help="NFE values trained (sampled uniformly)")
    p.add_argument("--reg", type=float, default=0.25, help="weight of the base objective on real data")
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--captions", default="rich", choices=("rich", "v1"),
                   help="caption style: rich (every name of an icon, free sentences) or v1 (the shipped model's)")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--export", default="", help="write a pipeline folder (student EMA, fp16) here at the end")
    p.add_argument("--export-steps", type=int, default=2, help="default_steps of the exported pipeline")
    args = p.parse_args(argv)

    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler
    from seedling.model.pipeline import SeedlingPipeline
    from seedling.model.text_encoder import TextEncoder

    trainer = Trainer.from_args(args.out, args, bf16=args.bf16, desc="distill")
    dev = trainer.device
    base = SeedlingPipeline.from_pretrained(args.model, device=str(dev))
    ae: Autoencoder = base.autoencoder.requires_grad_(False)
    teacher: UnifiedDiT = base.dit.eval().requires_grad_(False)
    cfg = teacher.dims
    trainer.files["config.json"] = json.dumps(cfg.to_dict(), indent=2)
    guidance = base.settings.guidance if args.teacher_guidance is None else args.teacher_guidance
    torch.manual_seed(args.seed)
    opt_args = {"betas": (0.0, 0.99), "schedule": args.lr_schedule}
    student = trainer.add("model", copy.deepcopy(teacher).train().requires_grad_(True), lr=args.lr,
                          ema_decay=args.ema, **opt_args)
    fake = trainer.add("fake", copy.deepcopy(teacher).train().requires_grad_(True), lr=args.lr_fake,
                       updates_per_step=args.fake_updates, **opt_args)
    trainer.extra["samples"] = 0
    if trainer.resume():
        print(f"resumed from step {trainer.step_count} ({trainer.extra['samples']} samples)")
    rng = trainer.rng

    icons = load_icons()
    sampler = TaskSampler(icons, seed=args.seed + 7, captions=args.captions)
    te = TextEncoder(max_length=cfg.text_len, device=dev, cache_size=100000)
    tpi = (128 // ae.factor // cfg.patch) ** 2
    maker = BatchMaker(sampler, rng, args.token_budget, cfg.text_len, tpi)
    nfe_choices = [int(v) for v in args.student_steps.split(",")]
    meter = Throughput(trainer.extra["samples"])
    while trainer.running():
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

        def s_fn(x, t, d, cond=cond, task=task, refs=refs, masks=masks):
            return student(x, t, *cond, task, refs, masks, d=d)

        # -- generator step ------------------------------------------------------------------
        with trainer.autocast():
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

            def reg_fn(x, t_, d_, sl, cond=cond, task=task, refs=refs, masks=masks):
                rm = [m[sl] for m in masks] if masks is not None else None
                return student(x, t_, cond[0][sl], cond[1][sl], task, [r[sl] for r in refs], rm, d=d_)

            loss_reg, _ = shortcut_flow_loss(reg_fn, x0_real_data) if args.reg > 0 else (torch.zeros(()), {})
            loss = loss_dmd + args.reg * loss_reg
        trainer.step("model", loss)

        # -- fake-score steps: flow matching on the student's samples --------------------------
        x_fake_data = x0.detach()
        for _ in range(args.fake_updates):
            with trainer.autocast():
                tf = torch.sigmoid(torch.randn(B, device=dev))
                ef = torch.randn_like(x_fake_data)
                v = fake(add_noise(x_fake_data, ef, tf), tf, *cond, task, refs, masks, d=torch.zeros(B, device=dev))
                loss_fake = F.mse_loss(v.float(), (ef - x_fake_data).float())
            trainer.step("fake", loss_fake)

        trainer.extra["samples"] += B
        trainer.end_step(dmd=f"{loss_dmd.item():.4f}", reg=f"{float(loss_reg):.3f}")
        trainer.log_row({"step": trainer.step_count, "task": task, "nfe": nfe, "batch": B,
                         "loss_dmd": loss_dmd.item(), "loss_reg": float(loss_reg), "loss_fake": loss_fake.item(),
                         "samples_per_s": round(meter.rate(trainer.extra["samples"]), 1)})
    ck = trainer.finish()
    print(f"stopped at step {trainer.step_count} ({trainer.extra['samples']} samples)")
    if args.export:
        from seedling.model.export import export

        base_cfg = {k: v for k, v in base.settings.to_dict().items() if k != "text_len"}
        base_cfg.update(default_steps=args.export_steps, guidance=1.0, schedule="uniform")
        export(ck, Path(args.model) / "autoencoder", args.export, fp16=True, ema=True, pipeline_config=base_cfg,
               extra_info={"distilled_from": str(args.model), "args": vars(args)})
        print(f"exported pipeline to {args.export}")


if __name__ == "__main__":
    main()
