"""UI pieces without a browser: the Blocks build with its named endpoints, the job watcher, and the
helpers that turn widget values into specs."""

from __future__ import annotations

import itertools

import gradio as gr
import pytest
from PIL import Image

from seedling.backend.specs import make_spec
from seedling.ui import edit_tab, generate_tab, storyboard_tab
from seedling.ui.blocks import build_ui
from seedling.ui.common import MODEL_CONCURRENCY_ID, watch
from seedling.ui.edit_tab import mask_from_layers
from seedling.ui.fields import FieldContext, values_from_params
from seedling.ui.history_tab import image_query
from seedling.ui.sizes import model_sizes
from tests.conftest import execute_next

MODEL_ENDPOINTS = {"generate", "edit", "compose", "storyboard"}


def test_blocks_expose_named_endpoints_and_share_one_model_concurrency_group(services):
    demo = build_ui(services)
    fns = list(demo.fns.values())
    public = {fn.api_name for fn in fns if fn.api_visibility == "public"}
    assert MODEL_ENDPOINTS | {"history_search", "job_status", "cancel_job", "rerun_job"} <= public
    model_fns = [fn for fn in fns if fn.api_name in MODEL_ENDPOINTS]
    assert {fn.concurrency_id for fn in model_fns} == {MODEL_CONCURRENCY_ID}


def test_watch_streams_until_done_and_returns_the_images(services):
    job = services.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    first = next(watch(services, job.id))
    assert not first.done and "position 1" in first.status
    execute_next(services.huey)
    updates = list(watch(services, job.id))
    assert updates[-1].done and [im.job_id for im in updates[-1].images] == [job.id]


def test_watch_turns_a_failed_job_into_a_readable_gr_error(services):
    source = services.history.store_input(Image.new("RGB", (128, 128), "teal"))
    job = services.jobs.submit(make_spec("edit", prompt="x", source_image_id=source.id))
    services.history.delete(source.id)
    execute_next(services.huey)
    with pytest.raises(gr.Error, match="does not exist"):
        list(watch(services, job.id))


def test_watch_ends_quietly_on_cancel(services):
    job = services.jobs.submit(make_spec("generate", prompt="fox"))
    services.jobs.cancel(job.id)
    (last,) = list(watch(services, job.id))
    assert last.done and last.images is None and "cancelled" in last.status


def test_painted_layers_become_the_inpaint_mask():
    assert mask_from_layers([], (64, 64)) is None
    assert mask_from_layers([Image.new("RGBA", (64, 64), (0, 0, 0, 0))], (64, 64)) is None
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 0, 255, 255), (8, 8, 24, 24))
    mask = mask_from_layers([layer], (64, 64))
    assert mask.mode == "L" and mask.getpixel((10, 10)) == 255 and mask.getpixel((40, 40)) == 0


def restore_ctx(services) -> FieldContext:
    return FieldContext(services, "t", extras={"sizes": model_sizes(services.settings.model_path)})


def test_story_lines_become_panels(services):
    assert storyboard_tab.story_prompt("a fox wakes\n\na fox runs\na fox sleeps\n", 4) == (
        "a fox wakes; a fox runs; a fox sleeps",
        3,
    )
    assert storyboard_tab.story_prompt("one long story", 5) == ("one long story", 5)
    values = values_from_params(
        storyboard_tab.ROWS, {"prompt": "a; b", "num_outputs": 2}, restore_ctx(services)
    )
    assert (values["story"], values["panels"]) == ("a\nb", 2)


def test_history_filters_map_to_a_query():
    q = image_query("  fox ", "edit", "last 7 days", "3")
    assert (q.text, q.task, q.adapter_id) == ("fox", "edit", 3) and q.created_after is not None
    q = image_query("", "all", "any time", "all adapters")
    assert (q.text, q.task, q.adapter_id, q.created_after) == (None, None, None, None)


def test_dropped_png_parameters_fill_the_generate_tab(services):
    job = services.jobs.submit(
        make_spec("generate", prompt="an owl", seed=42, steps=2, width=160, num_outputs=2)
    )
    execute_next(services.huey)
    image = services.jobs.view(job.id).images[0]
    restored = services.history.parameters_from_png(services.history.path(image))
    # prompt expansion off, no expanded prompt; 160x128 is no size the model offers: the size
    # choice and the width and height it sets stay as they are, and the status says why
    expected = {
        "prompt": "an owl", "prompt_expansion": False, "expanded_prompt": "",
        "steps": 2, "guidance": 0, "seed": 42, "num_outputs": 2, "adapters": [],
    }  # fmt: skip
    ctx = restore_ctx(services)
    for params in (vars(restored), image.params):
        assert values_from_params(generate_tab.ROWS, params, ctx) == expected
        note = generate_tab.TAB.restore_note(params, ctx)
        assert "Its size 160x128 is not one this model draws" in note and "left as it was" in note
    assert generate_tab.TAB.restore_note({"width": 176, "height": 128}, ctx) is None


def test_default_sliders_name_the_models_own_defaults(services, tmp_path):
    import dataclasses
    import json

    from seedling.backend.settings import Settings

    config = json.loads((services.settings.model_path / "pipeline.json").read_text())
    demo = build_ui(services)
    labels = {c.label for c in demo.blocks.values() if isinstance(c, gr.Slider)}
    assert f"Steps (0 = model default: {config['default_steps']})" in labels
    assert f"Guidance (0 = model default: {config['guidance']:g})" in labels
    assert f"Image guidance (0 = model default: {config['image_guidance']:g})" in labels
    # a model with its own text-task guidance (the shipped one: 3): the Generate tab's slider names
    # it too, since a prompt quoting text runs that task; the other tabs' sliders do not
    from seedling.ui.fields import FieldContext, guidance_field

    (tmp_path / "pipeline.json").write_text(json.dumps(config | {"task_guidance": {"text": 3.0}}))
    defaults = dataclasses.replace(services.settings, model_path=tmp_path).model_defaults()
    assert defaults["text_guidance"] == 3.0
    with gr.Blocks():
        t2i = guidance_field("t2i").make(FieldContext(services, "g", defaults))
        compose = guidance_field("compose").make(FieldContext(services, "c", defaults))
    assert t2i.label == f"Guidance (0 = model default: {config['guidance']:g}; quoted text: 3)"
    assert compose.label == f"Guidance (0 = model default: {config['guidance']:g})"
    # a model folder without a readable pipeline.json: the labels just say "model default"
    (tmp_path / "pipeline.json").write_text("{not json")
    blank = dataclasses.replace(services.settings, model_path=tmp_path)
    assert blank.model_defaults() == {} and Settings(model_path=tmp_path / "missing").model_defaults() == {}


def test_a_waiting_request_is_woken_by_the_one_job_reader_not_by_polling(services):
    """Three requests wait on three queued jobs: while nothing changes, the process's one reader
    reads the jobs once (not every request every 0.1 s); when a job finishes in another
    connection, its commit wakes the reader and the request has its images within seconds. The
    reader's belt-and-braces re-read is set to 10 minutes here, so only a commit can wake it: a
    missed commit fails the test, and a loaded machine's slow second does not (the latency itself
    is bench/bench_ui_latency.py's to measure)."""
    import threading
    import time

    from seedling.backend.job_events import JobEvents

    services.events.close()
    services.events = JobEvents(services.settings.db_path, refresh_s=600)  # closed by the fixture
    jobs = [services.jobs.submit(make_spec("generate", prompt=f"fox {i}", steps=1)) for i in range(3)]
    got: dict[int, float] = {}
    said: dict[int, list[str]] = {job.id: [] for job in jobs}

    def wait_for(job_id):
        for update in watch(services, job_id):
            said[job_id].append(update.status)
            if update.done:
                got[job_id] = time.time()

    threads = [threading.Thread(target=wait_for, args=(job.id,), daemon=True) for job in jobs]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20  # a loaded machine takes a while to start three threads
    while any(not lines for lines in said.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    reads = services.events.reads
    time.sleep(0.6)  # idle: every request has said its "position n" line once, nothing re-read
    assert services.events.reads == reads
    assert [len(lines) for lines in said.values()] == [1, 1, 1], said
    assert said[jobs[1].id] == [f"Job {jobs[1].id}: waiting in the queue (position 2)"]
    for _ in jobs:
        execute_next(services.huey)
    for t in threads:
        t.join(timeout=30)
    assert sorted(got) == [job.id for job in jobs]  # each request heard its job end
    for job in jobs:
        finished_at = services.jobs.get(job.id).finished_at
        # in CI under two test processes one took 1.3 s; a missed commit would take the 10 minutes
        assert 0 <= got[job.id] - finished_at < 5.0
    # a line is said when it changes, never twice in a row
    for lines in said.values():
        assert all(a != b for a, b in itertools.pairwise(lines)) and "done" in lines[-1]


def test_a_waiting_request_makes_its_lines_from_the_reader_not_from_the_database(services):
    """Each job that ends moves every waiting request's place in line: the line is made from the
    job reader's state, so a request reads its job's row only when it starts and when it ends
    (a read per request per move was most of the app's database time at 8 clients x 4 jobs)."""
    import threading
    import time

    jobs = [services.jobs.submit(make_spec("generate", prompt=f"fox {i}", steps=1)) for i in range(3)]
    last = jobs[-1].id
    reads: list[int] = []
    view = services.jobs.view

    def counted(job_id):
        reads.append(job_id)
        return view(job_id)

    services.jobs.view = counted
    said: list[str] = []

    def wait_for():
        for update in watch(services, last):
            said.append(update.status)

    thread = threading.Thread(target=wait_for, daemon=True)
    thread.start()

    def until(text):
        deadline = time.monotonic() + 20
        while not any(text in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(text in line for line in said), said

    until("position 3")
    execute_next(services.huey)
    until("position 2")
    execute_next(services.huey)
    until("position 1")
    execute_next(services.huey)
    thread.join(timeout=20)
    assert "done" in said[-1]
    # the first read, the one at the end, and at most one more if a wait ended before the reader
    # had read the job (a loaded machine)
    assert 2 <= reads.count(last) <= 3, reads


def test_a_request_still_waiting_when_the_reader_closes_polls_instead_of_spinning(services):
    """App shutdown closes the job reader while requests may still wait: each then re-reads its job
    every CLOSED_WAIT_S (as the old polling did), not in a busy loop at full CPU."""
    import time

    from seedling.backend import job_events

    job = services.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    stream = watch(services, job.id)
    assert "position 1" in next(stream).status
    with services.events.watching(job.id):
        services.events.close()
        seen = services.events.state(job.id)
        t0 = time.monotonic()
        for _ in range(3):
            services.events.wait(job.id, seen, 5.0)
        took = time.monotonic() - t0
    assert 3 * job_events.CLOSED_WAIT_S * 0.9 <= took < 3.0


def test_poll_mode_keeps_the_old_per_request_polling(services):
    import dataclasses

    services.settings = dataclasses.replace(services.settings, watch="poll")
    job = services.jobs.submit(make_spec("generate", prompt="fox", steps=1))
    stream = watch(services, job.id)
    assert "position 1" in next(stream).status and "position 1" in next(stream).status  # re-said each poll
    assert services.events.reads == 0


def test_every_gallery_shows_whole_pictures(services):
    demo = build_ui(services)
    galleries = [c for c in demo.blocks.values() if isinstance(c, gr.Gallery)]
    assert len(galleries) >= 7 and {(g.object_fit, g.fit_columns) for g in galleries} == {("contain", False)}


def test_the_gallery_is_gradios_gallery_with_its_schema_made_once():
    """WholeGallery is drawn by Gallery's frontend with Gallery's API schema, computed once per
    process rather than once per instance (Gradio makes an instance per skipped update)."""
    from seedling.ui.gallery import WholeGallery

    plain, ours = gr.Gallery(render=False), WholeGallery(render=False)
    assert ours.get_block_name() == "gallery" and ours.api_info() == plain.api_info()
    assert WholeGallery(render=False).api_info() is ours.api_info()


def _inpaint_image(services):
    import numpy as np

    source = services.history.store_input(Image.new("RGB", (128, 128), "teal"))
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (16, 32, 80, 96))
    mask_row = services.history.store_input(mask, "mask")
    job = services.jobs.submit(
        make_spec(
            "inpaint", prompt="paint a sun", source_image_id=source.id, mask_image_id=mask_row.id, seed=3
        )
    )
    execute_next(services.huey)
    (image,) = services.jobs.view(job.id).images
    return image, np.asarray(mask) > 127


def _edit_values(values: dict) -> tuple[dict, Image.Image | None]:
    """The editor's value and the mask box's picture a restore writes."""
    by_id = {getattr(b, "elem_id", None): v for b, v in values.items()}
    return by_id["edit-editor"], by_id["edit-mask"]


def test_reuse_parameters_of_an_inpaint_image_brings_back_its_mask(services):
    """Reuse on an inpaint result fills the Edit tab with the instruction, the source in the editor
    and its mask in the mask box, so pressing Edit again is the same masked edit (issue 20)."""
    import numpy as np

    image, painted = _inpaint_image(services)
    demo = build_ui(services)
    reuse = next(fn for fn in demo.fns.values() if fn.name == "reuse")
    values = reuse.fn(image.id)  # {component: value}: only what the image restores
    editor, mask = _edit_values(values)
    assert editor["layers"] == [] and np.array_equal(np.asarray(mask) > 127, painted)
    spec_source, spec_mask = edit_tab._editor_inputs(editor, mask)  # what the next Edit submits
    assert np.array_equal(np.asarray(spec_mask.image) > 127, painted)
    assert np.array_equal(np.asarray(spec_source.image), np.asarray(editor["background"].convert("RGB")))
    instruction = next(v for b, v in values.items() if getattr(b, "elem_id", None) == "edit-instruction")
    assert instruction == "paint a sun"
    assert not any(getattr(b, "elem_id", None) == "gen-prompt" for b in values)  # Generate is left alone


def test_a_painted_mask_wins_over_the_mask_box_and_an_empty_one_is_no_mask():
    import numpy as np

    source = Image.new("RGBA", (128, 128), "teal")
    box = Image.new("L", (64, 64), 0)
    box.paste(255, (0, 0, 32, 32))  # the top-left quarter, at half size
    _, from_box = edit_tab._editor_inputs({"background": source, "layers": []}, box)
    assert np.asarray(from_box.image).sum() == 64 * 64 * 255 and from_box.image.size == (128, 128)
    layer = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    layer.paste((255, 0, 255, 255), (100, 100, 110, 110))
    _, painted = edit_tab._editor_inputs({"background": source, "layers": [layer]}, box)
    assert np.asarray(painted.image).sum() == 10 * 10 * 255
    _, none = edit_tab._editor_inputs({"background": source, "layers": []}, Image.new("L", (128, 128), 0))
    assert none is None  # an all-black mask marks nothing: a whole-image edit


def test_an_inpaint_png_dropped_on_generate_leaves_the_prompt_alone(services):
    import numpy as np

    image, painted = _inpaint_image(services)
    demo = build_ui(services)
    drops = [fn for fn in demo.fns.values() if fn.name == "restore_png"]
    on_generate = next(fn for fn in drops if fn.inputs[0].elem_id == "gen-png-drop")
    values = on_generate.fn(str(services.history.path(image)))
    by_id = {getattr(b, "elem_id", None): v for b, v in values.items()}
    assert "gen-prompt" not in by_id and by_id["edit-instruction"] == "paint a sun"
    assert (
        "belong to the Edit tab" in by_id["gen-status"] and "nothing here was changed" in by_id["gen-status"]
    )
    # restored in the Edit tab with everything it was made with: its source and its mask
    editor, mask = _edit_values(values)
    assert editor["background"] is not None and np.array_equal(np.asarray(mask) > 127, painted)


def test_the_seed_used_is_shown_when_the_job_ends(services):
    from seedling.ui.common import resolve_seed

    seed = resolve_seed(-1)  # a random one, as the tabs pick it
    job = services.jobs.submit(make_spec("generate", prompt="fox", steps=1, seed=seed))
    execute_next(services.huey)
    (last,) = list(watch(services, job.id))
    assert last.done and last.status.endswith(f"· seed {seed}")


def test_a_tab_job_list_is_read_once_a_second_per_session_and_at_once_when_it_changes(services, monkeypatch):
    """Under load every job's updates asked for the session's list, and each ask read every listed
    job from the database: the app's main cost at 8 clients x 4 jobs. The list is now read at most
    once per LIST_EVERY_S per session; a job added or ended shows in it at once."""
    from seedling.ui import common

    with gr.Blocks():
        tab_jobs = common.TabJobs(services, "gen")
    reads = []
    real_views = services.jobs.views_of
    monkeypatch.setattr(services.jobs, "views_of", lambda ids: reads.append(ids) or real_views(ids))
    clock = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    a, b = (services.jobs.submit(make_spec("generate", prompt=f"fox {i}", steps=1)) for i in range(2))
    tab_jobs.add("s1", a.id)
    tab_jobs.add("s1", b.id)
    first = tab_jobs.lines("s1")
    assert [job_id for job_id, _ in first] == [a.id, b.id] and "position 2" in first[1][1]
    for _ in range(20):  # twenty updates within the second: no new reading
        assert tab_jobs.lines("s1") == first
    assert len(reads) == 1
    clock[0] += common.LIST_EVERY_S
    tab_jobs.lines("s1")
    assert len(reads) == 2  # a second later: read again
    tab_jobs.remove("s1", a.id)
    assert [job_id for job_id, _ in tab_jobs.lines("s1")] == [b.id]  # at once, not a second later
    assert tab_jobs.lines("s2") == []  # another session has its own list


def test_a_job_list_is_read_in_two_queries_with_the_same_places_as_one_view_each(services):
    jobs = [services.jobs.submit(make_spec("generate", prompt=f"fox {i}", steps=1)) for i in range(2)]
    services.jobs.cancel(jobs[1].id)  # the test services queue at most 3 jobs
    jobs += [services.jobs.submit(make_spec("generate", prompt=f"fox {i}", steps=1)) for i in range(2, 4)]
    ids = [job.id for job in jobs] + [999_999]  # a job that does not exist is left out
    batched = services.jobs.views_of(ids)
    one_by_one = [services.jobs.view(job.id) for job in jobs]
    assert [(v.job.id, v.job.status, v.queue_position) for v in batched] == [
        (v.job.id, v.job.status, v.queue_position) for v in one_by_one
    ]
    assert [v.queue_position for v in batched] == [1, None, 2, 3]
