"""What the studio's model classes share on top of diffusers' `ModelMixin` + `ConfigMixin`.

save_pretrained / from_pretrained are the library's (config.json + diffusion_pytorch_model.safetensors).
Two things are ours:
- folders written before the move to diffusers name their weights `model.safetensors`; they still
  load (the shipped assets/default is one: its weights stay as they are); seedling/model/convert.py
  brings such a folder over to the library's layout.
- models load in full precision by default (diffusers' philosophy): a folder may store 16-bit
  weights to stay small, the CPU runs fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file, save_file

from seedling.atomic import write_atomic

LEGACY_WEIGHTS_NAME = "model.safetensors"


def weights_path(folder: str | Path) -> Path:
    """The weights file of a model folder, in the library's name or the pre-diffusers one."""
    folder = Path(folder)
    library = folder / SAFETENSORS_WEIGHTS_NAME
    return library if library.exists() or not (folder / LEGACY_WEIGHTS_NAME).exists() else folder / LEGACY_WEIGHTS_NAME


class SeedlingModelMixin(ModelMixin, ConfigMixin):
    config_name = "config.json"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, device=None, **kwargs):
        """diffusers' from_pretrained (fp32 unless `torch_dtype` says otherwise); `device`: where to
        put the model (kept from the pre-diffusers API)."""
        dtype = kwargs.setdefault("torch_dtype", torch.float32)
        folder = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
        weights = weights_path(folder)
        if folder.is_dir() and weights.name == LEGACY_WEIGHTS_NAME:
            model = cls.from_config(cls.load_config(folder))
            model.load_state_dict({k: v.to(dtype) for k, v in load_file(str(weights)).items()})
            model = model.to(dtype)
        else:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if device is not None:
            model = model.to(device)
        return model.eval()

    def save_pretrained(self, save_directory, *args, dtype: torch.dtype | None = None, **kwargs):
        """diffusers' save_pretrained; `dtype` (e.g. torch.float16) stores a reduced-precision copy
        of the weights and leaves the model in memory as it is."""
        if dtype is None or (dtype == torch.float32 and all(p.dtype == dtype for p in self.state_dict().values())):
            return super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.save_config(folder)
        state = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}
        write_atomic(folder / SAFETENSORS_WEIGHTS_NAME, lambda f: save_file(state, str(f), metadata={"format": "pt"}))
