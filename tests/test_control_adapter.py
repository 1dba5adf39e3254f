"""The control tasks (issue 19 §4) shipped as one task adapter that several tasks share: one file
names its tasks, the pipeline loads one object for all of them, saving and quantizing keep it one,
and an export over a model that already has a task adapter keeps that one bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seedling.model import train
from seedling.model.adapters import Adapter
from seedling.model.export import export_task_adapter
from seedling.model.modeling import weights_path
from seedling.model.pipeline import TASK_ADAPTERS, SeedlingPipeline
from seedling.model.task_table import STUDIO_TASKS
from tests.test_text_task import _random_lora, _tiny_pipeline

WITH_TEXT = (*STUDIO_TASKS, "text")
KW = {"steps": 2, "seed": 0, "height": 32, "width": 32, "output_type": "np"}


def _control(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((32, 32, 3), 255, np.uint8)
    img[8:24, 6:20] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def test_one_adapter_file_serves_the_tasks_it_names(tmp_path):
    pipe = _tiny_pipeline()  # a new model knows every task of the table
    shared = _random_lora(pipe.dit, seed=2, task="edges,sketch")
    pipe.task_adapters.update({"edges": shared, "sketch": shared, "text": _random_lora(pipe.dit)})
    pipe.save_pretrained(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m" / TASK_ADAPTERS).glob("*.safetensors"))
    assert files == ["edges-sketch.safetensors", "text.safetensors"]
    back = SeedlingPipeline.from_pretrained(tmp_path / "m")
    assert back.task_adapters["edges"] is back.task_adapters["sketch"] and set(back.task_adapters) == {"edges", "sketch", "text"}
    a = back.task_adapters["edges"]
    assert all(torch.equal(a.tensors[k], shared.tensors[k]) for k in shared.tensors)
    plain = _tiny_pipeline()
    for task in ("edges", "sketch"):  # the shared adapter changes both tasks' images, and t2i's not at all
        assert np.abs(back("a red square", task=task, images=[_control()], **KW).images
                      - plain("a red square", task=task, images=[_control()], **KW).images).max() > 0.01
    assert np.array_equal(back("a red circle", **KW).images, plain("a red circle", **KW).images)
    # a second file claiming a task another file serves is refused with the task named
    (tmp_path / "m" / TASK_ADAPTERS / "text.safetensors").rename(tmp_path / "m" / TASK_ADAPTERS / "zz.safetensors")
    dup = _random_lora(pipe.dit, seed=3, task="sketch")
    from seedling.model.adapters import save_adapter
    save_adapter(dup, tmp_path / "m" / TASK_ADAPTERS / "other.safetensors")
    with pytest.raises(ValueError, match="second adapter for the task 'sketch'"):
        SeedlingPipeline.from_pretrained(tmp_path / "m")


def test_quantizing_turns_a_shared_full_adapter_into_one_shared_lora():
    pipe = _tiny_pipeline()
    full = Adapter("full", {n: 0.2 * torch.randn_like(p) for n, p in pipe.dit.named_parameters()
                            if n.startswith("blocks.") and n.endswith(".weight") and p.ndim == 2},
                   {"name": "edges,sketch", "task": "edges,sketch"})
    pipe.task_adapters.update({"edges": full, "sketch": full})
    pipe.quantize("int8")
    lora = pipe.task_adapters["edges"]
    assert lora.kind == "lora" and lora is pipe.task_adapters["sketch"]


def test_a_control_run_over_a_model_with_a_text_adapter_keeps_it_and_shares_its_own(tmp_path, monkeypatch):
    """seedling-train --task-adapter full adding two control tasks to a model that has the text
    task and its adapter: the export keeps the text adapter's file bit for bit, writes one file for
    both new tasks, and leaves t2i and text images exactly as the init made them; --rank stores the
    same change as a LoRA of that rank."""
    init = _tiny_pipeline(WITH_TEXT)
    init.task_adapters["text"] = _random_lora(init.dit)
    init.save_pretrained(tmp_path / "init", dtype=torch.float16)
    (tmp_path / "init" / "training.json").write_text(json.dumps({"task_adapter": {"tasks": ["text"]}}))
    tasks = iter(["edges", "sketch"] * 10)
    monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None: next(tasks))
    zeros = ",".join(f"{t}=0" for t in WITH_TEXT)
    train.main(["--ae", str(tmp_path / "init" / "autoencoder"), "--token-budget", "400", "--max-steps", "10",
                "--threads", "1", "--out", str(tmp_path / "run"), "--no-curriculum", "--task-adapter", "full",
                "--lr", "1e-3", "--init", str(tmp_path / "init"), "--stop-after", "2",
                "--task-weights", f"edges=1,sketch=1,{zeros}"])
    out = export_task_adapter(tmp_path / "run", tmp_path / "export")
    names = sorted(p.name for p in (out / TASK_ADAPTERS).glob("*.safetensors"))
    assert names == ["edges-sketch.safetensors", "text.safetensors"]
    before = load_file(str(tmp_path / "init" / TASK_ADAPTERS / "text.safetensors"))
    after = load_file(str(out / TASK_ADAPTERS / "text.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert json.loads((out / "dit" / "config.json").read_text())["tasks"] == [*WITH_TEXT, "edges", "sketch"]
    history = json.loads((out / "training.json").read_text())
    assert [r["tasks"] for r in history["task_adapters"]] == [["text"], ["edges", "sketch"]]
    pipe, ref = SeedlingPipeline.from_pretrained(out), SeedlingPipeline.from_pretrained(tmp_path / "init")
    assert pipe.task_adapters["edges"] is pipe.task_adapters["sketch"] and pipe.task_adapters["edges"].kind == "full"
    for prompt in ("a red circle", 'the word "cat"'):
        assert np.array_equal(pipe(prompt, **KW).images, ref(prompt, **KW).images)
    assert pipe("a red square", task="edges", images=[_control()], **KW).parameters["task"] == "edges"
    small = export_task_adapter(tmp_path / "run", tmp_path / "export4", rank=4)
    lora = SeedlingPipeline.from_pretrained(small).task_adapters["sketch"]
    assert lora.kind == "lora" and lora.rank == 4 and lora.metadata["low_rank_of"] == "full"
    assert json.loads((small / "training.json").read_text())["task_adapters"][-1]["stored_as_rank"] == 4
    assert weights_path(out / "dit").name == weights_path(tmp_path / "init" / "dit").name


def test_adapters_for_known_tasks_with_boxes_export_onto_one_folder(tmp_path, monkeypatch):
    """--adapt-tasks: a task adapter over tasks the init already has (compose with reference boxes
    and storyboard panels, then style); the second run's export goes onto the first's (--base), so
    both adapters ship in one folder, with the DiT saying it places references in boxes and the
    pipeline drawing storyboards by panels. A --base made from another init is refused."""
    init = _tiny_pipeline(WITH_TEXT)
    init.save_pretrained(tmp_path / "init", dtype=torch.float16)
    runs = {}
    for task, extra in (("compose", ["--storyboard-panels"]), ("style", [])):
        tasks = iter([task] * 10)
        monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None, tasks=tasks: next(tasks))
        zeros = ",".join(f"{t}=0" for t in WITH_TEXT if t != task)
        train.main(["--ae", str(tmp_path / "init" / "autoencoder"), "--token-budget", "600", "--max-steps", "10",
                    "--threads", "1", "--out", str(tmp_path / task), "--no-curriculum", "--task-adapter", "full",
                    "--lr", "1e-3", "--init", str(tmp_path / "init"), "--stop-after", "2", "--reference-boxes",
                    "--adapt-tasks", task, "--task-weights", f"{task}=1,{zeros}", *extra])
        runs[task] = tmp_path / task
    first = export_task_adapter(runs["compose"], tmp_path / "first")
    assert SeedlingPipeline.from_pretrained(first).settings.storyboard_by_panels
    both = export_task_adapter(runs["style"], tmp_path / "both", base=first)
    names = sorted(p.name for p in (both / TASK_ADAPTERS).glob("*.safetensors"))
    assert names == ["compose.safetensors", "style.safetensors"]
    pipe = SeedlingPipeline.from_pretrained(both)
    assert pipe.dit.dims.reference_boxes and pipe.settings.storyboard_by_panels
    ref = SeedlingPipeline.from_pretrained(tmp_path / "init")
    assert not ref.settings.storyboard_by_panels
    assert np.array_equal(pipe("a red circle", **KW).images, ref("a red circle", **KW).images)  # t2i untouched
    history = json.loads((both / "training.json").read_text())
    assert [r["tasks"] for r in history["task_adapters"]] == [["compose"], ["style"]]
    other = _tiny_pipeline(WITH_TEXT)
    with torch.no_grad():
        other.dit.blocks[0].qkv.weight.add_(1.0)
    other.save_pretrained(tmp_path / "other", dtype=torch.float16)
    with pytest.raises(SystemExit, match="is not the run's --init"):
        export_task_adapter(runs["style"], tmp_path / "bad", base=tmp_path / "other")
    with pytest.raises(SystemExit, match="--adapt-tasks names tasks the --init model does not know"):
        train.main(["--ae", str(tmp_path / "init" / "autoencoder"), "--out", str(tmp_path / "x"), "--task-adapter",
                    "full", "--init", str(tmp_path / "init"), "--adapt-tasks", "upscale", "--max-steps", "1"])


def test_an_export_onto_a_base_that_added_a_task_keeps_that_task(tmp_path, monkeypatch):
    """A run that added a task (upscale: its new embedding row) is exported; a second run from the
    same init, which never heard of that task, exports onto it (--base): the folder keeps the
    added task's row and adapter beside the second run's. Writing onto the base itself is refused
    before anything is deleted."""
    init = _tiny_pipeline(WITH_TEXT)
    init.save_pretrained(tmp_path / "init", dtype=torch.float16)
    runs = {}
    for task in ("upscale", "text"):
        tasks = iter([task] * 10)
        monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None, tasks=tasks: next(tasks))
        zeros = ",".join(f"{t}=0" for t in WITH_TEXT if t != task)
        adapt = ["--adapt-tasks", task] if task in WITH_TEXT else []
        train.main(["--ae", str(tmp_path / "init" / "autoencoder"), "--token-budget", "600", "--max-steps", "10",
                    "--threads", "1", "--out", str(tmp_path / task), "--no-curriculum", "--task-adapter", "full",
                    "--lr", "1e-3", "--init", str(tmp_path / "init"), "--stop-after", "2", *adapt,
                    "--task-weights", f"{task}=1,{zeros}"])
        runs[task] = tmp_path / task
    first = export_task_adapter(runs["upscale"], tmp_path / "first")
    with pytest.raises(SystemExit, match="which it would delete first"):
        export_task_adapter(runs["text"], first, base=first)
    assert (first / "dit" / "config.json").exists()
    both = export_task_adapter(runs["text"], tmp_path / "both", base=first)
    pipe = SeedlingPipeline.from_pretrained(both)
    assert pipe.dit.dims.tasks == (*WITH_TEXT, "upscale")
    kept = load_file(str(weights_path(first / "dit")))["task_embed.weight"][-1]
    assert torch.equal(load_file(str(weights_path(both / "dit")))["task_embed.weight"][-1], kept)
    assert sorted(p.name for p in (both / TASK_ADAPTERS).glob("*.safetensors")) == ["text.safetensors",
                                                                                    "upscale.safetensors"]
    up = pipe("", task="upscale", images=[_control()], **KW).images
    assert np.array_equal(up, SeedlingPipeline.from_pretrained(first)("", task="upscale", images=[_control()], **KW).images)


def test_a_run_goes_on_from_the_inits_adapter_and_its_export_replaces_it(tmp_path, monkeypatch):
    """--adapt-tasks compose,storyboard over a folder whose compose adapter exists: the run starts
    from the DiT with that adapter merged, and the export ships one adapter for both tasks in
    place of the old file. An init adapter that also serves a task the run leaves is refused."""
    init = _tiny_pipeline(WITH_TEXT)
    compose = Adapter("full", {n: 0.1 * torch.randn_like(p) for n, p in init.dit.named_parameters()
                               if n.startswith("blocks.0.") and p.ndim == 2}, {"name": "compose", "task": "compose"})
    init.task_adapters["compose"] = compose
    init.save_pretrained(tmp_path / "init", dtype=torch.float32)
    tasks = iter(["storyboard", "compose"] * 5)
    monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None: next(tasks))
    zeros = ",".join(f"{t}=0" for t in WITH_TEXT if t not in ("compose", "storyboard"))
    args = ["--ae", str(tmp_path / "init" / "autoencoder"), "--token-budget", "600", "--max-steps", "10",
            "--threads", "1", "--out", str(tmp_path / "run"), "--no-curriculum", "--task-adapter", "full",
            "--lr", "0", "--init", str(tmp_path / "init"), "--stop-after", "2", "--reference-boxes",
            "--storyboard-panels", "--task-weights", f"compose=1,storyboard=1,{zeros}"]
    train.main([*args, "--adapt-tasks", "compose,storyboard"])
    out = export_task_adapter(tmp_path / "run", tmp_path / "export", ema=False)
    assert sorted(p.name for p in (out / TASK_ADAPTERS).glob("*")) == ["compose-storyboard.json",
                                                                       "compose-storyboard.safetensors"]
    record = json.loads((out / "training.json").read_text())["task_adapters"][-1]
    assert record["replaces"] == ["compose.safetensors"]
    pipe = SeedlingPipeline.from_pretrained(out)
    both = pipe.task_adapters["compose"]
    assert both is pipe.task_adapters["storyboard"]
    for k, delta in compose.tensors.items():  # lr 0: the run's change is the merged adapter's, to fp32 rounding
        assert torch.allclose(both.tensors[k], delta, atol=1e-6)
    with pytest.raises(SystemExit, match="also serves"):
        shared = Adapter("full", compose.tensors, {"name": "x", "task": "compose,style"})
        init.task_adapters.update({"compose": shared, "style": shared})
        init.save_pretrained(tmp_path / "init2", dtype=torch.float32)
        train.main([*[a if a != str(tmp_path / "init") else str(tmp_path / "init2") for a in args],
                    "--out", str(tmp_path / "run2"), "--adapt-tasks", "compose"])
