"""Icon rasters at a training size: the same pixels as the font, read from one mapped file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seedling.model.data import icons as ic


@pytest.fixture()
def no_rasters():
    yield
    ic.use_rasters(None)


def test_rasters_give_the_fonts_pixels_and_fall_back_for_the_rest(tmp_path, no_rasters):
    icons = ic.load_icons()[:4]
    path = ic.write_rasters(icons[:3], 64, tmp_path)
    assert path == ic.raster_file(tmp_path, 64) and path.exists()
    assert json.loads(path.with_suffix(".json").read_text())["chars"] == [i.char for i in icons[:3]]
    assert not list(tmp_path.glob("*.tmp*")), "the temporary file was renamed into place"
    assert ic.use_rasters(tmp_path) == [64]
    for icon in icons:  # the fourth is not in the file: drawn from the font
        got = ic.render_icon(icon.char, 64)
        assert got.shape == (64, 64, 4) and type(got) is np.ndarray  # a copy, not a view of the file
        assert np.array_equal(got, ic._rasterise(icon.char, 64))
    assert np.array_equal(ic.render_icon(icons[0].char, 72), ic._rasterise(icons[0].char, 72))  # other sizes too
    assert ic.use_rasters(None) == [] and ic.RASTERS_ENV not in os.environ


def test_the_file_is_what_is_read_also_in_a_fresh_process(tmp_path, no_rasters):
    """A data worker finds the rasters by the environment: overwrite the file with a marker and a
    new process, given only the folder's name, returns the marker."""
    icons = ic.load_icons()[:2]
    path = ic.write_rasters(icons, 48, tmp_path)
    arr = np.load(path, mmap_mode="r+")
    arr[1] = 7
    arr.flush()
    del arr
    ic.use_rasters(tmp_path)
    assert (ic.render_icon(icons[1].char, 48) == 7).all()
    code = ("import sys; from seedling.model.data.icons import render_icon; "
            "a = render_icon(sys.argv[1], 48); print(int(a.min()), int(a.max()))")
    out = subprocess.run([sys.executable, "-c", code, icons[1].char], capture_output=True, text=True, check=True,
                         env={**os.environ, ic.RASTERS_ENV: str(tmp_path)})
    assert out.stdout.split() == ["7", "7"]


def test_rasters_of_another_font_are_not_used(tmp_path, no_rasters):
    icons = ic.load_icons()[:2]
    path = ic.write_rasters(icons, 48, tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "font_bytes": meta["font_bytes"] + 1}))
    with pytest.warns(UserWarning, match="another font"):
        assert ic.use_rasters(tmp_path) == []
    assert np.array_equal(ic.render_icon(icons[0].char, 48), ic._rasterise(icons[0].char, 48))


def test_ensure_rasters_writes_once_and_again_for_new_icons(tmp_path, no_rasters):
    icons = ic.load_icons()[:3]
    assert ic.ensure_rasters(icons[:2], 40, tmp_path) is True
    stamp = ic.raster_file(tmp_path, 40).stat().st_mtime_ns
    assert ic.ensure_rasters(icons[:2], 40, tmp_path) is False
    assert ic.raster_file(tmp_path, 40).stat().st_mtime_ns == stamp
    assert ic.ensure_rasters(icons, 40, tmp_path, processes=2) is True  # a glyph the file lacks: rewritten
    assert ic.use_rasters(tmp_path) == [40]
    assert np.array_equal(ic.render_icon(icons[2].char, 40), ic._rasterise(icons[2].char, 40))


def test_icon_sizes_are_every_size_a_sampler_rasterises(monkeypatch):
    """`tasks.icon_sizes(size)` lists what `seedling-train --size` writes rasters for: every size
    at which a sampler of that size draws an icon from the font, over every task."""
    from seedling.model.data import tasks
    from seedling.model.task_table import TASK_NAMES

    seen = set()
    rasterise = ic._rasterise
    monkeypatch.setattr(ic, "_rasterise", lambda char, size: seen.add(size) or rasterise(char, size))
    sampler = tasks.TaskSampler(ic.load_icons(limit=40), seed=0, size=256, storyboard_panels=True)
    rng = np.random.default_rng(0)
    for task in TASK_NAMES:
        for _ in range(12):
            sampler.sample(task, rng)
    assert seen and seen <= set(tasks.icon_sizes(256)), (seen, tasks.icon_sizes(256))
    assert len(seen) >= 4 and tasks.icon_sizes(128) == []
