"""The shipped model (assets/default) makes the same images bit for bit: sha256 of the pixel bytes
of a handful of generations at fixed seeds, every task, with and without the reference K/V cache.

Refactors of the model, the kernels, the sampler or the pipeline must keep these hashes. The
hashes were recorded on one CPU capability (tests/data/golden_images.json: "cpu_capability", with
"+AMX" where the CPU has AMX);
oneDNN and MKL pick their kernels (and so the summation order) by ISA, so on another capability
the test compares 8x8 block means of each image instead (within 1 grey level). Generation runs on
one thread for the same reason.

Regenerate only for a deliberate change of the images: python tests/test_golden_images.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets" / "default"
GOLDEN = ROOT / "tests" / "data" / "golden_images.json"


def _source(seed: int, size=(128, 128)) -> Image.Image:
    """A deterministic picture: a few filled shapes on a light background."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(200, 256, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = (int(v) for v in rng.integers(0, size[0] - 40, 2))
        w, h = (int(v) for v in rng.integers(20, 40, 2))
        fill = tuple(int(v) for v in rng.integers(0, 200, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    return im


def _mask(size=(128, 128)) -> Image.Image:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle([32, 40, 95, 99], fill=255)
    return m


def cases() -> dict[str, dict]:
    """name -> pipeline arguments (without use_ref_cache). The t2i prompts run as typed: these
    cases pin the model's numbers, the expander's rewrites are tests/test_prompt_expansion.py's."""
    return {
        "t2i": {"prompt": "a red circle", "task": "t2i", "seed": 0, "expand_prompt": False},
        "t2i_guided_x2": {"prompt": "a blue square above a star", "task": "t2i", "seed": 1, "num_outputs": 2,
                              "guidance": 3.0, "width": 160, "height": 96, "expand_prompt": False},
        "edit": {"prompt": "make the background yellow", "task": "edit", "images": [_source(0)], "seed": 2,
                     "guidance": 2.0, "image_guidance": 1.5},
        "inpaint": {"prompt": "a green triangle", "task": "inpaint", "images": [_source(1)], "mask": _mask(), "seed": 3},
        "compose_2refs": {"prompt": "the first on the left, the second on the right", "task": "compose",
                              "images": [_source(2), _source(3)], "seed": 4, "guidance": 2.0},
        "storyboard": {"prompt": "a fox: at the beach; in the snow; at night", "task": "storyboard",
                           "images": [_source(4)], "num_outputs": 3, "seed": 5},
        "style": {"prompt": "a cat", "task": "style", "images": [_source(5)], "seed": 6},
    }


def _digest(images: list[Image.Image]) -> tuple[str, list]:
    h = hashlib.sha256()
    thumbs = []
    for im in images:
        a = np.asarray(im, dtype=np.uint8)
        h.update(f"{a.shape}".encode())
        h.update(a.tobytes())
        H, W, _ = a.shape
        t = a.reshape(8, H // 8, 8, W // 8, 3).mean((1, 3))
        thumbs.append(np.round(t, 2).tolist())
    return h.hexdigest(), thumbs


def generate(pipe) -> dict[str, dict]:
    """Every case, on one thread: oneDNN splits reductions by thread count, which moves the last bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _generate(pipe)
    finally:
        torch.set_num_threads(threads)


def _generate(pipe) -> dict[str, dict]:
    out = {}
    for name, args in cases().items():
        for cached in (True, False):
            images = pipe(**args, use_ref_cache=cached, previews=False).images
            digest, thumbs = _digest(images)
            out[f"{name}/{'cached' if cached else 'uncached'}"] = {"sha256": digest, "thumbs": thumbs}
    return out


def cpu_kernels() -> str:
    """What picks oneDNN's kernels: torch's capability, plus AMX where the CPU has it (an AVX512
    machine with AMX runs other bf16 kernels than one without: same capability, other sums)."""
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    return torch.backends.cpu.get_cpu_capability() + ("+AMX" if "amx_bf16" in flags else "")


def _load_pipe():
    from seedling.model.pipeline import SeedlingPipeline

    return SeedlingPipeline.from_pretrained(ASSETS)


@pytest.fixture(scope="module")
def recorded():
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def made():
    return generate(_load_pipe())


def test_golden_images(recorded, made):
    assert set(made) == set(recorded["images"])
    exact = cpu_kernels() == recorded["cpu_capability"]
    for key, rec in recorded["images"].items():
        if exact:
            assert made[key]["sha256"] == rec["sha256"], f"{key}: the images changed"
        else:
            diff = np.abs(np.asarray(made[key]["thumbs"]) - np.asarray(rec["thumbs"])).max()
            assert diff <= 1.0, f"{key}: block means moved by {diff:.2f} grey levels"


if __name__ == "__main__":
    data = {"cpu_capability": cpu_kernels(), "torch": torch.__version__,
            "images": generate(_load_pipe())}
    GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {GOLDEN} ({len(data['images'])} cases)")
