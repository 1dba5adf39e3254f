"""A deep-compression autoencoder in the style of DC-AE (Chen et al. 2024, the autoencoder of SANA).

f32 with 32 latent channels: a 512x512 RGB image becomes a (32, 16, 16) latent, the same 64 tokens
at patch 2 that the f8 autoencoder gives at 128 px (Seedream's point: sequence length ~ 1/f^2).

What makes deep compression train is DC-AE's residual autoencoding: every change of resolution
has a parameter-free shortcut that moves pixels between space and channels. Going down,
`pixel_unshuffle` turns a 2x2 neighbourhood into 4x the channels and groups of them are averaged
to the new width; going up, channels are repeated and `pixel_shuffle`d back into space. The
convolutions then learn only a residual on top of an (almost) information-preserving rearrangement,
so gradients reach the deep stages at f32 as easily as at f8. The encoder's output and the
decoder's input have the same kind of shortcut (channel averaging / repetition).

Unlike DC-AE there are no attention blocks (the studio decodes on 2 CPU cores; convolutions are
the cheap, any-size operator) and the decoder is narrow at high resolution: the first and last 2x
are pixel (un)shuffles, so no convolution runs at full resolution. The latent is deterministic
(no KL); `latent_shift`/`latent_scale`, measured after training, normalise it for diffusion.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from seedling.configs import JsonConfig
from seedling.model.autoencoder import Autoencoder, NormalisedLatents, autoencoder_folder
from seedling.model.modeling import SeedlingModelMixin


@dataclass
class DCAEConfig(JsonConfig):
    latent_channels: int = 32  # 32 channels x f32: 96x fewer numbers than pixels, DC-AE's f32c32
    # Widths per stage, finest first: stage i runs at 1/2^(i+1) of the image, so len = log2(f).
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    enc_depth: tuple[int, ...] = (1, 1, 1, 2, 2)  # residual blocks per stage
    dec_channels: tuple[int, ...] = (16, 32, 64, 128, 256)  # narrow where the pixels are many
    dec_depth: tuple[int, ...] = (0, 1, 1, 2, 2)
    latent_shift: float = 0.0
    latent_scale: float = 1.0


DCAE_CONFIGS = {
    # Tests: the same structure at a width that runs in milliseconds.
    "tiny-f32": DCAEConfig(latent_channels=8, enc_channels=(8, 8, 16, 16, 16), enc_depth=(0, 1, 0, 1, 1),
                           dec_channels=(4, 8, 8, 16, 16), dec_depth=(0, 0, 1, 0, 1)),
    "f8c8": DCAEConfig(latent_channels=8, enc_channels=(32, 64, 128), enc_depth=(1, 1, 2),
                       dec_channels=(16, 64, 128), dec_depth=(0, 1, 2)),
    "f16c16": DCAEConfig(latent_channels=16, enc_channels=(32, 64, 128, 256), enc_depth=(1, 1, 1, 2),
                         dec_channels=(16, 32, 128, 256), dec_depth=(0, 1, 1, 2)),
    "f32c32": DCAEConfig(),
    # The same f32 network with twice the latent channels: 48x compression, a 16x16 latent at 512 px
    # still (64 tokens at patch 2), each token 4x4x64 = 256 numbers.
    "f32c64": DCAEConfig(latent_channels=64),
}


class ChannelRMSNorm(nn.Module):
    """RMS norm over the channels of each pixel (DC-AE's choice): no batch statistics, so a model
    behaves the same at batch 1 and on any image size."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps) * self.weight


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.norm = ChannelRMSNorm(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv2(F.silu(self.conv1(x))))


def shortcut_taps(shape: tuple[int, int, int, int], out_idx, in_idx, ky, kx, value: float) -> torch.Tensor:
    """A (out, in, 3, 3) conv weight that is `value` at [out_idx, in_idx, ky, kx] and 0 elsewhere.

    Every shortcut below is linear and reads pixels a 3x3 conv on the same grid also reads, so it
    *is* such a conv: adding its taps to the conv's weight runs the block as one convolution,
    instead of the conv, a rearrangement of the input, a second (un)shuffle and an add. The sum is
    the same function (fp32 rounding apart: 4e-6 on a decoded 512 px image) and trains the same, since
    the taps are constants. Kept as a non-persistent buffer: the saved weights are the convs' own.
    """
    w = torch.zeros(shape)
    w[out_idx, in_idx, ky, kx] = value
    return w


def repeat_taps(out_ch: int, in_ch: int) -> torch.Tensor:
    """`x.repeat_interleave(out_ch // in_ch, dim=1)` as conv taps: output channel o is input o // r."""
    o = torch.arange(out_ch)
    return shortcut_taps((out_ch, in_ch, 3, 3), o, o // (out_ch // in_ch), 1, 1, 1.0)


def group_mean_taps(out_ch: int, in_ch: int) -> torch.Tensor:
    """`x.unflatten(1, (-1, g)).mean(2)` as conv taps: output l averages inputs l*g .. l*g+g-1."""
    i = torch.arange(in_ch)
    g = in_ch // out_ch
    return shortcut_taps((out_ch, in_ch, 3, 3), i // g, i, 1, 1, 1.0 / g)


class DownBlock(nn.Module):
    """2x down: a stride-2 conv plus the space-to-channel shortcut (pixel_unshuffle, group mean)."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, ch_out, 3, stride=2, padding=1)
        self.group = 4 * ch_in // ch_out
        # pixel_unshuffle's channel c*4 + dy*2 + dx is input pixel (2i+dy, 2j+dx) of channel c: the
        # stride-2 conv's tap (1+dy, 1+dx) at output (i, j). Groups of `group` of them are averaged.
        u = torch.arange(4 * ch_in)
        taps = shortcut_taps((ch_out, ch_in, 3, 3), u // self.group, u // 4, 1 + (u % 4) // 2, 1 + u % 2,
                             1.0 / self.group)
        self.register_buffer("shortcut", taps, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W)
        # = self.conv(x) + pixel_unshuffle(x, 2).unflatten(1, (-1, group)).mean(2); (B, Cout, H/2, W/2)
        return F.conv2d(x, self.conv.weight + self.shortcut, self.conv.bias, stride=2, padding=1)


class UpBlock(nn.Module):
    """2x up: a conv to 4x the channels, pixel_shuffle, plus the channel-to-space shortcut."""

    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.conv = nn.Conv2d(ch_in, 4 * ch_out, 3, padding=1)
        self.repeats = 4 * ch_out // ch_in
        self.register_buffer("shortcut", repeat_taps(4 * ch_out, ch_in), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, h, w)
        # = pixel_shuffle(self.conv(x), 2) + pixel_shuffle(x.repeat_interleave(repeats, dim=1), 2)
        y = F.conv2d(x, self.conv.weight + self.shortcut, self.conv.bias, padding=1)  # (B, 4 Cout, h, w)
        return F.pixel_shuffle(y, 2)  # (B, Cout, 2h, 2w)


def _check_widths(name: str, channels: tuple[int, ...], depth: tuple[int, ...], latent: int) -> None:
    if len(channels) != len(depth) or len(channels) < 1:
        raise ValueError(f"{name}_channels and {name}_depth need one entry per stage, got {channels} and {depth}")
    for a, b in itertools.pairwise(channels):
        if (4 * a) % b or (4 * b) % a:
            raise ValueError(f"{name}_channels {channels}: neighbouring widths {a}, {b} must divide 4x each other "
                             "(the space/channel shortcuts group or repeat whole channels)")
    if channels[-1] % latent:
        raise ValueError(f"{name}_channels[-1] = {channels[-1]} must be a multiple of latent_channels = {latent}")


class DCEncoder(nn.Module):
    def __init__(self, cfg: DCAEConfig):
        super().__init__()
        c = cfg.enc_channels
        self.stem = nn.Conv2d(3 * 4, c[0], 3, padding=1)  # after a 2x pixel_unshuffle
        stages: list[nn.Module] = []
        for i, (ch, n) in enumerate(zip(c, cfg.enc_depth)):
            blocks = [DownBlock(c[i - 1], ch)] if i else []
            stages.append(nn.Sequential(*blocks, *(ResBlock(ch) for _ in range(n))))
        self.stages = nn.Sequential(*stages)
        self.out = nn.Conv2d(c[-1], cfg.latent_channels, 3, padding=1)
        self.out_group = c[-1] // cfg.latent_channels
        self.register_buffer("out_shortcut", group_mean_taps(cfg.latent_channels, c[-1]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [-1, 1]
        h = self.stages(self.stem(F.pixel_unshuffle(x, 2)))  # (B, C, H/f, W/f)
        # = self.out(h) + h.unflatten(1, (-1, out_group)).mean(2); (B, latent, H/f, W/f)
        return F.conv2d(h, self.out.weight + self.out_shortcut, self.out.bias, padding=1)


class DCDecoder(nn.Module):
    def __init__(self, cfg: DCAEConfig):
        super().__init__()
        c = cfg.dec_channels
        self.inp = nn.Conv2d(cfg.latent_channels, c[-1], 3, padding=1)
        self.in_repeats = c[-1] // cfg.latent_channels
        self.register_buffer("in_shortcut", repeat_taps(c[-1], cfg.latent_channels), persistent=False)
        stages: list[nn.Module] = []
        for i in reversed(range(len(c))):  # coarsest first
            blocks = [UpBlock(c[i + 1], c[i])] if i < len(c) - 1 else []
            stages.append(nn.Sequential(*blocks, *(ResBlock(c[i]) for _ in range(cfg.dec_depth[i]))))
        self.stages = nn.Sequential(*stages)
        self.norm = ChannelRMSNorm(c[0])
        self.out = nn.Conv2d(c[0], 3 * 4, 3, padding=1)  # before a 2x pixel_shuffle

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, latent, h, w)
        # = self.inp(z) + z.repeat_interleave(in_repeats, dim=1)
        h = F.conv2d(z, self.inp.weight + self.in_shortcut, self.inp.bias, padding=1)  # (B, C, h, w)
        h = self.stages(h)  # (B, c0, H/2, W/2)
        return F.pixel_shuffle(self.out(F.silu(self.norm(h))), 2)  # (B, 3, H, W)


class DCAutoencoder(NormalisedLatents, SeedlingModelMixin):
    """config.json holds DCAEConfig's fields. Any image whose sides are multiples of `factor` works
    (convolutions only); train on crops, run at 512 or 1024. encode/decode (normalised latents) and
    forward (the raw round trip) come from NormalisedLatents."""

    @register_to_config
    def __init__(self, latent_channels: int = 32, enc_channels: tuple[int, ...] = (32, 64, 128, 256, 256),
                 enc_depth: tuple[int, ...] = (1, 1, 1, 2, 2), dec_channels: tuple[int, ...] = (16, 32, 64, 128, 256),
                 dec_depth: tuple[int, ...] = (0, 1, 1, 2, 2), latent_shift: float = 0.0, latent_scale: float = 1.0):
        super().__init__()
        cfg = DCAEConfig(latent_channels, tuple(enc_channels), tuple(enc_depth), tuple(dec_channels),
                         tuple(dec_depth), latent_shift, latent_scale)
        if len(cfg.enc_channels) != len(cfg.dec_channels):
            raise ValueError(f"encoder and decoder need the same number of stages (one per 2x), got "
                             f"{len(cfg.enc_channels)} and {len(cfg.dec_channels)}")
        _check_widths("enc", cfg.enc_channels, cfg.enc_depth, latent_channels)
        _check_widths("dec", cfg.dec_channels, cfg.dec_depth, latent_channels)
        self.encoder = DCEncoder(cfg)
        self.decoder = DCDecoder(cfg)
        self.initialize_weights()

    @classmethod
    def from_named(cls, name: str) -> DCAutoencoder:
        if name not in DCAE_CONFIGS:
            raise ValueError(f"unknown autoencoder config {name!r}; choose one of {sorted(DCAE_CONFIGS)}")
        return cls(**{k: v for k, v in asdict(DCAE_CONFIGS[name]).items()})

    def initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, ResBlock):
                # Zero the residual branch's gain: every block starts as identity, so at init the
                # network is its shortcut path and training grows the residuals from there.
                nn.init.zeros_(m.norm.weight)

    @property
    def factor(self) -> int:
        return 2 ** len(self.config.enc_channels)

    def check_size(self, height: int, width: int) -> None:
        f = self.factor
        if height % f or width % f:
            h2, w2 = (max(f, round(v / f) * f) for v in (height, width))
            raise ValueError(f"this autoencoder (f{f}) needs an image whose height and width are multiples of {f}; "
                             f"got {height}x{width}: resize or crop it to {h2}x{w2}")

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        self.check_size(x.shape[-2], x.shape[-1])
        return self.encoder(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def _reference_stage(seq: nn.Sequential, h: torch.Tensor) -> torch.Tensor:
    for block in seq:
        if isinstance(block, DownBlock):
            h = block.conv(h) + F.pixel_unshuffle(h, 2).unflatten(1, (-1, block.group)).mean(2)
        elif isinstance(block, UpBlock):
            shortcut = F.pixel_shuffle(h.repeat_interleave(block.repeats, dim=1), 2)
            h = F.pixel_shuffle(block.conv(h), 2) + shortcut
        else:
            h = block(h)
    return h


def reference_encode(model: DCAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """`model.encode_raw(x)` with every shortcut run as DC-AE writes it (rearrange, then add) rather
    than folded into the convs' taps: the check and the benchmark's baseline for the folded form."""
    enc = model.encoder
    h = enc.stem(F.pixel_unshuffle(x, 2))
    for stage in enc.stages:
        h = _reference_stage(stage, h)
    return enc.out(h) + h.unflatten(1, (-1, enc.out_group)).mean(2)


def reference_decode(model: DCAutoencoder, z: torch.Tensor) -> torch.Tensor:
    """`model.decode_raw(z)` with the shortcuts run as DC-AE writes them (see `reference_encode`)."""
    dec = model.decoder
    h = dec.inp(z) + z.repeat_interleave(dec.in_repeats, dim=1)
    for stage in dec.stages:
        h = _reference_stage(stage, h)
    return F.pixel_shuffle(dec.out(F.silu(dec.norm(h))), 2)


def load_autoencoder(path: str | Path, **kwargs):
    """The autoencoder saved in `path` (itself or a pipeline folder holding `autoencoder/`), of the
    class its config.json names: the f8 `Autoencoder` or the deep-compression `DCAutoencoder`.
    Both give encode/decode of normalised latents and `factor`."""
    folder = autoencoder_folder(path)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{path}: no autoencoder there (expected config.json and its weights)")
    name = json.loads((folder / "config.json").read_text()).get("_class_name", "Autoencoder")
    classes = {"Autoencoder": Autoencoder, "DCAutoencoder": DCAutoencoder}
    if name not in classes:
        raise ValueError(f"{folder}: an autoencoder of class {name!r}; Seedling loads {sorted(classes)}")
    return classes[name].from_pretrained(folder, **kwargs)


def compression_ratio(model) -> float:
    """Pixel numbers per latent number (3 f^2 / C), for any autoencoder with `factor` and
    `config.latent_channels` (the f8 v1 one too)."""
    return 3 * model.factor**2 / model.config.latent_channels


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

