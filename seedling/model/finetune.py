"""Post-training the DiT on a user's own images: LoRA (peft) on every block's attention and MLP
linears, or a full fine-tune of the DiT. accelerate drives the loop, so the same code runs on the
CPU, one GPU, or several (`accelerate launch -m seedling.model.finetune ...`).

    pipe = SeedlingPipeline.from_pretrained("assets/default")
    examples = load_folder("my-style/")           # cat.png + cat.txt, ... (or edit pairs)
    result = finetune(pipe, examples, FinetuneConfig(), "runs/ft-my-style", metadata={"name": "my-style"})
    save_adapter(result.adapter, "my-style.safetensors")

- The set is encoded once (autoencoder latents + MiniLM states) into the work folder; each step
  draws a batch from it. Same objective as the base training (model/flow.py: flow matching +
  shortcut self-consistency, so the few-step sampler learns the style too) with caption dropout.
- Every step's randomness is a function of (seed, step) only, so a resumed run follows the same
  trajectory as an uninterrupted one.
- `callback(TrainProgress)` sees the loss every step and sample images every `sample_every`
  steps; it returns None, PAUSE (checkpoint and return: the app yields the queue to other jobs)
  or CANCEL. A checkpoint (trainable weights, optimiser, step, loss history: safetensors + JSON)
  is written every `checkpoint_every` steps and on pause; calling `finetune` again with the same
  work folder resumes from it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from seedling import DEFAULT_MODEL
from seedling.kernels.packed import unpack_linears
from seedling.model.adapters import Adapter, remove_adapters, save_adapter
from seedling.model.autoencoder import images_to_tensor
from seedling.model.finetune_config import FinetuneConfig, lora_target_regex
from seedling.model.finetune_data import (  # noqa: F401 - re-exported: the dataset API lives with the trainer
    CaptionedImage,
    DatasetError,
    EditPair,
    Example,
    load_files,
    load_folder,
    load_zip,
    prepare_image,
    validate_examples,
)
from seedling.model.flow import shortcut_flow_loss

PAUSE = "pause"
CANCEL = "cancel"
MAX_SAMPLES = 4  # sample images per report: a 2x2 grid of 128 px fits the 256 px job preview


@dataclass
class TrainProgress:
    step: int  # steps done
    total: int
    loss: float | None  # this step's loss (None for the report before the first step)
    lr: float
    elapsed: float  # training seconds so far, all chunks together
    samples: list[Image.Image] | None = None  # with the current weights, every `sample_every` steps
    sample_prompts: list[str] = field(default_factory=list)
    losses: list[float] = field(
        default_factory=list, repr=False
    )  # every step's loss so far (resumes included)


@dataclass
class FinetuneResult:
    status: str  # "done" | "paused" | "cancelled"
    step: int
    losses: list[float]
    seconds: float
    adapter: Adapter | None = None  # set when done

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-20:]
        return sum(tail) / len(tail) if tail else None


Callback = Callable[[TrainProgress], str | None]


# -- the encoded training set ----------------------------------------------------------------
@dataclass
class EncodedSet:
    task: str  # "t2i" (captioned images) or "edit" (pairs)
    x0: torch.Tensor  # (N, 1, C, h, w) target latents
    refs: torch.Tensor | None  # (N, C, h, w) source latents of edit pairs
    states: torch.Tensor  # (N, L, 384) caption / instruction token states
    pooled: torch.Tensor  # (N, 384)
    empty_states: torch.Tensor  # (1, L, 384) the empty prompt, for caption dropout
    empty_pooled: torch.Tensor  # (1, 384)
    fingerprint: str

    def __len__(self) -> int:
        return self.x0.shape[0]

    def to(self, device) -> EncodedSet:
        move = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return EncodedSet(**move)


def _texts(examples: list[Example]) -> list[str]:
    return [e.caption if isinstance(e, CaptionedImage) else e.instruction for e in examples]


def _prepared(examples: list[Example], size: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """(targets, sources): the pictures cut to the grid; sources is empty for captioned images."""
    if isinstance(examples[0], CaptionedImage):
        return [prepare_image(e.image, size) for e in examples], []
    return [prepare_image(e.after, size) for e in examples], [prepare_image(e.before, size) for e in examples]


def fingerprint(examples: list[Example], size: int) -> str:
    """Identifies the training set as the model sees it (pixels after cropping, texts, size)."""
    h = hashlib.sha256(f"{size}:{type(examples[0]).__name__}".encode())
    targets, sources = _prepared(examples, size)
    for im, text in zip(targets, _texts(examples)):
        h.update(im.tobytes())
        h.update(text.encode())
    for im in sources:
        h.update(im.tobytes())
    return h.hexdigest()


@torch.no_grad()
def encode_examples(pipe, examples: list[Example], size: int) -> EncodedSet:
    """Latents and text states of the whole set (the autoencoder and text encoder stay frozen)."""
    validate_examples(examples, size)
    if size % pipe.grid:
        raise ValueError(
            f"the training size must be a multiple of the model's grid ({pipe.grid} px), got {size}"
        )
    targets, sources = _prepared(examples, size)

    def encode(images: list[Image.Image]) -> torch.Tensor:
        return (
            torch.cat(
                [
                    pipe.autoencoder.encode(images_to_tensor(images[i : i + 32], pipe.device))
                    for i in range(0, len(images), 32)
                ]
            )
            .float()
            .cpu()
        )

    states, pooled = pipe.text_encoder.encode(_texts(examples))
    empty_states, empty_pooled = pipe.text_encoder.encode([""])
    return EncodedSet(
        task="t2i" if not sources else "edit",
        x0=encode(targets)[:, None],
        refs=encode(sources) if sources else None,
        states=states.float().cpu(),
        pooled=pooled.float().cpu(),
        empty_states=empty_states.float().cpu(),
        empty_pooled=empty_pooled.float().cpu(),
        fingerprint=fingerprint(examples, size),
    )


def save_encoded(data: EncodedSet, path: Path) -> None:
    tensors = {k: v.contiguous() for k, v in vars(data).items() if isinstance(v, torch.Tensor)}
    _save_safetensors(tensors, path, {"task": data.task, "fingerprint": data.fingerprint})


def load_encoded(path: Path) -> EncodedSet:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no dict
    return EncodedSet(
        task=meta["task"], fingerprint=meta["fingerprint"], refs=tensors.pop("refs", None), **tensors
    )


# -- the trainable model ---------------------------------------------------------------------
def trainable_dit(base: nn.Module, config: FinetuneConfig) -> nn.Module:
    """A copy of the DiT with LoRA layers injected (only they train), or all weights trainable."""
    dit = copy.deepcopy(base)
    remove_adapters(dit)  # the copy carries the base weights, whatever was applied to `base`
    unpack_linears(dit)  # plain nn.Linear for training and for peft (kernels/packed.py)
    dit.requires_grad_(False)
    if config.method == "full":
        return dit.requires_grad_(True).train()
    from peft import LoraConfig, inject_adapter_in_model

    pattern = lora_target_regex(config.targets)
    targets = [n for n, m in dit.named_modules() if re.fullmatch(pattern, n)]
    if not targets:
        raise ValueError(f"no layer of this DiT matches the LoRA targets {config.targets}")
    for name in targets:
        if type(dit.get_submodule(name)) is not nn.Linear:
            raise ValueError(
                "fine-tuning needs the full-precision model: layer "
                f"{name} is {type(dit.get_submodule(name)).__name__} (load the model without --quantize)"
            )
    lora = LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, target_modules=pattern, lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):  # LoRA A's init is seeded; the caller's RNG is left alone
        torch.manual_seed(config.seed)
        dit = inject_adapter_in_model(lora, dit)
    for n, p in dit.named_parameters():
        p.requires_grad_("lora_" in n)
    return dit.train()


def extract_adapter(model: nn.Module, base: nn.Module, config: FinetuneConfig, metadata: dict) -> Adapter:
    """The trained change as an Adapter (LoRA factors, or full-weight deltas against `base`)."""
    meta = {
        **metadata,
        "method": config.method,
        "base_config": {k: v for k, v in getattr(base, "config", {}).items() if not k.startswith("_")},
        "training": config.to_dict(),
    }
    if config.method == "lora":
        from peft import get_peft_model_state_dict

        tensors = {k: v.detach().float().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
        return Adapter("lora", tensors, {**meta, "rank": config.rank, "alpha": config.lora_alpha})
    probe = copy.deepcopy(base)
    remove_adapters(probe)
    base_params = dict(probe.named_parameters())
    deltas = {}
    for name, p in model.named_parameters():
        delta = (p.detach().float() - base_params[name].detach().float().to(p.device)).cpu()
        if delta.abs().max() > 0:
            deltas[name] = delta
    return Adapter("full", deltas, meta)


# -- checkpoints (safetensors + JSON, never pickles) ------------------------------------------
def _save_safetensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    work_dir: Path,
    step: int,
    model: nn.Module,
    opt,
    losses: list[float],
    elapsed: float,
    data_fingerprint: str,
    config: FinetuneConfig,
) -> Path:
    """A new `ckpt-<step>` folder, then the `latest` pointer (atomic rename), then old folders go:
    a crash at any point leaves one complete checkpoint that `latest` names."""
    ck = work_dir / f"ckpt-{step:06d}"
    ck.mkdir(parents=True, exist_ok=True)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    _save_safetensors(trainable, ck / "trainable.safetensors")
    opt_tensors, opt_meta = _optimizer_to_files(opt)
    _save_safetensors(opt_tensors, ck / "optimizer.safetensors")
    state = {
        "step": step,
        "losses": losses,
        "elapsed": elapsed,
        "fingerprint": data_fingerprint,
        "config": config.to_dict(),
        "optimizer": opt_meta,
    }
    _write_text_atomic(ck / "state.json", json.dumps(state))
    _write_text_atomic(work_dir / "latest", ck.name)
    for old in work_dir.glob("ckpt-*"):
        if old.name != ck.name:
            shutil.rmtree(old, ignore_errors=True)
    return ck


def latest_checkpoint(work_dir: Path) -> Path | None:
    pointer = work_dir / "latest"
    if not pointer.exists():
        return None
    ck = work_dir / pointer.read_text().strip()
    return ck if (ck / "state.json").exists() else None


def checkpoint_step(work_dir: str | Path) -> int:
    """Steps already done in `work_dir` (0 when there is no checkpoint)."""
    ck = latest_checkpoint(Path(work_dir))
    return json.loads((ck / "state.json").read_text())["step"] if ck is not None else 0


# -- the loop ----------------------------------------------------------------------------------
def lr_at(step: int, config: FinetuneConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak at the last step."""
    warm = min(1.0, (step + 1) / max(1, min(config.warmup_steps, config.steps // 10)))
    progress = step / max(1, config.steps - 1)
    return config.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _step_generator(config: FinetuneConfig, step: int, rank: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed((config.seed * 1_000_003 + step) * 64 + rank)


def sample_prompts(examples: list[Example], config: FinetuneConfig) -> list[str]:
    if config.sample_prompts:
        return list(config.sample_prompts)[:MAX_SAMPLES]
    return _texts(examples)[: min(3, MAX_SAMPLES)]


@torch.no_grad()
def sample_images(
    pipe, dit: nn.Module, examples: list[Example], config: FinetuneConfig
) -> tuple[list, list[str]]:
    """Images from `dit` (the weights being trained) with the pipeline's sampler, fixed seeds."""
    from seedling.model.pipeline import SeedlingPipeline

    prompts = sample_prompts(examples, config)
    # "plain": leave the classes of the model being trained alone
    sampler = SeedlingPipeline(dit, pipe.autoencoder, pipe.text_encoder, pipe.settings, linear_kernel="plain")
    edit = isinstance(examples[0], EditPair)
    images = []
    for i, prompt in enumerate(prompts):
        source = [prepare_image(examples[i % len(examples)].before, config.size)] if edit else None
        out = sampler(
            prompt=prompt,
            task="edit" if edit else "t2i",
            images=source,
            seed=config.sample_seed + i,
            height=config.size,
            width=config.size,
            previews=False,
        )
        images.append(out.images[0])
    dit.train()
    return images, prompts


def finetune(
    pipe,
    examples: list[Example],
    config: FinetuneConfig,
    work_dir: str | Path,
    callback: Callback | None = None,
    base_dit: nn.Module | None = None,
    metadata: dict | None = None,
) -> FinetuneResult:
    """Train (or resume training of) an adapter on `examples`; see the module docstring.

    `pipe` provides the autoencoder, text encoder and sampler; `base_dit` (default `pipe.dit`, which
    is never modified) the weights to start from. `metadata` goes into the adapter file (name, ...).
    """
    from accelerate import Accelerator

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    base = base_dit if base_dit is not None else pipe.dit
    acc = Accelerator(cpu=pipe.device.type == "cpu")
    dev = acc.device

    # 1. the training set, encoded once per work folder
    data_fp = fingerprint(examples, config.size)
    ck = latest_checkpoint(work_dir)
    state = json.loads((ck / "state.json").read_text()) if ck is not None else None
    if state is not None and state["fingerprint"] != data_fp:
        raise ValueError(
            f"the checkpoint in {work_dir} was trained on other images; remove the folder to start over"
        )
    cache = work_dir / "data.safetensors"
    data = load_encoded(cache) if cache.exists() else None
    if data is None or data.fingerprint != data_fp:
        data = encode_examples(pipe, examples, config.size)
        if acc.is_main_process:
            save_encoded(data, cache)
    data = data.to(dev)

    # 2. model + optimiser, from the checkpoint when there is one
    model = trainable_dit(base, config).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0, betas=(0.9, 0.99))
    step, losses, elapsed = 0, [], 0.0
    if state is not None:
        trained = load_file(str(ck / "trainable.safetensors"), device=str(dev))
        missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in trained]
        if missing:
            raise ValueError(
                f"the checkpoint in {work_dir} does not match this method/rank ({missing[0]} missing)"
            )
        model.load_state_dict(trained, strict=False)
        opt.load_state_dict(
            _optimizer_from_files(load_file(str(ck / "optimizer.safetensors")), state["optimizer"])
        )
        step, losses, elapsed = state["step"], list(state["losses"]), float(state["elapsed"])
    model, opt = acc.prepare(model, opt)
    raw = acc.unwrap_model(model)

    def report(progress: TrainProgress) -> str | None:
        return callback(progress) if callback is not None and acc.is_main_process else None

    def checkpoint(at: int) -> None:
        if acc.is_main_process:
            save_checkpoint(work_dir, at, raw, opt, losses, elapsed, data_fp, config)

    if step == 0 and config.sample_every:  # what the base model makes of the sample prompts
        samples, prompts = sample_images(pipe, raw, examples, config)
        if (
            report(TrainProgress(0, config.steps, None, lr_at(0, config), 0.0, samples, prompts, losses))
            == CANCEL
        ):
            return FinetuneResult("cancelled", 0, losses, elapsed)

    N, B = len(data), config.batch_size
    model.train()
    last_saved = step
    while step < config.steps:
        t0 = time.perf_counter()
        lr = lr_at(step, config)
        for g in opt.param_groups:
            g["lr"] = lr
        gen = _step_generator(config, step, acc.process_index, dev)
        idx = (
            torch.randperm(N, generator=gen, device=dev)[:B]
            if B <= N
            else torch.randint(N, (B,), generator=gen, device=dev)
        )
        drop = torch.rand(B, generator=gen, device=dev) < config.caption_dropout
        states = torch.where(drop[:, None, None], data.empty_states, data.states[idx])
        pooled = torch.where(drop[:, None], data.empty_pooled, data.pooled[idx])
        refs = [data.refs[idx]] if data.refs is not None else []

        def model_fn(x, t, d, sl, states=states, pooled=pooled, refs=refs):
            return model(x, t, states[sl], pooled[sl], data.task, [r[sl] for r in refs], None, d=d)

        loss, _ = shortcut_flow_loss(model_fn, data.x0[idx], config.shortcut_fraction, generator=gen)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        losses.append(float(loss.item()))
        elapsed += time.perf_counter() - t0

        done = step == config.steps
        samples, prompts = None, []
        if done or (config.sample_every and step % config.sample_every == 0):
            samples, prompts = sample_images(pipe, raw, examples, config)
        if step % config.checkpoint_every == 0 or done:
            checkpoint(step)
            last_saved = step
        action = report(TrainProgress(step, config.steps, losses[-1], lr, elapsed, samples, prompts, losses))
        if action == CANCEL:
            return FinetuneResult("cancelled", step, losses, elapsed)
        if action == PAUSE and not done:
            if last_saved != step:
                checkpoint(step)
            return FinetuneResult("paused", step, losses, elapsed)

    meta = {
        **(metadata or {}),
        "steps": step,
        "examples": N,
        "task": data.task,
        "final_loss": FinetuneResult("done", step, losses, elapsed).final_loss,
    }
    adapter = extract_adapter(raw, base, config, meta)
    return FinetuneResult("done", step, losses, elapsed, adapter)


# -- command line --------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Fine-tune a Seedling model on a folder or zip of images.")
    p.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model folder (SeedlingPipeline.from_pretrained)"
    )
    p.add_argument("--data", required=True, help="folder or .zip: images with .txt captions, or edit pairs")
    p.add_argument(
        "--out", required=True, help="adapter file to write (.safetensors; a .json goes beside it)"
    )
    p.add_argument("--work-dir", default=None, help="checkpoints (default: <out>.work); rerun to resume")
    defaults = FinetuneConfig()
    p.add_argument("--method", default=defaults.method, choices=("lora", "full"))
    p.add_argument("--rank", type=int, default=defaults.rank)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--sample-every", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from seedling.model.pipeline import SeedlingPipeline

    data = Path(args.data)
    examples = load_zip(data, data.name) if data.suffix.lower() == ".zip" else load_folder(data)
    validate_examples(examples)
    config = FinetuneConfig(
        method=args.method,
        rank=args.rank,
        alpha=args.alpha,
        steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        sample_every=args.sample_every,
        seed=args.seed,
    )
    pipe = SeedlingPipeline.from_pretrained(args.model)
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out.with_suffix(".work")

    def show(pr: TrainProgress) -> None:
        if pr.loss is not None and (pr.step % 10 == 0 or pr.step == pr.total):
            print(
                f"step {pr.step}/{pr.total} loss {pr.loss:.4f} lr {pr.lr:.2e} {pr.elapsed:.0f}s", flush=True
            )

    result = finetune(pipe, examples, config, work, callback=show, metadata={"name": out.stem})
    save_adapter(result.adapter, out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out} ({result.adapter.num_parameters()} parameters, final loss {result.final_loss:.4f})")


if __name__ == "__main__":
    main()
