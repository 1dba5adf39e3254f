"""Train the unified DiT on generated task tuples:

    python -m seedling.model.train --ae runs/ae/final --out runs/dit --minutes 80 --export assets/default

accelerate drives it (CPU, one GPU, or `accelerate launch` on several). Data is generated on the
fly from the seed (OpenMoji icons + knowledge images -> tuples for every task) and encoded by the
frozen autoencoder, so there is no dataset on disk and every sample is fresh.

- Task mixing with a floor probability per task and a curriculum: t2i -> +edit/inpaint -> all.
- Batches are homogeneous in (task, #refs, #outputs) and sized by a token budget.
- Objective: flow matching + shortcut self-consistency (model/flow.py), so the model is trained
  few-step from the start. Text dropped 10% (text guidance), references dropped 10% of batches
  of reference tasks (image guidance).
- The loop is model/training.py's: EMA of the weights, a diffusers learning-rate schedule, a
  checkpoint (model, EMA, optimiser, schedule, step, all RNG states) every `--ckpt-every` steps;
  rerunning the command resumes exactly where it stopped.
- Loss log in `<out>/loss.csv`; progress bar with ETA.

On a GPU the data must keep up with the model: `--workers N` draws the batches in N processes.
Every batch is then a function of (seed, step) alone (`planned_batch`), so the stream does not
depend on the number of workers and a resumed run sees exactly the batches it would have seen.
With `--workers 0` (the default) batches come from one sequential stream in this process, as in
the CPU runs of the base model. On one H100 (throughput and the whole chain of runs are in the
model card):

    python -m seedling.model.train --ae runs/ae/final --out runs/gpu --init runs/export --no-curriculum --bf16 \
        --workers 13 --token-budget 49152 --max-batch 512 --max-steps 5000 --lr 3e-4 --export runs/gpu/export

Native sizes: `--size 512` draws every sample at 512 px (`TaskSampler(size=...)`: rendered, not
upscaled). With the f32 autoencoder (`--ae` an exported `train_dcae` model) a 512 px image is a
16x16 latent, the token count of a 128 px image under the f8 one. `--init` from a DiT trained on
another latent space keeps every weight whose shape fits (the blocks, text and task parts) and
starts the latent in/out projections afresh. The icons are rasterised once per size they are drawn
at, into <cache>/icon_rasters (4.3 GB for 512 px; `--no-icon-rasters` draws them from the font
each time), and the data workers map those files:

    python -m seedling.model.train --ae runs/ae512/f32/model --size 512 --init assets/default --out runs/dit512 \
        --no-curriculum --workers 12 --bf16 --export runs/dit512/export
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from seedling.model.dcae import load_autoencoder
from seedling.model.dit import DiT_configs, DiTConfig, UnifiedDiT
from seedling.model.flow import shortcut_flow_loss
from seedling.model.modeling import weights_path
from seedling.model.rope import reference_positions
from seedling.model.train_data import (
    BatchMaker,
    PlannedBatches,
    Throughput,
    draw_task,
    encode_batch,
    keep_arrays,
    stack_samples,
)
from seedling.model.training import Trainer, add_run_arguments, latest_checkpoint, parse_weights


def _task_weights(text: str) -> dict[str, float]:
    from seedling.model.task_table import TASK_NAMES

    return parse_weights(text, TASK_NAMES, "task")


def _t2i_mix(text: str) -> dict[str, float]:
    from seedling.model.data.tasks import T2I_KINDS

    out = parse_weights(text, T2I_KINDS, "t2i kind")
    if out and not any(out.values()):
        raise argparse.ArgumentTypeError("--t2i-mix needs at least one kind with a weight above 0")
    return out


def load_fitting(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every tensor of `state` whose name and shape `model` has (a DiT from one trained on
    another latent space: the blocks fit, the latent in/out projections do not). Returns the
    names of the model's tensors left as initialised."""
    own = model.state_dict()
    fits = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fits, strict=False)
    return sorted(k for k in own if k not in fits)


def _merge_init_adapters(model: UnifiedDiT, init: Path, tasks: list[str]) -> list[str]:
    """The --init folder's task adapters for tasks this run adapts, merged into the starting weights:
    the run goes on from them (e.g. compose's adapter, extended to the storyboard), and its export
    replaces their files. An adapter that also serves a task the run does not adapt is refused.
    Returns the merged files' names."""
    from seedling.model.adapters import load_adapter, merge_adapter
    from seedling.model.pipeline import TASK_ADAPTERS, adapter_tasks

    merged = []
    for file in sorted((init / TASK_ADAPTERS).glob("*.safetensors")):
        adapter = load_adapter(file)
        served = adapter_tasks(adapter, file)
        if not set(served) & set(tasks):
            continue
        if not set(served) <= set(tasks):
            raise SystemExit(f"{file.name} also serves {sorted(set(served) - set(tasks))}: adapt those tasks too "
                             f"(--adapt-tasks {','.join(sorted(set(served) | set(tasks)))}) or none of its tasks")
        merge_adapter(model, adapter)
        merged.append(file.name)
    return merged


def _task_adapter_model(model: UnifiedDiT, cfg: DiTConfig, args, ck) -> tuple[torch.nn.Module, dict]:
    """The DiT set up to train a task adapter (`--task-adapter`): a LoRA of rank `--lora-rank`
    injected (finetune_model.trainable_dit), or every weight ("full"); in both, of the task
    embedding only the rows of the adapted tasks train. The adapted tasks are the weighted
    ones the --init model did not know, plus the known ones `--adapt-tasks` names (a task whose
    behaviour the adapter replaces, e.g. compose with reference boxes); read back on resume. Returns the model and
    the run's task_adapter.json record (kind, rank, tasks, init folder)."""
    from seedling.model.finetune_config import FinetuneConfig
    from seedling.model.finetune_model import trainable_dit

    if ck is not None:
        info = json.loads((ck / "task_adapter.json").read_text())
        if (info["kind"], info["rank"]) != (args.task_adapter, args.lora_rank if args.task_adapter == "lora" else None):
            how = f"--task-adapter {info['kind']}" + (f" --lora-rank {info['rank']}" if info["kind"] == "lora" else "")
            raise SystemExit(f"this run trains a {info['kind']} task adapter: resume it with {how}")
        tasks = info["tasks"]
    else:
        if not args.init:
            raise SystemExit("--task-adapter trains an adapter over a trained model: give --init FOLDER")
        known = json.loads((Path(args.init) / "dit" / "config.json").read_text())["tasks"]
        unknown = [t for t in args.adapt_tasks if t not in known]
        if unknown:
            raise SystemExit(f"--adapt-tasks names tasks the --init model does not know: {unknown}; "
                             f"it knows {known} (a new task is added by weighting it in --task-weights)")
        tasks = [t for t in cfg.tasks if t not in known or t in args.adapt_tasks]
        if not tasks:
            raise SystemExit("--task-adapter adapts the tasks a run adds to its --init model (weight a task it "
                             "lacks, e.g. --task-weights text=1,t2i=0,edit=0,inpaint=0,compose=0,storyboard=0,style=0) "
                             "or the known tasks named by --adapt-tasks, e.g. --adapt-tasks compose")
        info = {"kind": args.task_adapter, "rank": args.lora_rank if args.task_adapter == "lora" else None,
                "tasks": tasks, "init": args.init, "storyboard_panels": bool(args.storyboard_panels)}
    if ck is None:
        info["continues"] = _merge_init_adapters(model, Path(args.init), tasks)
    if args.task_adapter == "lora":
        model = trainable_dit(model, FinetuneConfig(rank=args.lora_rank, seed=args.seed))
    rows = torch.zeros(cfg.num_tasks, 1)
    rows[[cfg.tasks.index(t) for t in tasks]] = 1.0
    embed = model.task_embed.weight.requires_grad_(True)
    embed.register_hook(lambda g, rows=rows: g * rows.to(g))  # the other tasks' rows stay exactly as they were
    return model, info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ae", default="runs/ae/final", help="trained autoencoder folder")
    p.add_argument("--out", default="runs/dit")
    p.add_argument("--config", default="default", choices=sorted(DiT_configs))
    add_run_arguments(p, minutes=60.0, max_steps=20000, ckpt_every=250, lr=4e-4, warmup=200)
    p.add_argument(
        "--token-budget", type=int, default=3072, help="tokens per batch (sets batch size per task)"
    )
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--shortcut-fraction", type=float, default=0.25)
    p.add_argument("--captions", default="rich", choices=("rich", "v1"),
                   help="caption style: rich (every name of an icon, free sentences) or v1 (the shipped model's)")
    p.add_argument(
        "--bf16", action="store_true", help="bf16 autocast (fast on CPUs with AVX512-BF16 and on GPUs)"
    )
    p.add_argument("--export", default="", help="write a pipeline folder (EMA weights, fp16) here at the end")
    p.add_argument("--workers", type=int, default=0,
                   help="data worker processes; >0 draws each step's batch from (seed, step) (see above)")
    p.add_argument("--max-batch", type=int, default=48, help="upper bound on samples per batch")
    p.add_argument("--no-curriculum", action="store_true",
                   help="every task from the first step (for runs that start from trained weights)")
    p.add_argument("--task-weights", default="", type=_task_weights,
                   help="change the task mix, e.g. 'compose=0.5,t2i=0.2' or add a control task, 'edges=0.1' "
                        "(others keep their weights)")
    p.add_argument("--t2i-mix", default="", type=_t2i_mix,
                   help="what t2i samples show, e.g. icon=0.8,shapes=0.1,chart=0.1 (kinds left out are not drawn; "
                        "default icon=0.5,shapes=0.25,word=0.15,chart=0.1)")
    p.add_argument("--reference-boxes", action="store_true",
                   help="compose references sit in their layout's boxes (rope.box_positions); new runs and --init only")
    p.add_argument("--size", type=int, default=128,
                   help="the samples' size in px (128 or a multiple of it), drawn natively; fixed for a run")
    p.add_argument("--no-icon-rasters", action="store_true",
                   help="at a --size other than 128, rasterise every icon from the font each time it is drawn, "
                        "instead of once per size into <cache>/icon_rasters (4.3 GB for 512 px; the same pixels)")
    p.add_argument("--init", default="",
                   help="a pipeline folder whose DiT weights start a new run (model and EMA); ignored on resume")
    p.add_argument("--task-adapter", choices=("lora", "full"), default=None,
                   help="train an adapter for the tasks this run adds to its --init model (with the new tasks' "
                        "embedding rows); the model's other tasks are untouched: a LoRA (--lora-rank) or a change "
                        "of every weight (export: python -m seedling.model.export --task-adapter)")
    p.add_argument("--lora-rank", type=int, default=64, help="rank of a --task-adapter lora")
    p.add_argument("--storyboard-panels", action="store_true",
                   help="half of the compose samples are storyboard panels: one reference picture of the character "
                        "placed in the panel's box on its scene (TaskSampler.storyboard_panel; with --reference-boxes)")
    p.add_argument("--adapt-tasks", default="", type=lambda v: [t.strip() for t in v.split(",") if t.strip()],
                   help="with --task-adapter: tasks the --init model already knows that the adapter also takes "
                        "over, e.g. compose (its embedding row trains with it)")
    args = p.parse_args(argv)
    if args.storyboard_panels and not args.reference_boxes:
        p.error("--storyboard-panels places the character's picture in each panel's box: add --reference-boxes")
    if args.workers < 0 or args.max_batch < 2:
        p.error("--workers must be >= 0 and --max-batch >= 2")
    if args.lora_rank < 1:
        p.error("--lora-rank must be a whole number >= 1")

    from seedling.model.data.icons import ensure_rasters, load_icons
    from seedling.model.data.tasks import TaskSampler, check_sample_size, icon_sizes
    from seedling.model.text_encoder import TextEncoder

    try:
        check_sample_size(args.size)
    except ValueError as e:
        p.error(f"--size {args.size}: {e}")

    out = Path(args.out)
    trainer = Trainer.from_args(out, args, bf16=args.bf16, desc="dit")
    acc, dev = trainer.acc, trainer.device
    ae = load_autoencoder(args.ae).to(dev).requires_grad_(False)
    ck = latest_checkpoint(out)
    new_latents = False
    if ck is not None:
        cfg = DiTConfig.from_dict(json.loads((ck / "config.json").read_text()))
        data = json.loads((ck / "data.json").read_text()) if (ck / "data.json").exists() else {"size": 128}
        if data["size"] != args.size:
            raise SystemExit(f"this run draws its samples at {data['size']} px: resume it with --size {data['size']}")
    elif args.init:
        cfg = DiTConfig.from_dict(json.loads((Path(args.init) / "dit" / "config.json").read_text()))
        if cfg.latent_channels != ae.config.latent_channels:
            if args.task_adapter:
                raise SystemExit(f"--init {args.init}: its DiT has {cfg.latent_channels} latent channels, the "
                                 f"autoencoder {ae.config.latent_channels}; a task adapter needs the init's autoencoder")
            new_latents = True
            cfg.latent_channels = ae.config.latent_channels
    else:
        cfg = DiT_configs[args.config]()
        cfg.latent_channels = ae.config.latent_channels
    if args.reference_boxes and ck is None:
        cfg.reference_boxes = True
    if args.size % (ae.factor * cfg.patch):
        raise SystemExit(f"--size {args.size} is no multiple of {ae.factor * cfg.patch} (the f{ae.factor} "
                         f"autoencoder's factor times the DiT's patch {cfg.patch}): choose a larger size")
    weighted = [t for t, w in (args.task_weights or {}).items() if w > 0]
    missing = [t for t in weighted if t not in cfg.tasks]
    if missing and (ck is not None or not args.init):
        raise SystemExit(f"the run's model does not know {missing}: add new tasks when a run starts "
                         "from --init (a new run without --init knows every task)")
    torch.manual_seed(args.seed)
    model = UnifiedDiT(cfg)
    if args.init and ck is None:
        init = load_file(str(weights_path(Path(args.init) / "dit")))
        if new_latents:
            fresh = load_fitting(model, init)
            acc.print(f"initialised from {args.init} but for the latent projections {fresh} (new latent space)")
        else:
            model.load_state_dict({k: v.float() for k, v in init.items()})
            acc.print(f"initialised from {args.init}")
        if missing:  # new tasks start from the edit task's embedding (UnifiedDiT.with_tasks)
            model = model.with_tasks(missing)
            cfg = model.dims
            acc.print(f"added the tasks {missing} (task embedding of {cfg.num_tasks} rows)")
    trainer.files["config.json"] = json.dumps(cfg.to_dict(), indent=2)
    trainer.files["data.json"] = json.dumps({"size": args.size})
    if ck is not None and not args.task_adapter and (ck / "task_adapter.json").exists():
        kind = json.loads((ck / "task_adapter.json").read_text())["kind"]
        raise SystemExit(f"this run trains a task adapter: resume it with --task-adapter {kind}")
    if args.task_adapter:
        model, info = _task_adapter_model(model, cfg, args, ck)
        trainer.files["task_adapter.json"] = json.dumps(info, indent=2)
    acc.print(f"DiT {cfg.width}x{cfg.depth}: {model.num_parameters() / 1e6:.2f}M parameters")
    model = trainer.add("model", model, lr=args.lr, schedule=args.lr_schedule, warmup=args.warmup,
                        ema_decay=args.ema)
    trainer.extra["samples"] = 0
    if trainer.resume():
        acc.print(f"resumed from step {trainer.step_count} ({trainer.extra['samples']} samples)")
    rng = trainer.rng

    icons = load_icons()
    if not args.no_icon_rasters:
        folder = Path(os.environ.get("SEEDLING_CACHE", "cache")) / "icon_rasters"
        with acc.main_process_first():  # one process writes them, the others then map them
            for side in icon_sizes(args.size):
                if ensure_rasters(icons, side, folder, processes=max(1, args.workers)):
                    acc.print(f"rasterised {len(icons)} icons at {side} px into {folder}")
    sampler = TaskSampler(icons, seed=args.seed, captions=args.captions, storyboard_panels=args.storyboard_panels,
                          size=args.size, t2i_mix=args.t2i_mix or None)
    te = TextEncoder(max_length=cfg.text_len, device=dev, cache_size=200000)
    tpi = (args.size // ae.factor // cfg.patch) ** 2
    maker = BatchMaker(sampler, rng, args.token_budget, cfg.text_len, tpi, args.max_batch, cfg.reference_boxes)
    planned = None
    if args.workers:
        planned = iter(torch.utils.data.DataLoader(
            # each process of a multi-GPU run draws its own stream, as the in-process rng does
            PlannedBatches(args.seed + 1000 * acc.process_index, trainer.step_count, args.max_steps,
                           args.token_budget, cfg.text_len, tpi, args.max_batch, icons,
                           curriculum=not args.no_curriculum, captions=args.captions, boxes=cfg.reference_boxes,
                           weights=args.task_weights or None, storyboard_panels=args.storyboard_panels,
                           size=args.size, t2i_mix=args.t2i_mix or None),
            batch_size=None, num_workers=args.workers, prefetch_factor=2, persistent_workers=False,
            pin_memory=dev.type == "cuda", collate_fn=keep_arrays,
            generator=torch.Generator().manual_seed(args.seed)))  # not the global RNG: resume stays exact

    model.train()
    meter = Throughput(trainer.extra["samples"])
    while trainer.running():
        step = trainer.step_count
        progress = step / args.max_steps
        if planned is not None:
            samples = next(planned)
            if samples["step"] != step:
                raise RuntimeError(f"data worker delivered step {samples['step']}, expected {step}")
            task = samples["task"]
            prompts = samples["prompts"]
        else:
            task = draw_task(rng, 1.0 if args.no_curriculum else progress, args.task_weights)
            samples = stack_samples(maker.next(task))
            prompts = samples["prompts"]
        B = len(prompts)
        refs, masks, x0 = encode_batch(samples, ae, dev)
        placed = (reference_positions(cfg.ref_index_offset, samples["ref_boxes"], x0.shape[-2] // cfg.patch,
                                      x0.shape[-1] // cfg.patch) if cfg.reference_boxes else None)
        prompts = [("" if rng.random() < 0.1 else pr) for pr in prompts]
        if refs and task != "inpaint" and rng.random() < 0.1:
            refs, masks, placed = [], None, None  # image-guidance "none" branch
        states, pooled = te.encode(prompts)

        def model_fn(x, t, d, sl, states=states, pooled=pooled, task=task, refs=refs, masks=masks, placed=placed):
            rm = [m[sl] for m in masks] if masks is not None else None
            return model(x, t, states[sl], pooled[sl], task, [r[sl] for r in refs], rm, d=d, ref_indices=placed)

        with trainer.autocast():
            loss, stats = shortcut_flow_loss(model_fn, x0, args.shortcut_fraction)
        lr = trainer.lr("model")
        trainer.step("model", loss)
        trainer.extra["samples"] += B
        trainer.end_step(loss=f"{loss.item():.3f}", task=task)
        trainer.log_row({
            "step": trainer.step_count, "task": task, "n_refs": len(refs), "n_out": x0.shape[1], "batch": B,
            "loss": loss.item(), "loss_fm": stats.get("loss_fm", float("nan")),
            "loss_sc": stats.get("loss_sc", float("nan")), "lr": lr,
            "samples_per_s": round(meter.rate(trainer.extra["samples"]), 1),
        })
    ck = trainer.finish()
    acc.print(f"stopped at step {trainer.step_count} ({trainer.extra['samples']} samples)")

    if args.export and acc.is_main_process:
        from seedling.model.export import export

        export(ck, args.ae, args.export, fp16=True, ema=True, pipeline_config={"default_size": args.size},
               extra_info={"config": cfg.to_dict(), "args": vars(args)})
        acc.print(f"exported pipeline to {args.export}")


if __name__ == "__main__":
    main()
