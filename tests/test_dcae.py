"""The deep-compression autoencoder (model/dcae.py), its trainer and its natively rendered data."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from seedling.model.data import ae_native as an
from seedling.model.data import knowledge as kn
from seedling.model.data.icons import load_icons, render_icon
from seedling.model.dcae import (
    DCAE_CONFIGS,
    DCAutoencoder,
    compression_ratio,
    reference_decode,
    reference_encode,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DCAutoencoder.from_named("tiny-f32").eval()


@pytest.fixture(scope="module")
def icons():
    return load_icons()


def test_f32_turns_512_into_16x16_and_back(tiny):
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    with torch.no_grad():
        z = tiny.encode(x)
        assert z.shape == (1, 8, 16, 16)
        assert tiny.decode(z).shape == (1, 3, 512, 512)


@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (160, 32)])
def test_any_multiple_of_32_works(tiny, hw):
    with torch.no_grad():
        rec, z = tiny(torch.zeros(2, 3, *hw))
    assert z.shape == (2, 8, hw[0] // 32, hw[1] // 32)
    assert rec.shape == (2, 3, *hw)


def test_a_size_that_is_no_multiple_is_refused_with_what_to_do(tiny):
    with pytest.raises(ValueError, match=r"multiples of 32; got 500x512: resize or crop it to 512x512"):
        tiny.encode(torch.zeros(1, 3, 500, 512))


def test_named_configs_have_the_factor_their_name_says():
    names = [n for n in DCAE_CONFIGS if not n.startswith("tiny")]
    assert {"f8c8", "f16c16", "f32c32", "f32c64"} <= set(names)
    for name in names:
        cfg = DCAE_CONFIGS[name]
        assert 2 ** len(cfg.enc_channels) == int(name[1:].split("c")[0])
        assert cfg.latent_channels == int(name.split("c")[-1])


def test_f32c64_keeps_the_16x16_grid_with_twice_the_channels():
    model = DCAutoencoder.from_named("f32c64").eval()
    with torch.no_grad():
        z = model.encode_raw(torch.zeros(1, 3, 512, 512))
        assert z.shape == (1, 64, 16, 16)  # 64 tokens at patch 2, as f32c32
        assert model.decode_raw(z).shape == (1, 3, 512, 512)
    assert compression_ratio(model) == 48


def test_widths_the_shortcuts_cannot_group_are_refused():
    with pytest.raises(ValueError, match="divide 4x each other"):
        DCAutoencoder(latent_channels=4, enc_channels=(8, 48), enc_depth=(1, 1), dec_channels=(8, 16), dec_depth=(1, 1))


def test_residual_blocks_start_as_identity():
    """initialize_weights zeroes each residual branch's gain, so training starts from the
    space/channel shortcut path and grows the residuals from there."""
    from seedling.model.dcae import ResBlock

    m = DCAutoencoder.from_named("tiny-f32")
    blocks = [b for b in m.modules() if isinstance(b, ResBlock)]
    assert blocks
    for b in blocks:
        x = torch.randn(1, b.conv1.in_channels, 8, 8)
        assert torch.equal(b(x), x)


def test_save_and_from_pretrained_round_trip(tmp_path):
    tiny = DCAutoencoder.from_named("tiny-f32").eval()
    tiny.register_to_config(latent_shift=0.25, latent_scale=2.0)
    tiny.save_pretrained(tmp_path)
    back = DCAutoencoder.from_pretrained(tmp_path)
    assert back.config.latent_shift == 0.25 and back.config.latent_scale == 2.0
    assert list(back.config.enc_channels) == list(tiny.config.enc_channels)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(back.encode(x), tiny.encode(x))
        assert torch.equal(back.decode(tiny.encode(x)), tiny.decode(tiny.encode(x)))


def _rows(path):
    with open(path) as f:
        return [(r["step"], r["loss"], r["psnr"]) for r in csv.DictReader(f)]


def test_trainer_resumes_where_it_stopped(tmp_path, monkeypatch):
    """3 + 3 steps with a kill in between log exactly what 6 steps in one go log: the step count,
    the weights, AdamW's moments and both random streams all continue."""
    from seedling.model import train_dcae

    args = ["--config", "tiny-f32", "--batch", "2", "--crop", "32", "--size", "128", "--warmup", "2"]
    assert train_dcae.main(args + ["--out", str(tmp_path / "a"), "--stop-after", "3"]) == 3
    assert train_dcae.main(args + ["--out", str(tmp_path / "a"), "--stop-after", "3"]) == 6
    assert train_dcae.main(args + ["--out", str(tmp_path / "b"), "--stop-after", "6"]) == 6
    a, b = _rows(tmp_path / "a" / "loss.csv"), _rows(tmp_path / "b" / "loss.csv")
    assert [r[0] for r in a] == [str(i) for i in range(1, 7)]
    assert a == b
    back = DCAutoencoder.from_pretrained(tmp_path / "a" / "model")
    assert back.config.latent_scale != 1.0  # the export measured the latent statistics


def test_crop_workers_deliver_every_step_in_order_whatever_their_number(icons):
    """The batches of steps 3..8 are the same drawn in this process or by 2 or 3 worker
    processes: each is a function of (seed, step) alone."""
    train = an.split_icons(icons)[0]

    def drawn(workers):
        loader = torch.utils.data.DataLoader(an.CropBatches(7, 3, 9, train, 2, 32, 128), batch_size=None,
                                             num_workers=workers, collate_fn=an.as_delivered)
        return list(loader)

    alone = drawn(0)
    assert [s for s, _ in alone] == list(range(3, 9))
    assert all(np.array_equal(c, an.step_crops(7, s, train, 2, 32, 128)) for s, c in alone)
    assert not np.array_equal(alone[0][1], alone[1][1])
    for workers in (2, 3):
        got = drawn(workers)
        assert [s for s, _ in got] == list(range(3, 9))
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(alone, got))


def test_trainer_with_crop_workers_resumes_exactly(tmp_path):
    """With --workers the run's numbers do not depend on the worker count, and 2 + 2 steps with a
    stop in between log what 4 steps in one go log."""
    from seedling.model import train_dcae

    args = ["--config", "tiny-f32", "--batch", "2", "--crop", "32", "--size", "128", "--warmup", "2"]
    assert train_dcae.main(args + ["--workers", "1", "--out", str(tmp_path / "a"), "--stop-after", "2"]) == 2
    assert train_dcae.main(args + ["--workers", "1", "--out", str(tmp_path / "a"), "--stop-after", "2"]) == 4
    assert train_dcae.main(args + ["--workers", "2", "--out", str(tmp_path / "b"), "--stop-after", "4"]) == 4
    a, b = _rows(tmp_path / "a" / "loss.csv"), _rows(tmp_path / "b" / "loss.csv")
    assert [r[0] for r in a] == ["1", "2", "3", "4"]
    assert a == b


def test_decoder_only_keeps_the_encoder_and_its_latent_statistics(tmp_path):
    from seedling.model import train_dcae

    args = ["--config", "tiny-f32", "--batch", "2", "--crop", "32", "--size", "128", "--warmup", "2"]
    train_dcae.main(args + ["--out", str(tmp_path / "a"), "--stop-after", "2"])
    first = DCAutoencoder.from_pretrained(tmp_path / "a" / "model")
    train_dcae.main(args + ["--init", str(tmp_path / "a" / "model"), "--decoder-only",
                            "--out", str(tmp_path / "d"), "--stop-after", "2"])
    tuned = DCAutoencoder.from_pretrained(tmp_path / "d" / "model")
    enc0, enc1 = first.encoder.state_dict(), tuned.encoder.state_dict()
    assert all(torch.equal(enc0[k], enc1[k]) for k in enc0)
    dec0, dec1 = first.decoder.state_dict(), tuned.decoder.state_dict()
    assert any(not torch.equal(dec0[k], dec1[k]) for k in dec0)
    assert (tuned.config.latent_shift, tuned.config.latent_scale) == (first.config.latent_shift,
                                                                      first.config.latent_scale)


def test_decoder_only_without_a_model_to_start_from_says_what_to_add(tmp_path, capsys):
    from seedling.model import train_dcae

    with pytest.raises(SystemExit):
        train_dcae.main(["--config", "tiny-f32", "--decoder-only", "--out", str(tmp_path / "x")])
    assert "--init FOLDER" in capsys.readouterr().err


def test_scene_at_512_is_drawn_natively_not_upscaled():
    """A native 512 px render keeps aliased palette colours and steps its slanted edges one pixel
    at a time; a 4x upscale of the 128 px render has 4 px stair steps (nearest) or blended colours."""
    scene = kn.ShapeScene((kn.ShapeObject("red", "triangle", "center", 35),))
    big = kn.render_scene(scene, 512)
    small = kn.render_scene(scene, 128)
    assert {tuple(c) for c in big.reshape(-1, 3)} == {kn.WHITE, kn.PALETTE["red"]}
    left_edge = np.array([np.flatnonzero(row != 255)[0] for row in big[..., 1] if (row != 255).any()])
    assert set(np.diff(left_edge)) <= {0, -1} and (np.diff(left_edge) == -1).sum() > 40
    steps = np.flatnonzero(np.diff(left_edge))
    assert np.diff(steps).min() < 4  # some steps closer than the 4 px a nearest upscale would leave
    assert np.array_equal(kn.render_scene(scene), small)  # the default size is unchanged


def test_words_and_icons_at_512_are_sharper_than_an_upscale(icons):
    def gradient_energy(a):
        g = a.astype(np.float32).mean(-1)
        return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())

    spec = kn.WordSpec("Hello", font="default")
    native, small = kn.render_word(spec, 512), kn.render_word(spec)
    upscaled = np.asarray(Image.fromarray(small).resize((512, 512), Image.BICUBIC))
    assert gradient_energy(native) > 1.5 * gradient_energy(upscaled)
    icon = icons[0]
    native_icon = render_icon(icon.char, 512)[..., :3]
    up_icon = np.asarray(Image.fromarray(icon.rgba).resize((512, 512), Image.BICUBIC))[..., :3]
    assert gradient_energy(native_icon) > 1.5 * gradient_energy(up_icon)
    assert np.array_equal(render_icon(icon.char, 128), icon.rgba)  # same framing as the cache


def test_heldout_icons_are_disjoint_and_the_set_is_fixed(icons):
    train, held = an.split_icons(icons)
    assert held and not {i.name for i in train} & {i.name for i in held}
    assert len(train) + len(held) == len(icons)
    a, b = an.heldout_set(icons, 2, size=256), an.heldout_set(icons, 2, size=256)
    assert [h.category for h in a] == [c for c in an.CATEGORIES for _ in range(2)]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert all(h.image.shape == (256, 256, 3) for h in a)
    assert all(h.text for h in a if h.category == "words")


def test_random_crops_have_content(icons):
    crops = an.random_crops(np.random.default_rng(0), an.split_icons(icons)[0], 12, 64, size=256)
    assert crops.shape == (12, 64, 64, 3) and crops.dtype == np.uint8
    assert sum(c.std() > 0 for c in crops) >= 10


def test_whole_image_crops_are_all_different_images(icons):
    crops = an.random_crops(np.random.default_rng(0), an.split_icons(icons)[0], 4, 128, size=128)
    assert all(not np.array_equal(crops[i], crops[j]) for i in range(4) for j in range(i + 1, 4))


def test_parse_mix_normalises_and_says_what_to_write():
    assert an.parse_mix("icons=3, words=1") == {"icons": 0.75, "words": 0.25}
    for bad, says in [("fonts=1", "category=weight"), ("icons", "category=weight"), ("icons=a", "a number"),
                      ("icons=0", "positive weight"), ("icons=1,words=-1", "none negative")]:
        with pytest.raises(ValueError, match=says):
            an.parse_mix(bad)


def test_crops_follow_the_mix_given(icons, monkeypatch):
    drawn = []
    real = an.render_image

    def spy(category, rng, icons_, size=512):
        drawn.append(category)
        return real(category, rng, icons_, size)

    monkeypatch.setattr(an, "render_image", spy)
    train = an.split_icons(icons)[0]
    icons_only = an.parse_mix("icons=1")
    an.random_crops(np.random.default_rng(0), train, 6, 64, size=128, per_image=1, mix=icons_only)
    assert set(drawn) == {"icons"}
    drawn.clear()
    an.step_crops(3, 2, train, 40, 64, 128, mix=an.parse_mix("words=1,charts=1"))
    assert set(drawn) == {"words", "charts"}
    drawn.clear()
    an.random_crops(np.random.default_rng(0), train, 40, 64, size=128, per_image=1)  # the default mix
    assert set(drawn) == set(an.TRAIN_MIX)


def test_train_dcae_refuses_a_mix_it_cannot_draw(tmp_path, capsys):
    from seedling.model import train_dcae

    with pytest.raises(SystemExit):
        train_dcae.main(["--out", str(tmp_path / "r"), "--mix", "fonts=1"])
    assert "category=weight" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["tiny-f32", "f32c32"])
def test_shortcuts_folded_into_conv_taps_are_the_same_function_and_gradient(name):
    torch.manual_seed(0)
    model = DCAutoencoder.from_named(name)
    with torch.no_grad():  # trained-like: residual branches on, so the taps are not all that runs
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    z_ref = reference_encode(model, x)
    rec_ref = reference_decode(model, z_ref)
    z = model.encode_raw(x)
    rec = model.decode_raw(z)
    assert torch.allclose(z, z_ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(rec, rec_ref, atol=1e-4, rtol=1e-4)
    # the same gradients: the taps are constants beside the weights
    g_ref = torch.autograd.grad(rec_ref.square().mean(), list(model.parameters()))
    g = torch.autograd.grad(model.decode_raw(model.encode_raw(x)).square().mean(), list(model.parameters()))
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-3) for a, b in zip(g, g_ref))
    # the taps are not weights: nothing new is saved
    assert not any("shortcut" in k for k in model.state_dict())


def test_folded_shortcuts_follow_the_model_to_half_precision(tmp_path):
    model = DCAutoencoder.from_named("tiny-f32")
    model.save_pretrained(tmp_path / "m")
    loaded = DCAutoencoder.from_pretrained(tmp_path / "m").to(torch.float16)
    assert loaded.decoder.in_shortcut.dtype == torch.float16
    z = torch.randn(1, loaded.config.latent_channels, 2, 2, dtype=torch.float16)
    assert loaded.decode_raw(z).dtype == torch.float16
