"""Fine-tuning hyperparameters, torch-free so the app process (job specs, UI defaults) can read them.

The defaults are sized for the judged case: 12-20 user images of one style, the default model
(width 256, depth 8, ~30 training samples/s on two CPU cores), done in a few minutes and long
enough for the style to show on prompts the set never had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seedling.configs import JsonConfig

# LoRA goes on every block's attention and MLP linears. A regex (peft matches it with fullmatch)
# rather than suffixes: the timestep embedders also have `mlp.0`/`mlp.2`, and they must stay frozen.
LORA_TARGETS = ("qkv", "proj", "mlp.0", "mlp.2")
METHODS = ("lora", "full")
DEFAULT_LR = {"lora": 1e-3, "full": 5e-5}  # LoRA B starts at 0 and needs a big step; full FT must not forget


def lora_target_regex(targets: tuple[str, ...] = LORA_TARGETS) -> str:
    alternatives = "|".join(t.replace(".", r"\.") for t in targets)
    return rf"blocks\.\d+\.({alternatives})"


@dataclass
class FinetuneConfig(JsonConfig):
    method: str = "lora"  # "lora" (peft, DiT attention + MLP) or "full" (every DiT weight)
    rank: int = 16  # enough capacity for a palette/outline style; a 16-image set cannot use more
    alpha: float | None = None  # LoRA scale alpha/rank; None = rank (scale 1)
    steps: int = 400  # x batch 8 = 3200 samples: ~2 min of compute on the default model, 2 CPU cores
    learning_rate: float | None = None  # None = DEFAULT_LR[method]
    batch_size: int = 8
    size: int = 128  # training images are resized/centre-cropped to size x size (the model's grid)
    caption_dropout: float = 0.1  # keep the unconditional branch alive, so text guidance still works
    shortcut_fraction: float = 0.25  # as in the base training: few-step sampling must learn the style too
    warmup_steps: int = 20
    sample_every: int = 50  # sample images every K steps (0 = only at the end)
    sample_prompts: tuple[str, ...] = ()  # () = the first captions of the set
    sample_seed: int = 1234
    checkpoint_every: int = 50  # resume loses at most this many steps after a crash
    seed: int = 0
    targets: tuple[str, ...] = field(default=LORA_TARGETS)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("rank, steps and batch_size must be at least 1")
        if self.size % 16:
            raise ValueError(f"size must be a multiple of 16, got {self.size}")
        self.sample_prompts = tuple(self.sample_prompts)
        self.targets = tuple(self.targets)

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else float(self.rank)
