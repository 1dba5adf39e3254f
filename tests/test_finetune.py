"""Fine-tuning on the tiny config: dataset validation, a training run end to end, adapters as files
and as exact, reversible edits of a live DiT, and resuming an interrupted run on the same path."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from seedling.model.adapters import (
    Adapter,
    active_adapters,
    applied_adapters,
    load_adapter,
    remove_adapters,
    save_adapter,
    set_adapters,
)
from seedling.model.finetune import (
    CANCEL,
    PAUSE,
    STOP,
    CaptionedImage,
    DatasetError,
    EditPair,
    FinetuneConfig,
    checkpoint_step,
    finetune,
    load_files,
    load_folder,
    load_zip,
    prepare_image,
    trainable_dit,
    validate_examples,
)
from seedling.model.pipeline import SeedlingPipeline

SIZE = 64  # the tiny model's grid is 16 px; 64 px keeps every step a few milliseconds


def wake(pipe: SeedlingPipeline) -> SeedlingPipeline:
    """Random weights everywhere: a zero-initialised output layer would give every LoRA a zero gradient."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pipe.dit.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return wake(SeedlingPipeline.from_config("tiny", seed=0))


def picture(i: int, size=(80, 72)) -> Image.Image:
    im = Image.new("RGB", size, (230, 40 + 20 * i, 60))
    ImageDraw.Draw(im).ellipse((10, 10, 50, 50), fill=(20, 20, 200), outline=(0, 0, 0), width=4)
    return im


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def captioned(n: int = 6) -> list[CaptionedImage]:
    return [CaptionedImage(f"{i}.png", picture(i), f"a blue circle, picture {i}") for i in range(n)]


def config(**kw) -> FinetuneConfig:
    return FinetuneConfig(
        **(
            {
                "steps": 6,
                "batch_size": 4,
                "size": SIZE,
                "rank": 4,
                "sample_every": 0,
                "checkpoint_every": 2,
                "learning_rate": 1e-2,
            }
            | kw
        )
    )


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# -- dataset ------------------------------------------------------------------------------------
def test_validation_reports_every_problem_in_words():
    with pytest.raises(DatasetError, match="no training images"):
        validate_examples([])
    bad = [
        CaptionedImage("a.png", picture(0), ""),
        CaptionedImage("b.png", picture(1, size=(40, 200)), "tall and thin"),
        EditPair("c_before.png", picture(2), picture(3), "make it red"),
    ]
    with pytest.raises(DatasetError) as err:
        validate_examples(bad)
    text = str(err.value)
    assert "a.png: no caption (type one, or add a.txt beside it)" in text
    assert "b.png: 40x200 pixels is too small" in text and "at least 64 px" in text
    assert "mixed" in text and len(err.value.problems) == 3


def test_unreadable_files_and_unmatched_pairs_are_named(tmp_path):
    (tmp_path / "ok.png").write_bytes(png(picture(0)))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="broken.png is not a picture in a format this app reads"):
        load_folder(tmp_path)
    entries = {"x_before.png": png(picture(0)), "x.txt": b"make it red"}
    with pytest.raises(DatasetError, match="x_before.png: no matching 'after' image"):
        load_zip(_zip(entries))
    with pytest.raises(DatasetError, match="not a readable zip"):
        load_zip(b"PK but not really")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_sidecar_captions_pairs_and_uploaded_files(tmp_path):
    zipped = _zip(
        {
            "set/cat.png": png(picture(0)),
            "set/cat.txt": b"a cat, flat colours\n",
            "set/dog.png": png(picture(1)),
            "__MACOSX/set/._dog.png": b"junk",
            "set/.DS_Store": b"junk",
        }
    )
    examples = load_zip(zipped)
    assert [(e.name, e.caption) for e in examples] == [
        ("set/cat.png", "a cat, flat colours"),
        ("set/dog.png", ""),
    ]
    with pytest.raises(DatasetError, match="dog.png: no caption"):
        validate_examples(examples)

    pairs = load_zip(
        _zip({"before/a.png": png(picture(0)), "after/a.png": png(picture(1)), "a.txt": b"redden"})
    )
    assert len(pairs) == 1 and isinstance(pairs[0], EditPair) and pairs[0].instruction == "redden"

    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "cat.png").write_bytes(png(picture(0)))
    (tmp_path / "cat.txt").write_text("from the sidecar")
    (tmp_path / "set.zip").write_bytes(zipped)
    files = [tmp_path / "up" / "cat.png", tmp_path / "cat.txt", tmp_path / "set.zip"]
    got = load_files(files, captions={"set/set/dog.png": "typed in the UI"})
    assert [(e.name, e.caption) for e in got] == [
        ("cat.png", "from the sidecar"),
        ("set/set/cat.png", "a cat, flat colours"),
        ("set/set/dog.png", "typed in the UI"),
    ]
    validate_examples(got)


def test_prepare_image_centre_crops_to_the_grid():
    im = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (50, 0, 150, 100))  # a red square in the middle, transparent sides
    out = prepare_image(im, 64)
    assert out.size == (64, 64) and out.mode == "RGB"
    assert out.getpixel((1, 32)) == out.getpixel((62, 32)) == (255, 0, 0)  # the centre square, sides cut off
    assert prepare_image(Image.new("RGBA", (64, 64), (0, 0, 0, 0))).getpixel((5, 5)) == (255, 255, 255)


# -- training -----------------------------------------------------------------------------------
def test_tiny_lora_run_end_to_end(pipe, tmp_path):
    reports = []
    before = state(pipe.dit)
    result = finetune(
        pipe,
        captioned(),
        config(sample_every=3),
        tmp_path / "work",
        callback=reports.append,
        metadata={"name": "blue"},
    )
    assert result.status == "done" and result.step == 6 and len(result.losses) == 6
    assert all(np.isfinite(result.losses))
    assert [r.step for r in reports] == list(range(7)) and reports[0].loss is None
    sampled = [r for r in reports if r.samples]
    assert [r.step for r in sampled] == [0, 3, 6]
    assert len(sampled[0].samples) == 3 and sampled[0].samples[0].size == (SIZE, SIZE)
    assert sampled[0].sample_prompts[0] == "a blue circle, picture 0"
    # base samples differ from trained ones: training moved the weights the sampler uses
    assert not np.array_equal(np.asarray(sampled[0].samples[0]), np.asarray(sampled[-1].samples[0]))

    adapter = result.adapter
    depth = pipe.dit.config.depth
    assert adapter.kind == "lora" and len(adapter.lora_modules()) == 4 * depth
    assert adapter.metadata["name"] == "blue" and adapter.metadata["steps"] == 6
    assert all(adapter.lora_pair(m)[1].abs().max() > 0 for m in adapter.lora_modules())  # B left zero
    assert all(torch.equal(v, before[k]) for k, v in pipe.dit.state_dict().items())  # base untouched


def test_adapter_file_round_trip_and_exact_apply_remove(pipe, tmp_path):
    result = finetune(pipe, captioned(), config(), tmp_path / "w", metadata={"name": "blue"})
    path = save_adapter(result.adapter, tmp_path / "blue.safetensors")
    assert path.with_suffix(".json").exists()
    loaded = load_adapter(path)
    assert loaded.kind == "lora" and loaded.rank == 4 and loaded.scale == 1.0 and loaded.name == "blue"
    assert loaded.tensors.keys() == result.adapter.tensors.keys()
    assert all(torch.equal(loaded.tensors[k], v) for k, v in result.adapter.tensors.items())

    other = Adapter(
        "lora",
        {k: torch.randn_like(v) * 0.1 for k, v in loaded.tensors.items()},
        {**loaded.metadata, "name": "noise", "alpha": 8.0},
    )
    original = state(pipe.dit)
    set_adapters(pipe.dit, [(loaded, 0.7), (other, -0.5)])
    assert active_adapters(pipe.dit) == [("blue", 0.7), ("noise", -0.5)]
    name = loaded.lora_modules()[0]
    a1, b1 = loaded.lora_pair(name)
    a2, b2 = other.lora_pair(name)
    expect = original[f"{name}.weight"] + 0.7 * (b1 @ a1) - 0.5 * 2.0 * (b2 @ a2)
    torch.testing.assert_close(pipe.dit.get_submodule(name).weight, expect, rtol=1e-5, atol=1e-6)
    set_adapters(pipe.dit, [(loaded, 1.0)])  # replacing the set starts again from the original
    remove_adapters(pipe.dit)
    assert active_adapters(pipe.dit) == []
    assert all(torch.equal(v, original[k]) for k, v in pipe.dit.state_dict().items())  # bit for bit

    with pytest.raises(ValueError, match="trained for another model"):
        wrong = Adapter(
            "lora",
            {
                "blocks.7.qkv.lora_A.weight": torch.zeros(4, 64),
                "blocks.7.qkv.lora_B.weight": torch.zeros(192, 4),
            },
            {"rank": 4, "alpha": 4},
        )
        set_adapters(pipe.dit, [(wrong, 1.0)])
    assert all(torch.equal(v, original[k]) for k, v in pipe.dit.state_dict().items())


def test_merged_adapter_reproduces_the_trained_model(pipe, tmp_path):
    """Merging alpha/r * B @ A into the base weights is the same function as peft's LoRA layers."""
    cfg = config(rank=8, alpha=4.0)
    result = finetune(pipe, captioned(), cfg, tmp_path / "w", metadata={"name": "m"})
    x = torch.randn(2, 1, 4, 4, 4)
    t = torch.tensor([0.3, 0.8])
    states, pooled = pipe.text_encoder.encode(["a blue circle", ""])
    peft_model = trainable_dit(pipe.dit, cfg).eval()
    peft_model.load_state_dict(
        {
            k.replace("lora_A.", "lora_A.default.").replace("lora_B.", "lora_B.default."): v
            for k, v in result.adapter.tensors.items()
        },
        strict=False,
    )
    with torch.no_grad():
        expect = peft_model(x, t, states, pooled, "t2i")
        with applied_adapters(pipe.dit, [(result.adapter, 1.0)]):
            got = pipe.dit(x, t, states, pooled, "t2i")
        base = pipe.dit(x, t, states, pooled, "t2i")
    torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(base, expect)


def test_lora_on_a_quantized_model_uses_hooks_and_comes_off_exactly(tmp_path):
    qpipe = wake(SeedlingPipeline.from_config("tiny", seed=0))
    result = finetune(qpipe, captioned(), config(steps=2), tmp_path / "w", metadata={"name": "q"})
    from seedling.kernels.quant import quantize

    # the block linears only: pipe.quantize("int8") also replaces the timestep MLP, which
    # TimestepEmbedder reads `.weight.dtype` from (reported to the model owner)
    quantize(qpipe.dit, "int8", skip=lambda name, module: not name.startswith("blocks."))
    assert type(qpipe.dit.blocks[0].qkv).__name__ == "Int8WeightLinear"
    kw = {"prompt": "a blue circle", "seed": 5, "height": SIZE, "width": SIZE, "steps": 2}
    plain = np.asarray(qpipe(**kw).images[0])
    with applied_adapters(qpipe.dit, [(result.adapter, 2.0)]):
        styled = np.asarray(qpipe(**kw).images[0])
    assert not np.array_equal(plain, styled)
    assert np.array_equal(plain, np.asarray(qpipe(**kw).images[0]))


def test_full_finetune_gives_a_full_adapter(pipe, tmp_path):
    result = finetune(
        pipe,
        captioned(4),
        config(method="full", steps=2, learning_rate=1e-3),
        tmp_path / "w",
        metadata={"name": "full"},
    )
    adapter = result.adapter
    assert adapter.kind == "full" and "blocks.0.qkv.weight" in adapter.tensors
    path = save_adapter(adapter, tmp_path / "full.safetensors")
    original = state(pipe.dit)
    with applied_adapters(pipe.dit, [(load_adapter(path), 1.0)]):
        torch.testing.assert_close(
            pipe.dit.blocks[0].qkv.weight,
            original["blocks.0.qkv.weight"] + adapter.tensors["blocks.0.qkv.weight"],
        )
    assert all(torch.equal(v, original[k]) for k, v in pipe.dit.state_dict().items())


def test_edit_pairs_train_the_edit_task(pipe, tmp_path):
    pairs = [
        EditPair(f"{i}_before.png", picture(i), picture(i + 1).convert("L").convert("RGB"), "make it grey")
        for i in range(4)
    ]
    reports = []
    result = finetune(pipe, pairs, config(steps=2, sample_every=2), tmp_path / "w", callback=reports.append)
    assert result.status == "done" and result.adapter.metadata["task"] == "edit"
    assert reports[-1].samples and reports[-1].sample_prompts[0] == "make it grey"


# -- interruption -------------------------------------------------------------------------------
def test_resume_after_a_crash_follows_the_uninterrupted_run(pipe, tmp_path):
    straight = finetune(pipe, captioned(), config(steps=8), tmp_path / "straight").adapter

    def crash_at_5(progress):
        if progress.step == 5:
            raise RuntimeError("power cut")

    work = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="power cut"):
        finetune(pipe, captioned(), config(steps=8), work, callback=crash_at_5)
    assert checkpoint_step(work) == 4  # checkpoint_every=2: steps 4..5 are redone
    resumed = finetune(pipe, captioned(), config(steps=8), work)
    assert resumed.status == "done" and len(resumed.losses) == 8
    for k, v in straight.tensors.items():
        torch.testing.assert_close(resumed.adapter.tensors[k], v, rtol=0, atol=1e-6)


def test_stop_returns_the_adapter_trained_so_far_with_an_eta(pipe, tmp_path):
    reports = []

    def stop_at_3(progress):
        reports.append(progress)
        return STOP if progress.step == 3 else None

    stopped = finetune(pipe, captioned(), config(steps=8, checkpoint_every=100), tmp_path / "w", callback=stop_at_3)
    assert stopped.status == "stopped" and stopped.step == 3 and checkpoint_step(tmp_path / "w") == 3
    assert stopped.adapter.metadata["stopped_at"] == 3 and stopped.adapter.metadata["steps"] == 3
    # the adapter is exactly the checkpoint the work folder keeps (peft's ".default" adapter name aside)
    from safetensors.torch import load_file

    from seedling.model.training import latest_checkpoint

    saved = load_file(str(latest_checkpoint(tmp_path / "w") / "model.safetensors"))
    assert {k.replace(".default", ""): v for k, v in saved.items()}.keys() == stopped.adapter.tensors.keys()
    for k, v in saved.items():
        assert torch.equal(stopped.adapter.tensors[k.replace(".default", "")], v), k
    timed = [r for r in reports if r.step > 0]
    assert all(r.seconds_per_step > 0 and r.eta == pytest.approx((8 - r.step) * r.seconds_per_step) for r in timed)


def test_pause_checkpoints_and_resumes_and_cancel_stops(pipe, tmp_path):
    work = tmp_path / "w"
    paused = finetune(
        pipe,
        captioned(),
        config(steps=8, checkpoint_every=100),
        work,
        callback=lambda p: PAUSE if p.step == 3 else None,
    )
    assert paused.status == "paused" and paused.adapter is None and checkpoint_step(work) == 3
    done = finetune(pipe, captioned(), config(steps=8, checkpoint_every=100), work)
    straight = finetune(pipe, captioned(), config(steps=8, checkpoint_every=100), tmp_path / "s")
    for k, v in straight.adapter.tensors.items():
        torch.testing.assert_close(done.adapter.tensors[k], v, rtol=0, atol=1e-6)

    cancelled = finetune(
        pipe, captioned(), config(steps=8), tmp_path / "c", callback=lambda p: CANCEL if p.step == 2 else None
    )
    assert cancelled.status == "cancelled" and cancelled.adapter is None
    with pytest.raises(ValueError, match="trained on other images"):
        finetune(pipe, captioned(3), config(steps=8), work)


def test_zip_bombs_stop_at_the_limit(monkeypatch):
    """The uncompressed limit holds for honest headers and for headers that under-declare sizes."""
    import seedling.model.finetune_data as fd

    monkeypatch.setattr(fd, "MAX_ZIP_BYTES", 1 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", b"\0" * (3 << 20))  # 3 MB of zeros: a few KB compressed
    honest = buf.getvalue()
    assert len(honest) < 64 << 10
    with pytest.raises(DatasetError, match="MB uncompressed"):
        load_zip(honest)
    # rewrite the declared uncompressed size (local header and central directory) to 10 bytes
    lying = honest.replace((3 << 20).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    assert lying != honest
    with pytest.raises(DatasetError, match="MB uncompressed|not a readable zip"):
        load_zip(lying)


def test_training_pictures_pass_the_same_size_gate_before_decoding(tmp_path):
    import seedling.model.finetune_data as fd
    """Regression: a 12000x12000 PNG (a few hundred KB) was accepted and decoded in full. The header
    is refused now, before any pixel is decoded; a big allowed photo is kept at 1024 px short side."""

    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 12000)).save(huge)
    assert huge.stat().st_size < 2_000_000
    (tmp_path / "huge.txt").write_text("a black square")
    with pytest.raises(DatasetError, match=r"huge.png .*too many pixels.*scale it down"):
        fd.load_files([huge, tmp_path / "huge.txt"])
    big = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), "red").save(big)
    (tmp_path / "big.txt").write_text("a red field")
    (example,) = fd.load_files([big, tmp_path / "big.txt"])
    assert example.image.size == (1536, 1024)
