"""Export a pipeline folder from a DiT training checkpoint (EMA weights) and an autoencoder:

    python -m seedling.model.export --checkpoint runs/dit --ae runs/ae/final --out runs/export [--fp16]

Useful to evaluate a run while it trains, or to ship a run that was cut short. A run trained with
`seedling-train --task-adapter lora|full` (an adapter for the tasks it adds to its --init model) exports with
`--task-adapter`: its --init folder, whose DiT gains the new tasks' embedding rows (every other
weight bit for bit the same) and whose task_adapters/<task>.safetensors hold the adapter (a LoRA,
or every weight's change) the pipeline applies for that task only.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from seedling.atomic import write_atomic
from seedling.model.dcae import load_autoencoder
from seedling.model.dit import DiTConfig, UnifiedDiT
from seedling.model.pipeline import PipelineConfig, SeedlingPipeline, adapter_tasks
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
    pipe = SeedlingPipeline(dit.eval(), load_autoencoder(ae), pipeline_config=pcfg)
    pipe.save_pretrained(out, dtype=torch.float16 if fp16 else torch.float32)
    state = ck / STATE_NAME
    if state.exists():
        meta = json.loads(state.read_text())
        info = {"steps": meta["step"], "samples": meta["extra"].get("samples"), **(extra_info or {})}
        write_atomic(Path(out) / "training.json", json.dumps(info, indent=2))
    return pipe


def export_task_adapter(checkpoint: str | Path, out: str | Path, ema: bool = True, rank: int | None = None,
                        base: str | Path | None = None, pipeline_config: dict | None = None) -> Path:
    """Write the pipeline folder of a `--task-adapter` run (see the module doc); returns `out`.
    The init's own task adapters are kept; the run's tasks share one adapter file. `rank`: store
    a full adapter as its rank-`rank` SVD LoRA (adapters.low_rank), to fit the weight budget.
    `base`: write onto this folder instead of the run's --init, e.g. the export of another adapter
    run from the same init (its DiT must equal the init's but for task rows: checked).
    `pipeline_config`: settings changed in the written folder (PipelineConfig fields)."""
    from seedling.model.adapters import Adapter, low_rank, save_adapter
    from seedling.model.modeling import weights_path
    from seedling.model.pipeline import TASK_ADAPTERS

    ck = latest_checkpoint(checkpoint) or Path(checkpoint)
    info_file = ck / "task_adapter.json"
    if not info_file.exists():
        raise SystemExit(f"{ck} is not a checkpoint of a --task-adapter run (no task_adapter.json); export it without --task-adapter")
    info = json.loads(info_file.read_text())
    init, out = Path(base or info["init"]), Path(out)
    if out.resolve() == init.resolve():
        start = "--base" if base else "the run's --init"
        raise SystemExit(f"--out {out} is the folder the export starts from ({start}), which it would delete "
                         "first: write to another folder")
    cfg = json.loads((ck / "config.json").read_text())
    trained = load_file(str(ck / ("ema-model.safetensors" if ema else "model.safetensors")))
    if base is not None:
        _check_same_base(Path(info["init"]), init)
        base_tasks = json.loads((init / "dit" / "config.json").read_text())["tasks"]
        if len(base_tasks) > len(cfg["tasks"]):  # the base added tasks of its own run after the init: keep them
            if base_tasks[: len(cfg["tasks"])] != cfg["tasks"]:
                raise SystemExit(f"--base {init}: its tasks {base_tasks} do not begin with the run's {cfg['tasks']}")
            cfg = {**cfg, "tasks": base_tasks, "num_tasks": len(base_tasks)}
    if out.exists():
        shutil.rmtree(out)
    # the init's evaluation and contact sheet describe the init, not this model: left out
    shutil.copytree(init, out, ignore=shutil.ignore_patterns("eval_metrics.json", "contact_sheet.png"))
    init_weights = weights_path(init / "dit")
    base = load_file(str(init_weights))
    dtype = base["task_embed.weight"].dtype
    rows = torch.zeros(cfg["num_tasks"], base["task_embed.weight"].shape[1], dtype=dtype)
    rows[: len(base["task_embed.weight"])] = base["task_embed.weight"]  # the init's rows, bit for bit
    for task in info["tasks"]:
        i = cfg["tasks"].index(task)
        rows[i] = trained["task_embed.weight"][i].to(dtype)
    dit = UnifiedDiT(DiTConfig.from_dict(cfg))
    dit.load_state_dict({**{k: v.float() for k, v in base.items()}, "task_embed.weight": rows.float()})
    shutil.rmtree(out / "dit")
    dit.save_pretrained(out / "dit", dtype=dtype)
    if not (out / "dit" / init_weights.name).exists():  # the init's file name (a pre-diffusers folder keeps its own)
        weights_path(out / "dit").rename(out / "dit" / init_weights.name)
    replaced = _drop_replaced_adapters(out / TASK_ADAPTERS, info["tasks"])
    state = json.loads((ck / STATE_NAME).read_text())
    meta = {"base_model": str(init), "steps": state["step"], "samples": state["extra"].get("samples")}
    if info["kind"] == "lora":
        # peft's keys in the run ("<module>.lora_A.default.weight") -> the adapter file's ("<module>.lora_A.weight")
        tensors = {k.replace(".default.", "."): v.float() for k, v in trained.items() if ".lora_" in k}
        meta |= {"rank": info["rank"], "alpha": float(info["rank"])}
    else:  # every weight's change; the task rows are in the DiT itself
        tensors = {k: trained[k].float() - v.float() for k, v in base.items()
                   if k != "task_embed.weight" and not torch.equal(trained[k].to(v.dtype), v)}
    names = ",".join(info["tasks"])
    adapter = Adapter(info["kind"], tensors, {"name": names, "task": names, **meta})
    if rank is not None:
        if adapter.kind != "full":
            raise SystemExit(f"--rank stores a full adapter as a LoRA; this run's adapter is already a rank-{info['rank']} LoRA")
        adapter = low_rank(adapter, rank)
    save_adapter(adapter, out / TASK_ADAPTERS / f"{'-'.join(info['tasks'])}.safetensors", dtype=dtype)
    history = json.loads((init / "training.json").read_text()) if (init / "training.json").exists() else {}
    record = {"kind": info["kind"], "tasks": info["tasks"], "rank": info["rank"], "init": str(init),
              "steps": state["step"], "samples": state["extra"].get("samples")}
    if rank is not None:
        record["stored_as_rank"] = rank
    if replaced:
        record["replaces"] = replaced  # the init's adapters this run went on from (train: info["continues"])
    # one record per adapter the folder holds: the init's own (an older folder's single "task_adapter") and this run's
    earlier = history.pop("task_adapters", []) + ([history.pop("task_adapter")] if "task_adapter" in history else [])
    history["task_adapters"] = [*earlier, record]
    write_atomic(out / "training.json", json.dumps(history, indent=2))
    changes = dict(pipeline_config or {})
    if info.get("storyboard_panels"):  # compose was trained on storyboard panels too (--storyboard-panels)
        changes.setdefault("storyboard_by_panels", True)  # unless the export says otherwise
    if changes:
        set_pipeline_config(out, changes)
    return out


def _drop_replaced_adapters(folder: Path, tasks: list[str]) -> list[str]:
    """Remove the copied init's adapter files whose tasks the run's adapter now serves: the run went
    on from them (train._merge_init_adapters), so its change includes theirs. Returns their names."""
    from seedling.model.adapters import load_adapter

    dropped = []
    for file in sorted(folder.glob("*.safetensors")):
        if set(adapter_tasks(load_adapter(file), file)) <= set(tasks):
            file.unlink()
            file.with_suffix(".json").unlink(missing_ok=True)
            dropped.append(file.name)
    return dropped


def _check_same_base(init: Path, base: Path) -> None:
    """`base`'s DiT has the run's init weights, task embedding rows aside (SystemExit otherwise)."""
    from seedling.model.modeling import weights_path

    a, b = load_file(str(weights_path(init / "dit"))), load_file(str(weights_path(base / "dit")))
    differ = sorted(k for k in a if k != "task_embed.weight" and (k not in b or not torch.equal(a[k], b[k])))
    if differ or set(b) - set(a):
        raise SystemExit(f"--base {base}: its DiT is not the run's --init ({init}) with adapters on top "
                         f"({len(differ)} weights differ, e.g. {differ[:2]}); export onto a folder made from that init")


def set_pipeline_config(folder: str | Path, changes: dict) -> None:
    """Change settings of a model folder's PipelineConfig (model_index.json and pipeline.json alike);
    a setting the config does not have raises."""
    folder = Path(folder)
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    settings = PipelineConfig(**{**index.get("pipeline_config", {}), **changes}).to_dict()  # validated
    index["pipeline_config"] = settings
    write_atomic(index_file, json.dumps(index, indent=2))
    if (folder / "pipeline.json").exists():
        write_atomic(folder / "pipeline.json", json.dumps(settings, indent=2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/dit", help="a training run's folder or one of its checkpoints")
    p.add_argument("--ae", default="runs/ae/final")
    p.add_argument("--out", default="runs/export")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights (default fp16)")
    p.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    p.add_argument("--pipeline-config", default="{}", help="JSON overrides, e.g. '{\"guidance\": 2.0}'")
    p.add_argument("--task-adapter", action="store_true",
                   help="the run was trained with --task-adapter: write its --init folder with the adapter")
    p.add_argument("--rank", type=int, default=None,
                   help="with --task-adapter: store a full adapter as its rank-R SVD LoRA (smaller on disk)")
    p.add_argument("--base", default=None,
                   help="with --task-adapter: write onto this folder (another adapter export of the same --init) "
                        "instead of the run's --init, so that both adapters ship together")
    a = p.parse_args(argv)
    if a.task_adapter:
        out = export_task_adapter(a.checkpoint, a.out, ema=not a.raw, rank=a.rank, base=a.base,
                                  pipeline_config=json.loads(a.pipeline_config))
        print(f"exported {out}")
        return
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
