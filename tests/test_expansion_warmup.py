"""The first prompt expansion waits for the expander to load (about a minute on a CPU): the UI
says so before the wait, turning expansion on starts the load early, and a Generate that has to
expand first says why nothing is queued yet."""

from __future__ import annotations

import threading

import gradio as gr
import pytest

from seedling.backend.prompt_expansion import PromptExpansionService
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.blocks import build_ui
from tests.test_prompt_expansion_app import FakeExpander


class SlowLoad:
    """An expander factory that loads only when the test lets it."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.loads = 0

    def __call__(self, folder):
        self.loads += 1
        self.started.set()
        assert self.release.wait(30), "the test never let the load finish"
        return FakeExpander()


def _handler(demo, name: str):
    return next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == name)


def test_the_note_says_loading_then_how_long_then_nothing():
    load = SlowLoad()
    service = PromptExpansionService(factory=load)
    assert service.warm_up_note() == "Loading the prompt expander (first use, about a minute)…"
    assert not service.ready
    assert service.warm_up_in_background()
    assert load.started.wait(10)
    assert not service.warm_up_in_background()  # one load, however often the toggle flips
    assert service.warm_up_note().startswith("Still loading the prompt expander (first use, about a minute): ")
    assert service.warm_up_note().endswith(" s so far…")
    load.release.set()
    assert service.expand("a fox", "t2i").prompt == "a fox"  # waits for the load under way
    assert service.ready and service.warm_up_note() is None and load.loads == 1


def test_a_failed_load_is_not_ready_and_is_tried_again():
    calls = []

    def broken(folder):
        calls.append(folder)
        raise OSError("no vocabulary")

    service = PromptExpansionService(factory=broken)
    with pytest.raises(OSError):
        service.expand("a fox", "t2i")
    assert not service.ready and service.warm_up_note().startswith("Loading")
    with pytest.raises(OSError):
        service.expand("a fox", "t2i")
    assert len(calls) == 2


def test_expand_and_the_toggle_say_what_the_wait_is(services):
    load = SlowLoad()
    services.expansion = PromptExpansionService(factory=load)
    demo = build_ui(services)
    warming, turned = _handler(demo, "warming"), _handler(demo, "turned")
    assert warming() == "⏳ Loading the prompt expander (first use, about a minute)…"
    assert turned(False) == gr.skip()  # turning it off starts nothing
    assert load.loads == 0
    assert turned(True) == "⏳ Loading the prompt expander (first use, about a minute)…"
    assert turned(True) == gr.skip()  # already loading: said once
    assert load.started.wait(10)
    assert warming().startswith("⏳ Still loading")
    load.release.set()
    services.expansion.expand("a fox", "t2i")
    assert warming() == gr.skip() and turned(True) == gr.skip()  # loaded: nothing to say


def test_generate_that_must_expand_first_says_why_it_waits(services, monkeypatch):
    said = []
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: said.append(message))
    services.expansion = PromptExpansionService(factory=lambda folder: FakeExpander())
    resolved = pe_ui.resolve(services, "kitty", True, "", "t2i")
    assert resolved.prompt == "a cat" and said == ["Loading the prompt expander (first use, about a minute)…"]
    pe_ui.resolve(services, "kitty", True, "", "t2i")
    pe_ui.resolve(services, "kitty", False, "", "t2i")
    assert len(said) == 1  # loaded, or expansion off: nothing to wait for
