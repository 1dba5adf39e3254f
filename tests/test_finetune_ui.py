"""The Fine-tune tab and the adapter pickers without a browser: the endpoints, the upload table,
a training run streamed through the tab's own function, and generation with the picked adapter."""

from __future__ import annotations

import pandas as pd
import pytest

from seedling.backend.errors import InvalidJob
from seedling.backend.huey_app import make_memory_huey
from seedling.backend.services import build_services
from seedling.backend.settings import Settings
from seedling.storage.jobs_common import JobStatus
from seedling.ui import finetune_tab
from seedling.ui.blocks import build_ui
from seedling.ui.common import MODEL_CONCURRENCY_ID, adapter_uses
from tests.conftest import execute_next
from tests.test_finetune_backend import examples


@pytest.fixture
def services(tmp_path, trainable_model_dir, trainable_loader):
    settings = Settings(data_dir=tmp_path / "data", model_path=trainable_model_dir, max_queue=8)
    svc = build_services(settings, huey=make_memory_huey(), loader=trainable_loader)
    yield svc
    svc.close()


def _fn(demo, api_name):
    return next(fn for fn in demo.fns.values() if fn.api_name == api_name)


def _write_set(tmp_path, with_caption_files=True):
    paths = []
    for ex in examples():
        path = tmp_path / ex.name
        ex.image.save(path)
        paths.append(str(path))
        if with_caption_files:
            caption = tmp_path / (path.stem + ".txt")
            caption.write_text(ex.caption)
            paths.append(str(caption))
    return paths


def test_finetune_endpoint_and_adapter_inputs_on_every_generation_tab(services):
    demo = build_ui(services)
    ft = _fn(demo, "finetune")
    assert ft.api_visibility == "public" and ft.concurrency_id == MODEL_CONCURRENCY_ID
    for api_name, prefix in [
        ("generate", "gen"),
        ("edit", "edit"),
        ("compose", "compose"),
        ("storyboard", "story"),
    ]:
        ids = [getattr(block, "elem_id", None) for block in _fn(demo, api_name).inputs]
        assert f"{prefix}-adapters" in ids and f"{prefix}-strength" in ids, api_name


def test_upload_table_keeps_typed_captions_and_reads_sidecars(tmp_path, services):
    paths = _write_set(tmp_path, with_caption_files=False)
    rows = finetune_tab._rows(services.finetune.read_upload(paths), {"1.png": "typed by hand"})
    assert rows[0] == ["0.png", ""] and rows[1] == ["1.png", "typed by hand"]
    table = pd.DataFrame(rows, columns=["file", finetune_tab.TEXT_COLUMN])
    assert finetune_tab._typed(table)["1.png"] == "typed by hand"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    with pytest.raises(InvalidJob, match="broken.png is not a picture in a format this app reads"):
        services.finetune.read_upload([*paths, str(broken)])


def test_training_from_the_tab_streams_loss_and_samples_then_generates_with_it(tmp_path, services):
    demo = build_ui(services)
    run = _fn(demo, "finetune").fn(
        _write_set(tmp_path),  # captions from the .txt sidecars
        None,
        "tab-style",
        "lora",
        4,  # rank
        0,  # alpha: = rank
        4,  # steps
        0.05,
        4,  # batch
        2,  # samples every 2 steps
        "",
        0,
    )
    job_id, status, *_ = next(run)
    assert status == f"Job {job_id}: submitted"
    execute_next(services.huey)
    updates = list(run)
    last_status, last_frame = updates[-1][1], [u[2] for u in updates if isinstance(u[2], pd.DataFrame)][-1]
    assert "done" in last_status and "tab-style" in last_status
    assert list(last_frame["step"]) == [1, 2, 3, 4]
    assert any(u[3] is not None and not isinstance(u[3], dict) for u in updates)  # the samples image
    adapter = services.adapters.for_job(job_id)

    gen = _fn(demo, "generate").fn("a framed square", False, "", "1:1", 128, 128, 1, 0, 5, 1, [str(adapter.id)], 0.7)
    gen_job, *_ = next(gen)
    execute_next(services.huey)
    list(gen)
    job = services.jobs.get(gen_job)
    assert job.status == JobStatus.SUCCEEDED and job.spec["adapters"] == [
        {"adapter_id": adapter.id, "strength": 0.7}
    ]
    assert job.adapter_id == adapter.id

    info, frame = finetune_tab.adapter_info(services, str(adapter.id))
    assert "tab-style" in info and "6 training examples" in info and len(frame) == 4


def test_adapter_uses_from_widgets():
    assert adapter_uses(None, 1.0) == [] and adapter_uses([], 0.5) == []
    assert adapter_uses(["3", "5"], 0.5) == [(3, 0.5), (5, 0.5)]
    import gradio as gr

    with pytest.raises(gr.Error, match="Unknown adapter"):
        adapter_uses(["pastel"], 1.0)


def test_stop_keeps_a_usable_adapter_and_cancel_asks_first(tmp_path, services, monkeypatch):
    from seedling.backend import finetune_runner
    from seedling.ui.common import adapter_choices

    demo = build_ui(services)
    ids = {b.elem_id: b._id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert ids["ft-run"] < ids["ft-files"] and ids["ft-cancel"] < ids["ft-files"]  # Start above the list

    # Cancel only asks; nothing is cancelled until the confirmation
    row, _ = finetune_tab.ask_to_cancel(7)
    assert row.visible is True
    assert finetune_tab.cancel_training(services, None) == "Nothing to cancel"

    run = _fn(demo, "finetune").fn(_write_set(tmp_path), None, "half", "lora", 4, 0, 8, 0.05, 4, 0, "", 0)
    job_id, *_ = next(run)
    real, asked = finetune_runner.time.monotonic, []

    def press_stop_after_step_2():
        if services.jobs.get(job_id).progress_step == 2 and not asked:
            asked.append(finetune_tab.stop_training(services, job_id))
        return real()

    monkeypatch.setattr(finetune_runner.time, "monotonic", press_stop_after_step_2)
    execute_next(services.huey)
    last_status = list(run)[-1][1]
    assert "stopping at the next step" in asked[0]
    adapter = services.adapters.for_job(job_id)
    n = adapter.metrics["stopped_at"]
    assert f"stopped at step {n}/8" in last_status and "half" in last_status
    assert (f"half (lora, stopped at step {n}, #{adapter.id})", str(adapter.id)) in adapter_choices(services)
    info, _ = finetune_tab.adapter_info(services, str(adapter.id))
    assert f"Stopped at step {n} of 8" in info
    gen = _fn(demo, "generate").fn("a framed square", False, "", "1:1", 128, 128, 1, 0, 5, 1, [str(adapter.id)], 1.0)
    gen_job, *_ = next(gen)
    execute_next(services.huey)
    list(gen)
    assert services.jobs.get(gen_job).status == JobStatus.SUCCEEDED  # the stopped adapter is usable

    (tmp_path / "q").mkdir()
    queued = _fn(demo, "finetune").fn(_write_set(tmp_path / "q"), None, "gone", "lora", 4, 0, 8, 0.05, 4, 0, "", 0)
    q_id, *_ = next(queued)
    assert finetune_tab.cancel_training(services, q_id) == f"Job {q_id}: cancelled · nothing was kept"
    assert finetune_tab.status_line(services.jobs.get(q_id), None) == f"Job {q_id}: cancelled · nothing was kept"


def test_running_status_shows_the_measured_pace_and_eta():
    from types import SimpleNamespace

    job = SimpleNamespace(id=3, status=JobStatus.RUNNING, progress_step=10, progress_total=400,
                          metrics={"loss": [[10, 0.5]], "step_s": 7.9, "eta_s": 3081.0})
    assert finetune_tab.status_line(job, None) == (
        "Job 3: training step 10/400 · loss 0.5000 · 7.90 s/step · about 51 min 21 s left")
