"""The text task (issue 19 §3): the prompt's quoted text drawn as a glyph, restyled by the model,
trained as a task adapter that leaves every other task exactly as it was."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from seedling.model import train
from seedling.model.adapters import Adapter, added_adapters, remove_adapters, set_adapters
from seedling.model.autoencoder import AE_CONFIGS, Autoencoder
from seedling.model.data import knowledge as kn
from seedling.model.data.glyphs import FONT_WORDS, font_in_prompt, prompt_glyph, word_glyph
from seedling.model.data.icons import load_icons
from seedling.model.data.tasks import TaskSampler
from seedling.model.dit import DiT_tiny, UnifiedDiT
from seedling.model.export import export_task_adapter
from seedling.model.modeling import weights_path
from seedling.model.pipeline import TASK_ADAPTERS, SeedlingPipeline
from seedling.model.task_table import STUDIO_TASKS, task_spec

SIX = STUDIO_TASKS


def _ink(img: np.ndarray, level: int = 160):
    ys, xs = np.nonzero(np.asarray(img).min(-1) < level)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_the_text_task_is_a_glyph_control_of_the_table():
    t = task_spec("text")
    assert t.control and t.roles == ("glyph",) and t.ui_tab is None and t.references.lo == t.references.hi == 1


def test_a_training_glyph_lies_on_its_words_ink():
    """The glyph is the word in the plain font, black, over the ink of the word it becomes: same
    centre and (within a few px) the same height, whatever font the word has."""
    rng = np.random.default_rng(0)
    for _ in range(12):
        spec = kn.random_word(rng, 0.0)
        word, glyph = kn.render_word(spec), word_glyph(spec)
        w, g = _ink(word, 250), _ink(glyph, 250)
        assert abs((w[0] + w[2]) / 2 - (g[0] + g[2]) / 2) <= 3 and abs((w[1] + w[3]) / 2 - (g[1] + g[3]) / 2) <= 3
        assert g[3] - g[1] <= w[3] - w[1] + 3 and (g[3] - g[1] >= 0.7 * (w[3] - w[1]) or g[2] - g[0] >= 0.7 * (w[2] - w[0]))
        assert set(np.unique(glyph)) <= set(range(256)) and glyph[0, 0].tolist() == [255, 255, 255]


def test_text_samples_say_the_look_the_target_has():
    """Colour said unless black, font said unless plain: the prompt fixes the look, so the model
    has one answer to learn; deterministic per seed."""
    sampler = TaskSampler(load_icons()[:8], seed=0)
    for i in range(40):
        s = sampler.text(np.random.default_rng(i))
        again = TaskSampler(load_icons()[:8], seed=0).text(np.random.default_rng(i))
        assert s.prompt == again.prompt and np.array_equal(s.refs[0], again.refs[0])
        spec = s.meta["word"]
        assert s.task == "text" and f'"{spec.text}"' in s.prompt
        assert spec.color == "black" or spec.color in s.prompt
        assert (font_in_prompt(s.prompt) == spec.font) or (spec.font == "default" and font_in_prompt(s.prompt) == "default")
        assert np.array_equal(s.outputs[0], kn.render_word(spec)) and np.array_equal(s.refs[0], word_glyph(spec))


def test_prompt_glyph_draws_the_quoted_text_where_a_word_would_be():
    assert prompt_glyph("a red circle", 128, 128) is None
    g = prompt_glyph('a poster with the word "SALE" in blue', 128, 128)
    x0, y0, x1, y1 = _ink(g)
    assert abs((x0 + x1) / 2 - 64) <= 3 and abs((y0 + y1) / 2 - 64) <= 3 and 18 <= y1 - y0 <= 40
    wide = prompt_glyph('the word "SALE"', 256, 128)  # centred on a wide canvas too
    x0, _, x1, _ = _ink(wide)
    assert wide.shape == (128, 256, 3) and abs((x0 + x1) / 2 - 128) <= 3
    for font, (short, phrase) in FONT_WORDS.items():
        assert font_in_prompt(f'the word "a" {phrase}') == font
    assert font_in_prompt('the word "a" in bold serif') == "dejavu-serif-bold"
    with pytest.raises(ValueError, match="shorten it"):
        prompt_glyph('the text "' + "x" * 40 + '"', 128, 128)


def _tiny_pipeline(tasks=None) -> SeedlingPipeline:
    """A tiny pipeline whose DiT does something (a new one's zero-initialised gates make every
    block a no-op, so no weight change would show in its images)."""
    torch.manual_seed(0)
    pipe = SeedlingPipeline.from_config("tiny")
    with torch.no_grad():
        for prm in pipe.dit.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    if tasks is not None:
        dit = UnifiedDiT(replace(DiT_tiny(), tasks=tasks, num_tasks=8))
        dit.load_state_dict({k: v for k, v in pipe.dit.state_dict().items() if k != "task_embed.weight"}
                            | {"task_embed.weight": pipe.dit.state_dict()["task_embed.weight"][:8]})
        pipe = SeedlingPipeline(dit, pipe.autoencoder, pipe.text_encoder, pipe.settings)
    return pipe


def _random_lora(dit, rank=4, seed=0, task="text") -> Adapter:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, m in dit.named_modules():
        if name.endswith((".qkv", "mlp.0")):
            tensors[f"{name}.lora_A.weight"] = torch.randn(rank, m.in_features, generator=g) * 0.3
            tensors[f"{name}.lora_B.weight"] = torch.randn(m.out_features, rank, generator=g) * 0.3
    return Adapter("lora", tensors, {"name": task, "task": task, "rank": rank, "alpha": float(rank)})


def test_quoted_text_runs_the_text_task_when_the_model_has_it():
    pipe = _tiny_pipeline()  # a new model knows every task of the table
    out = pipe('the word "cat"', steps=1, seed=0, height=32, width=32)
    assert out.parameters["task"] == "text" and out.parameters["glyph"] is True
    assert pipe("a red circle", steps=1, seed=0, height=32, width=32).parameters["task"] == "t2i"
    six = _tiny_pipeline(SIX)  # the shipped model's tasks: quoted text stays a t2i prompt
    assert six('the word "cat"', steps=1, seed=0, height=32, width=32).parameters["task"] == "t2i"


def test_the_task_adapter_changes_only_its_task_and_comes_off_exactly():
    pipe = _tiny_pipeline()
    kw = {"steps": 2, "seed": 3, "height": 32, "width": 32, "output_type": "np"}
    before_t2i, before_text = pipe("a red circle", **kw).images, pipe('the word "cat"', **kw).images
    weights = {k: v.clone() for k, v in pipe.dit.state_dict().items()}
    pipe.task_adapters["text"] = _random_lora(pipe.dit)
    assert np.array_equal(pipe("a red circle", **kw).images, before_t2i)
    with_adapter = pipe('the word "cat"', **kw).images
    assert np.abs(with_adapter - before_text).max() > 0.01
    assert all(torch.equal(weights[k], v) for k, v in pipe.dit.state_dict().items())
    plain = pipe.set_executor("plain")('the word "cat"', **kw).images  # both executors see the adapter
    assert np.abs(plain - with_adapter).max() < 2 / 255
    # a user's adapter applied for the job stays applied, bit for bit, after a text generation
    user = _random_lora(pipe.dit, seed=1, task="user")
    set_adapters(pipe.dit, [(user, 0.5)])
    merged = {k: v.clone() for k, v in pipe.dit.state_dict().items()}
    pipe('the word "cat"', **kw)
    assert all(torch.equal(merged[k], v) for k, v in pipe.dit.state_dict().items())
    remove_adapters(pipe.dit)
    assert all(torch.equal(weights[k], v) for k, v in pipe.dit.state_dict().items())
    with added_adapters(pipe.dit, []):  # nothing to add: nothing touched
        assert all(torch.equal(weights[k], v) for k, v in pipe.dit.state_dict().items())


def test_task_adapters_round_trip_through_the_model_folder(tmp_path):
    pipe = _tiny_pipeline()
    pipe.task_adapters["text"] = _random_lora(pipe.dit)
    pipe.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / TASK_ADAPTERS / "text.safetensors").exists()
    back = SeedlingPipeline.from_pretrained(tmp_path / "m")
    a, b = pipe.task_adapters["text"], back.task_adapters["text"]
    assert a.tensors.keys() == b.tensors.keys() and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    six = _tiny_pipeline(SIX)
    six.save_pretrained(tmp_path / "six")
    (tmp_path / "six" / TASK_ADAPTERS).mkdir()
    (tmp_path / "m" / TASK_ADAPTERS / "text.safetensors").rename(tmp_path / "six" / TASK_ADAPTERS / "text.safetensors")
    with pytest.raises(ValueError, match="does not know"):
        SeedlingPipeline.from_pretrained(tmp_path / "six")


def test_a_lora_run_adds_the_text_task_and_exports_it_without_touching_the_rest(tmp_path, monkeypatch):
    """seedling-train --task-adapter lora from a model without the text task: only the LoRA and the text row
    train (resumable); the export is the init folder with that row added, every other weight the
    same bits, and the LoRA as task_adapters/text.safetensors, which the pipeline loads."""
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae")
    init = _tiny_pipeline(SIX)
    init.save_pretrained(tmp_path / "init", dtype=torch.float16)
    monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None: "text")
    args = ["--ae", str(tmp_path / "init" / "autoencoder"), "--token-budget", "400", "--max-steps", "10",
            "--threads", "1", "--out", str(tmp_path / "run"), "--no-curriculum", "--task-adapter", "lora", "--lora-rank", "4", "--lr", "1e-2",
            "--task-weights", "text=1,t2i=0,edit=0,inpaint=0,compose=0,storyboard=0,style=0"]
    train.main(args + ["--init", str(tmp_path / "init"), "--stop-after", "2"])
    train.main(args + ["--stop-after", "2"])  # resumes with the LoRA and the text task
    rows = [r.split(",") for r in (tmp_path / "run" / "loss.csv").read_text().splitlines()]
    assert [r[rows[0].index("task")] for r in rows[1:]] == ["text"] * 4
    out = export_task_adapter(tmp_path / "run", tmp_path / "export")
    base = load_file(str(weights_path(tmp_path / "init" / "dit")))
    new = load_file(str(weights_path(out / "dit")))
    cfg = json.loads((out / "dit" / "config.json").read_text())
    assert cfg["tasks"] == [*SIX, "text"]
    for k, v in base.items():
        if k != "task_embed.weight":
            assert torch.equal(v, new[k]), k
    assert torch.equal(base["task_embed.weight"][:6], new["task_embed.weight"][:6])
    assert not torch.equal(new["task_embed.weight"][6], base["task_embed.weight"][1])  # the text row trained
    pipe = SeedlingPipeline.from_pretrained(out)
    assert set(pipe.task_adapters) == {"text"} and pipe.task_adapters["text"].rank == 4
    assert any(t.abs().max() > 0 for k, t in pipe.task_adapters["text"].tensors.items() if "lora_B" in k)
    ref = SeedlingPipeline.from_pretrained(tmp_path / "init")
    kw = {"steps": 2, "seed": 0, "height": 32, "width": 32, "output_type": "np"}
    assert np.array_equal(pipe("a red circle", **kw).images, ref("a red circle", **kw).images)
    assert pipe('the word "cat"', **kw).parameters["task"] == "text"
    with pytest.raises(SystemExit, match="resume it with --task-adapter lora"):
        train.main([a for a in args if a not in ("--task-adapter", "lora", "--lora-rank", "4")])
    with pytest.raises(SystemExit, match="resume it with --task-adapter lora --lora-rank 4"):
        train.main([a if a != "4" else "8" for a in args])
    with pytest.raises(SystemExit, match="adapts the tasks a run adds"):
        train.main(args[:-2] + ["--out", str(tmp_path / "run2"), "--init", str(tmp_path / "init")])


def test_a_full_task_adapter_is_every_weights_change_in_half_precision(tmp_path, monkeypatch):
    """--task-adapter full: every weight trains on the text task; the export keeps the init's DiT
    (plus the text row) and stores the change of every weight that moved, in float16, as the
    model's own weights are; applied, it gives the trained weights back to float16 precision."""
    init = _tiny_pipeline(SIX)
    init.save_pretrained(tmp_path / "init", dtype=torch.float16)
    monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None: "text")
    args = ["--ae", str(tmp_path / "init" / "autoencoder"), "--token-budget", "400", "--max-steps", "10",
            "--threads", "1", "--out", str(tmp_path / "run"), "--no-curriculum", "--task-adapter", "full",
            "--lr", "1e-3", "--init", str(tmp_path / "init"), "--stop-after", "2",
            "--task-weights", "text=1,t2i=0,edit=0,inpaint=0,compose=0,storyboard=0,style=0"]
    train.main(args)
    out = export_task_adapter(tmp_path / "run", tmp_path / "export")
    pipe = SeedlingPipeline.from_pretrained(out)
    adapter = pipe.task_adapters["text"]
    assert adapter.kind == "full" and "task_embed.weight" not in adapter.tensors
    assert {t.dtype for t in adapter.tensors.values()} == {torch.float16} and len(adapter.tensors) > 10
    ck = max((tmp_path / "run" / "checkpoints").iterdir())
    ema = load_file(str(ck / "ema-model.safetensors"))
    with added_adapters(pipe.dit, [(adapter, 1.0)]):
        for name, prm in pipe.dit.named_parameters():
            if name in adapter.tensors:
                assert torch.allclose(prm, ema[name].float(), atol=2e-3), name
    kw = {"steps": 2, "seed": 0, "height": 32, "width": 32, "output_type": "np"}
    ref = SeedlingPipeline.from_pretrained(tmp_path / "init")
    assert np.array_equal(pipe("a red circle", **kw).images, ref("a red circle", **kw).images)


def test_a_quantized_model_runs_the_text_task_through_a_low_rank_form_of_its_adapter():
    """Quantized layers have no float weight to add a full change to: quantize() turns a full
    task adapter into its SVD LoRA (rank 64 at most), which they take as a forward hook."""
    from seedling.model.adapters import low_rank

    full = Adapter("full", {n: 0.2 * torch.randn_like(p) for n, p in _tiny_pipeline().dit.named_parameters()
                            if n.startswith("blocks.") and n.endswith(".weight") and p.ndim == 2},
                   {"name": "text", "task": "text"})
    kw = {"steps": 2, "seed": 1, "height": 32, "width": 32, "output_type": "np"}
    plain = _tiny_pipeline().quantize("int8")
    without = plain('the word "cat"', **kw).images
    pipe = _tiny_pipeline()
    pipe.task_adapters["text"] = full
    pipe.quantize("int8")
    lora = pipe.task_adapters["text"]
    assert lora.kind == "lora" and lora.metadata["low_rank_of"] == "full"
    for name, delta in full.tensors.items():  # the tiny model's weights are narrower than 64: exact
        a, b = lora.lora_pair(name[: -len(".weight")])
        assert torch.allclose(b @ a, delta, atol=1e-4)
    assert np.abs(pipe('the word "cat"', **kw).images - without).max() > 0.01
    assert np.array_equal(pipe("a red circle", **kw).images, plain("a red circle", **kw).images)
    small = low_rank(full, 4)
    assert all(t.shape[0] == 4 for k, t in small.tensors.items() if k.endswith("lora_A.weight"))
    with pytest.raises(ValueError, match="already lora"):
        low_rank(small, 4)


def test_the_text_task_has_its_own_default_guidance():
    """PipelineConfig.task_guidance: a prompt quoting text runs the text task at its own default
    guidance (the shipped model: 3.5, where the glyphs read back best); other prompts keep the
    model's; a guidance the call gives wins; a config naming an unknown task says so."""
    from seedling.model.pipeline import PipelineConfig

    pipe = _tiny_pipeline()
    pipe.settings = PipelineConfig(guidance=1.0, task_guidance={"text": 3.0})
    kw = {"steps": 1, "seed": 0, "height": 32, "width": 32}
    assert pipe('the word "cat"', **kw).parameters["guidance"] == 3.0
    assert pipe("a red circle", **kw).parameters["guidance"] == 1.0
    assert pipe('the word "cat"', guidance=1.5, **kw).parameters["guidance"] == 1.5
    with pytest.raises(ValueError, match="task table has"):
        PipelineConfig(task_guidance={"txt": 3.0})
    with pytest.raises(ValueError, match="from 0 to 30"):
        PipelineConfig(task_guidance={"text": 99})
    shipped = SeedlingPipeline.from_pretrained("assets/default")
    assert shipped.settings.task_guidance["text"] == 3.5
