"""A small, high-compression convolutional autoencoder trained from scratch.

f8 spatial compression with 8 latent channels: a 128x128 RGB image becomes a (8, 16, 16) latent,
which the DiT patchifies with patch 2 into 64 tokens (Seedream's point: sequence length ~ 1/f^2).
The first and last 2x of the resolution change are pixel (un)shuffles instead of convolutions at
full resolution, which makes the network about 4x cheaper on CPU at the cost of little quality on
flat-coloured icons.

The latent is deterministic (no KL term); a small L2 penalty keeps its scale bounded and
`latent_shift`/`latent_scale` (measured on data after training) normalise it to ~N(0, 1) for
diffusion. Both live in the config so a saved folder is self-describing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # noqa: F401  (diffusers' pipeline loader finds the base class here)
from diffusers.configuration_utils import register_to_config

from seedling.configs import JsonConfig
from seedling.model.modeling import SeedlingModelMixin


@dataclass
class AutoencoderConfig(JsonConfig):
    latent_channels: int = 8  # 8 channels x f8: 48x compression, enough for flat icons and big text
    channels: tuple[int, ...] = (32, 64, 128)  # widths at 1/2, 1/4, 1/8 resolution
    groups: int = 8  # GroupNorm groups
    # Normalisation applied by encode()/undone by decode(): z_norm = (z - shift) * scale.
    latent_shift: float = 0.0
    latent_scale: float = 1.0

    @property
    def factor(self) -> int:
        return 2 ** len(self.channels)



AE_CONFIGS = {
    "tiny": AutoencoderConfig(latent_channels=4, channels=(8, 16, 16), groups=4),
    "default": AutoencoderConfig(),
}


class ResBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ch_in)
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, 3, padding=1)
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c = cfg.channels
        self.stem = nn.Conv2d(3 * 4, c[0], 3, padding=1)  # after 2x pixel-unshuffle
        layers: list[nn.Module] = []
        for i, ch in enumerate(c):
            ch_in = c[i - 1] if i > 0 else c[0]
            if i > 0:
                layers.append(nn.Conv2d(ch_in, ch_in, 3, stride=2, padding=1))
            layers.append(ResBlock(ch_in, ch, cfg.groups))
        self.body = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(cfg.groups, c[-1])
        self.out = nn.Conv2d(c[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [-1, 1]
        h = self.stem(F.pixel_unshuffle(x, 2))  # (B, c0, H/2, W/2)
        h = self.body(h)  # (B, c[-1], H/f, W/f)
        return self.out(F.silu(self.norm(h)))  # (B, C, H/f, W/f)


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c = list(reversed(cfg.channels))
        self.stem = nn.Conv2d(cfg.latent_channels, c[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, ch in enumerate(c):
            ch_in = c[i - 1] if i > 0 else c[0]
            if i > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch_in, ch_in, 3, padding=1)]
            layers.append(ResBlock(ch_in, ch, cfg.groups))
        self.body = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(cfg.groups, c[-1])
        self.out = nn.Conv2d(c[-1], 3 * 4, 3, padding=1)  # before 2x pixel-shuffle

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w)
        h = self.body(self.stem(z))
        return F.pixel_shuffle(self.out(F.silu(self.norm(h))), 2)  # (B, 3, H, W)


class NormalisedLatents:
    """encode/decode around a model's encode_raw/decode_raw with the latent shift/scale of its
    config (the v1 autoencoder and the DC-AE one, model/dcae.py, share it); forward is the raw
    round trip that training uses."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> normalised latents (B, C, H/f, W/f)."""
        return (self.encode_raw(x) - self.config.latent_shift) * self.config.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> images in about [-1, 1]."""
        return self.decode_raw(z / self.config.latent_scale + self.config.latent_shift)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode_raw(x)
        return self.decode_raw(z), z


class Autoencoder(NormalisedLatents, SeedlingModelMixin):
    """config.json holds AutoencoderConfig's fields; `Autoencoder(AutoencoderConfig(...))` also works.
    After training, record the measured normalisation with
    `register_to_config(latent_shift=..., latent_scale=...)`."""

    @register_to_config
    def __init__(self, latent_channels: int = 8, channels: tuple[int, ...] = (32, 64, 128), groups: int = 8,
                 latent_shift: float = 0.0, latent_scale: float = 1.0):
        super().__init__()
        if isinstance(latent_channels, AutoencoderConfig):  # the pre-diffusers call: Autoencoder(cfg)
            self.register_to_config(**latent_channels.to_dict())
        cfg = AutoencoderConfig.from_dict({k: self.config[k] for k in AutoencoderConfig.__dataclass_fields__})
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def factor(self) -> int:
        return 2 ** len(self.config.channels)

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def autoencoder_folder(path: str | Path) -> Path:
    """An autoencoder folder given as itself or as a pipeline folder holding `autoencoder/`."""
    path = Path(path)
    return path / "autoencoder" if (path / "autoencoder" / "config.json").exists() else path


def images_to_tensor(images, device="cpu") -> torch.Tensor:
    """List of PIL/uint8 HxWx3 arrays, or a uint8 (B, H, W, 3) tensor -> (B, 3, H, W) float in [-1, 1]."""
    import numpy as np

    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 (B, H, W, 3) tensor, got {images.dtype} {tuple(images.shape)}")
        return images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    arrs = [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im, dtype=np.uint8) for im in images]
    t = torch.from_numpy(np.stack(arrs)).to(device)
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_images(x: torch.Tensor):
    """(B, 3, H, W) in [-1, 1] -> list of PIL RGB images."""
    from PIL import Image

    arr = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


field  # re-exported for configs that need default factories
