"""Export a pipeline folder from a DiT training checkpoint (EMA weights) and an autoencoder:

    python -m seedling.model.export --checkpoint runs/dit/checkpoint --ae runs/ae/final --out runs/export [--fp16]

Useful to evaluate a run while it trains, or to ship a run that was cut short.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from seedling.model.autoencoder import Autoencoder
from seedling.model.dit import DiTConfig, UnifiedDiT
from seedling.model.pipeline import PipelineConfig, SeedlingPipeline


def export(
    checkpoint: str | Path,
    ae: str | Path,
    out: str | Path,
    fp16: bool = True,
    ema: bool = True,
    pipeline_config: dict | None = None,
    extra_info: dict | None = None,
) -> SeedlingPipeline:
    ck = Path(checkpoint)
    cfg = DiTConfig.from_dict(json.loads((ck / "config.json").read_text()))
    dit = UnifiedDiT(cfg)
    dit.load_state_dict(load_file(str(ck / ("ema.safetensors" if ema else "model.safetensors"))))
    pcfg = PipelineConfig(text_len=cfg.text_len, **(pipeline_config or {}))
    pipe = SeedlingPipeline(dit.eval(), Autoencoder.from_pretrained(ae), pipeline_config=pcfg)
    pipe.save_pretrained(out, dtype=torch.float16 if fp16 else torch.float32)
    state = ck / "state.pt"
    if state.exists():
        meta = torch.load(state, weights_only=False)
        info = {"steps": meta["step"], "samples": meta["samples"], **(extra_info or {})}
        (Path(out) / "training.json").write_text(json.dumps(info, indent=2))
    return pipe


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/dit/checkpoint")
    p.add_argument("--ae", default="runs/ae/final")
    p.add_argument("--out", default="runs/export")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights (default fp16)")
    p.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    p.add_argument("--pipeline-config", default="{}", help="JSON overrides, e.g. '{\"guidance\": 2.0}'")
    a = p.parse_args(argv)
    export(
        a.checkpoint,
        a.ae,
        a.out,
        fp16=not a.fp32,
        ema=not a.raw,
        pipeline_config=json.loads(a.pipeline_config),
    )
    print(f"exported {a.out}")


if __name__ == "__main__":
    main()
