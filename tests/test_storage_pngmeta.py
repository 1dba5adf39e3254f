"""A1111-style "parameters" text: exact round-trips, A1111 compatibility, PNG chunk survival."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from seedling.storage.pngmeta import format_parameters, parse_parameters, png_info, read_parameters

KEYS = ["Steps", "CFG scale", "Image CFG scale", "Seed", "Size", "Task", "Model", "Inputs"]
prompts = st.text().filter(lambda p: "Negative prompt:" not in p)
values = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text())


@given(prompt=prompts, fields=st.dictionaries(st.sampled_from(KEYS), values, min_size=1))
def test_round_trip(prompt, fields):
    text = format_parameters(prompt, fields)
    assert parse_parameters(text) == (prompt, {k: str(v) for k, v in fields.items()})


def test_reads_a1111_text():
    text = (
        "masterpiece, a fox\nNegative prompt: blurry, low quality\n"
        'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, Lora hashes: "a: 1, b: 2"'
    )
    prompt, fields = parse_parameters(text)
    assert prompt == "masterpiece, a fox"
    assert fields == {
        "Negative prompt": "blurry, low quality",
        "Steps": "20",
        "Sampler": "Euler a",
        "CFG scale": "7",
        "Seed": "123",
        "Size": "512x512",
        "Lora hashes": "a: 1, b: 2",
    }


def test_text_without_fields_is_all_prompt():
    assert parse_parameters("just a prompt, with a comma") == ("just a prompt, with a comma", {})


def test_survives_a_png_file():
    text = format_parameters("ein Fuchs im Schnee ü ✓", {"Steps": 4, "Seed": 9})
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=png_info(text))
    buf.seek(0)
    with Image.open(buf) as im:
        assert read_parameters(im) == text
