"""Adapters: fine-tuned weight changes of the DiT, as files and as reversible edits of a live model.

Files, two layouts; `load_adapter` reads both, `save_adapter` writes the one its path names:
- a folder (LoRA only): peft's `adapter_config.json` + `adapter_model.safetensors`, which
  `PeftModel.from_pretrained(dit, folder)` loads; the studio's metadata rides in the safetensors
  header ("seedling"), which peft ignores.
- `<name>.safetensors` with `<name>.json` beside it (the same JSON is in the header, so the tensor
  file alone is enough): the studio's single-file form, and the only one for full fine-tunes.
- kind "lora": peft's key names, `<module>.lora_A.weight` (r, in) and `<module>.lora_B.weight`
  (out, r) for every adapted linear; its weight change is alpha / r * B @ A.
- kind "full": `<parameter>` -> (fine-tuned - base) for every DiT parameter that training changed.

Applying (`set_adapters`) adds strength x change to the weights and keeps each touched original
aside, so removing copies the original bits back (an exact round trip) and a merged adapter costs
nothing per step. Linears without a float weight (quantized inference layers) get a forward hook
that adds the LoRA branch instead. Nothing here edits the pipeline or the DiT's code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from seedling.atomic import write_all_atomic
from seedling.kernels.packed import is_linear

FORMAT = "seedling-adapter/1"
PEFT_CONFIG_NAME = "adapter_config.json"  # peft's file names (peft.utils.CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME)
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # peft's key prefix: the PeftModel wrapping the DiT
KINDS = ("lora", "full")
_STATE_ATTR = "_seedling_adapters"


@dataclass
class Adapter:
    kind: str  # "lora" | "full"
    tensors: dict[str, torch.Tensor] = field(repr=False)
    metadata: dict = field(default_factory=dict)  # name, rank, alpha, base model, training params, loss

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown adapter kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "lora":
            for module in self.lora_modules():
                if f"{module}.lora_B.weight" not in self.tensors:
                    raise ValueError(f"LoRA adapter has lora_A for {module} but no lora_B")

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "adapter"))

    @property
    def rank(self) -> int | None:
        return int(self.metadata["rank"]) if self.kind == "lora" else None

    @property
    def scale(self) -> float:
        """LoRA's alpha / r (peft's `scaling`); 1 for a full adapter."""
        if self.kind != "lora":
            return 1.0
        return float(self.metadata["alpha"]) / float(self.metadata["rank"])

    def lora_modules(self) -> list[str]:
        suffix = ".lora_A.weight"
        return sorted(k[: -len(suffix)] for k in self.tensors if k.endswith(suffix))

    def lora_pair(self, module: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tensors[f"{module}.lora_A.weight"], self.tensors[f"{module}.lora_B.weight"]

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


# -- files ---------------------------------------------------------------------------------------
def save_adapter(adapter: Adapter, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """`path` ending in .safetensors: that file and its .json sidecar. Any other path: a peft
    adapter folder (LoRA only). Each file is written atomically (temp file + rename). `dtype`:
    the tensors' precision on disk (a shipped adapter is stored in float16, as the model is)."""
    path = Path(path)
    meta = {"format": FORMAT, "kind": adapter.kind, **adapter.metadata}
    header = {"seedling": json.dumps(meta, sort_keys=True), "format": "pt"}
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in adapter.tensors.items()}
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(meta, indent=2, sort_keys=True)
        write_all_atomic({path: lambda f: save_file(tensors, str(f), metadata=header),
                       path.with_suffix(".json"): lambda f: f.write_text(text)})
        return path
    if adapter.kind != "lora":
        raise ValueError("only LoRA adapters have peft's folder form; save a full fine-tune as a .safetensors file")
    if path.suffix:
        raise ValueError(f"an adapter is a .safetensors file or a folder, not {path.name!r}")
    path.mkdir(parents=True, exist_ok=True)
    config = peft_config(adapter).to_dict()
    config["peft_type"] = str(config["peft_type"].value if hasattr(config["peft_type"], "value") else config["peft_type"])
    config["target_modules"] = sorted(config["target_modules"])
    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    prefixed = {PEFT_PREFIX + k: v for k, v in tensors.items()}
    write_all_atomic({path / PEFT_WEIGHTS_NAME: lambda f: save_file(prefixed, str(f), metadata=header),
                   path / PEFT_CONFIG_NAME: lambda f: f.write_text(text)})
    return path


def peft_config(adapter: Adapter):
    """The peft LoraConfig equal to a LoRA adapter: its rank and alpha on exactly its layers."""
    from peft import LoraConfig

    return LoraConfig(r=adapter.rank, lora_alpha=float(adapter.metadata["alpha"]), lora_dropout=0.0,
                      target_modules=adapter.lora_modules(), bias="none",
                      base_model_name_or_path=adapter.metadata.get("base_model"))


def load_adapter(path: str | Path) -> Adapter:
    """An adapter from a .safetensors file (with or without its sidecar) or a peft folder; a peft
    folder not written by the studio loads too (its metadata then comes from adapter_config.json)."""
    path = Path(path)
    if path.is_dir():
        return _load_peft_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file {path} does not exist")
    if path.name == PEFT_WEIGHTS_NAME and (path.parent / PEFT_CONFIG_NAME).is_file():
        return _load_peft_folder(path.parent)
    header, tensors = _read(path)
    if header is None:
        raise ValueError(f"{path.name} is not a Seedling adapter (no 'seedling' metadata in its header)")
    meta = json.loads(header)
    if meta.pop("format", None) != FORMAT:
        raise ValueError(f"{path.name}: unsupported adapter format")
    return Adapter(kind=meta.pop("kind"), tensors=tensors, metadata=meta)


def _read(path: Path) -> tuple[str | None, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        header = (f.metadata() or {}).get("seedling")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no dict
    return header, tensors


def _load_peft_folder(folder: Path) -> Adapter:
    if not (folder / PEFT_CONFIG_NAME).is_file() or not (folder / PEFT_WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder} is no peft adapter folder ({PEFT_CONFIG_NAME} + {PEFT_WEIGHTS_NAME})")
    config = json.loads((folder / PEFT_CONFIG_NAME).read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder.name}: only LoRA peft adapters apply to the DiT, not {config.get('peft_type')}")
    header, tensors = _read(folder / PEFT_WEIGHTS_NAME)
    tensors = {k.removeprefix(PEFT_PREFIX): v for k, v in tensors.items()}
    meta = json.loads(header) if header is not None else {"name": folder.name}
    meta.pop("format", None)
    meta.pop("kind", None)
    meta.setdefault("rank", config["r"])
    meta.setdefault("alpha", config["lora_alpha"])
    if (meta["rank"], float(meta["alpha"])) != (config["r"], float(config["lora_alpha"])):
        raise ValueError(f"{folder.name}: its header and adapter_config.json disagree on rank/alpha")
    return Adapter(kind="lora", tensors=tensors, metadata=meta)


def delete_adapter_files(path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        for name in (PEFT_CONFIG_NAME, PEFT_WEIGHTS_NAME):
            (path / name).unlink(missing_ok=True)
        path.rmdir()
        return
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


# -- applying to a live DiT ----------------------------------------------------------------------
@dataclass
class _AppliedState:
    applied: list = field(default_factory=list)  # the (Adapter, strength) pairs, in order
    originals: dict[str, torch.Tensor] = field(default_factory=dict)  # parameter name -> original copy
    hooks: list = field(default_factory=list)


def _state(dit: nn.Module) -> _AppliedState:
    state = getattr(dit, _STATE_ATTR, None)
    if state is None:
        state = _AppliedState()
        setattr(dit, _STATE_ATTR, state)
    return state


def _has_float_weight(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    return isinstance(w, torch.Tensor) and w.is_floating_point() and is_linear(module)


def _lora_plan(
    dit: nn.Module, adapter: Adapter
) -> Iterator[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """(module name, module, A, B) for every LoRA layer, after checking it fits this DiT."""
    for name in adapter.lora_modules():
        try:
            module = dit.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"adapter {adapter.name!r} changes layer {name}, which this model does not have: "
                "it was trained for another model"
            ) from None
        a, b = adapter.lora_pair(name)
        in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
        if (a.shape[1], b.shape[0]) != (in_f, out_f) or a.shape[0] != b.shape[1]:
            raise ValueError(
                f"adapter {adapter.name!r} does not fit layer {name}: it maps {a.shape[1]}->{b.shape[0]}, "
                f"the model's layer {in_f}->{out_f} (trained for another model)"
            )
        yield name, module, a, b


def _lora_hook(a: torch.Tensor, b: torch.Tensor, factor: float):
    def hook(module, inputs, output):
        x = inputs[0]
        aa, bb = a.to(x.device), b.to(x.device)  # no-ops once the model sits on one device
        return output + factor * F.linear(F.linear(x.to(aa.dtype), aa), bb).to(output.dtype)

    return hook


def set_adapters(dit: nn.Module, adapters: Sequence[tuple[Adapter, float]]) -> None:
    """Make the DiT's weights original + sum(strength_i x change_i) for exactly these adapters
    (replacing whatever was applied before). An empty list restores the original weights bit for bit."""
    # Check everything before touching any weight: a bad adapter leaves the model as it was.
    params = dict(dit.named_parameters())
    plans = []
    for adapter, strength in adapters:
        strength = float(strength)
        if adapter.kind == "lora":
            plans.append((adapter, strength, list(_lora_plan(dit, adapter))))
        else:
            for pname, delta in adapter.tensors.items():
                if pname not in params:
                    raise ValueError(
                        f"adapter {adapter.name!r} changes {pname}, which this model does not have "
                        "(a full fine-tune applies only to the full-precision model it was trained from)"
                    )
                if params[pname].shape != delta.shape:
                    raise ValueError(
                        f"adapter {adapter.name!r} does not fit {pname} (trained for another model)"
                    )
            plans.append((adapter, strength, None))

    remove_adapters(dit)
    state = _state(dit)
    state.applied = [(adapter, strength) for adapter, strength, _ in plans]
    with torch.no_grad():

        def add_(pname: str, change: torch.Tensor) -> None:
            p = params[pname]
            if pname not in state.originals:
                state.originals[pname] = p.detach().clone()
            p.add_(change.to(device=p.device, dtype=p.dtype))

        for adapter, strength, lora in plans:
            if strength == 0.0:
                continue
            if lora is None:
                for pname, delta in adapter.tensors.items():
                    add_(pname, strength * delta.float())
                continue
            for name, module, a, b in lora:
                factor = strength * adapter.scale
                if _has_float_weight(module):
                    add_(f"{name}.weight", factor * (b.float() @ a.float()))
                else:  # quantized layer: no float weight to merge into
                    hook = _lora_hook(a.float(), b.float(), factor)
                    state.hooks.append(module.register_forward_hook(hook))


def merge_adapter(dit: nn.Module, adapter: Adapter) -> None:
    """Add an adapter's change to the DiT's weights for good (nothing to restore): a run that goes
    on from a task adapter starts from the weights it made. Float weights only."""
    set_adapters(dit, [(adapter, 1.0)])
    state = _state(dit)
    if state.hooks:
        remove_adapters(dit)
        raise ValueError(f"adapter {adapter.name!r} cannot be merged into quantized layers: use the float model")
    state.originals.clear()
    state.applied = []


def remove_adapters(dit: nn.Module) -> None:
    """Put back the original weights (exact bits) and drop any hooks."""
    state = getattr(dit, _STATE_ATTR, None)
    if state is None:
        return
    params = dict(dit.named_parameters())
    with torch.no_grad():
        for pname, original in state.originals.items():
            params[pname].copy_(original)
    for handle in state.hooks:
        handle.remove()
    state.originals.clear()
    state.hooks.clear()
    state.applied = []


def active_adapters(dit: nn.Module) -> list[tuple[str, float]]:
    state = getattr(dit, _STATE_ATTR, None)
    return [(adapter.name, strength) for adapter, strength in state.applied] if state is not None else []


@contextmanager
def applied_adapters(dit: nn.Module, adapters: Sequence[tuple[Adapter, float]]):
    """Adapters on for the duration of the block; the original weights afterwards, even on error."""
    set_adapters(dit, adapters)
    try:
        yield dit
    finally:
        remove_adapters(dit)


@contextmanager
def added_adapters(dit: nn.Module, extra: Sequence[tuple[Adapter, float]]):
    """`extra` on top of whatever adapters are applied now, for the duration of the block; then
    exactly those again (the same weights bit for bit). The pipeline adds a task's own adapter
    this way, over the user's adapters of the job. An adapter already applied (the same object)
    is not added again: a caller may hold a task's adapter over many calls that each add it."""
    before = list(_state(dit).applied)
    extra = [(a, s) for a, s in extra if not any(a is b for b, _ in before)]
    if not extra:
        yield dit
        return
    set_adapters(dit, before + list(extra))
    try:
        yield dit
    finally:
        set_adapters(dit, before)


def low_rank(adapter: Adapter, rank: int) -> Adapter:
    """A LoRA of `rank` that approximates a full adapter: each changed linear weight's truncated
    SVD (B = U S, A = V^T); the other changes (biases, norms, embeddings) are left out. A full
    adapter cannot be added to quantized layers (they have no float weight); a LoRA can, as a
    forward hook. Measured on the text adapter: docs/data.md, "Text"."""
    if adapter.kind != "full":
        raise ValueError(f"low_rank turns a full adapter into a LoRA; {adapter.name!r} is already {adapter.kind}")
    tensors = {}
    for name, delta in adapter.tensors.items():
        if delta.ndim != 2 or not name.endswith(".weight"):
            continue
        r = min(rank, *delta.shape)  # a narrower weight is factored exactly
        u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
        module = name[: -len(".weight")]
        tensors[f"{module}.lora_A.weight"] = vh[:r].contiguous()
        tensors[f"{module}.lora_B.weight"] = (u[:, :r] * s[:r]).contiguous()
    if not tensors:
        raise ValueError(f"adapter {adapter.name!r} changes no linear weight: nothing for a LoRA to carry")
    # alpha = rank: scale 1, so B @ A is the change itself whatever a module's own r is
    meta = {**adapter.metadata, "rank": rank, "alpha": float(rank), "low_rank_of": "full"}
    return Adapter("lora", tensors, meta)
