"""Export a pipeline folder from a DiT training checkpoint (EMA weights) and an autoencoder:

    python -m seedling.model.export --checkpoint runs/dit --ae runs/ae/final --out runs/export [--fp16]

Useful to evaluate a run while it trains, or to ship a run that was cut short.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from seedling.atomic import write_atomic
from seedling.model.autoencoder import Autoencoder
from seedling.model.dit import DiTConfig, UnifiedDiT
from seedling.model.pipeline import PipelineConfig, SeedlingPipeline
from seedling.model.training import STATE_NAME, latest_checkpoint


def export(
    checkpoint: str | Path,
    ae: str | Path,
    out: str | Path,
    fp16: bool = True,
    ema: bool = True,
    pipeline_config: dict | None = None,
    extra_info: dict | None = None,
) -> SeedlingPipeline:
    ck = latest_checkpoint(checkpoint) or Path(checkpoint)  # a run folder or one checkpoint in it
    cfg = DiTConfig.from_dict(json.loads((ck / "config.json").read_text()))
    dit = UnifiedDiT(cfg)
    # "ema.safetensors": checkpoints written before the shared training loop
    ema_file = ck / "ema-model.safetensors" if (ck / "ema-model.safetensors").exists() else ck / "ema.safetensors"
    dit.load_state_dict(load_file(str(ema_file if ema else ck / "model.safetensors")))
    pcfg = PipelineConfig(text_len=cfg.text_len, **(pipeline_config or {}))
    pipe = SeedlingPipeline(dit.eval(), Autoencoder.from_pretrained(ae), pipeline_config=pcfg)
    pipe.save_pretrained(out, dtype=torch.float16 if fp16 else torch.float32)
    state = ck / STATE_NAME
    if state.exists():
        meta = json.loads(state.read_text())
        info = {"steps": meta["step"], "samples": meta["extra"].get("samples"), **(extra_info or {})}
        write_atomic(Path(out) / "training.json", json.dumps(info, indent=2))
    return pipe


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/dit", help="a training run's folder or one of its checkpoints")
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
