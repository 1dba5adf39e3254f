"""The whole UI: the tabs, the History actions that reach into other tabs, and API-only endpoints.

The Fine-tune tab's adapters appear in every generation tab's Adapters list (and History's
adapter filter): they reload on page load, after a training run, after a delete, and on Refresh.
"""

from __future__ import annotations

import json

import gradio as gr
from gradio.exceptions import InvalidPathError

from seedling.backend.errors import JobError
from seedling.backend.services import Services
from seedling.model.task_table import TASKS
from seedling.storage.images_common import ImageRecord
from seedling.ui import compose_tab, edit_tab, finetune_tab, generate_tab, history_tab, storyboard_tab
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui import tab as tab_ui
from seedling.ui.common import PRIVATE, api_call, model_event, run_and_watch
from seedling.ui.results import selected_path

GENERATION_TABS = (generate_tab.TAB, edit_tab.TAB, compose_tab.TAB, storyboard_tab.TAB)
# The tab that made an image of each job kind (kinds are task names, except generate = t2i).
TAB_FOR_KIND = {("generate" if t.name == "t2i" else t.name): t.ui_tab for t in TASKS.values() if t.ui_tab}

# Ctrl+Enter (Cmd+Enter on a Mac) in a tab's prompt box presses that tab's main button.
CTRL_ENTER_JS = """
(boxes) => {
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || !(e.ctrlKey || e.metaKey)) return;
    for (const [box, button] of Object.entries(boxes)) {
      if (e.target.closest && e.target.closest('#' + box)) {
        e.preventDefault();
        document.getElementById(button)?.click();
        return;
      }
    }
  });
  document.body.dataset.ctrlEnter = 'ready';  // tests wait for it: a key pressed before is not seen
}
"""


# What a file argument that names no upload is told (a path on the server, a URL, a NUL byte).
NOT_AN_UPLOAD = (
    "Every picture or file must be uploaded to this app; a path on the server, a URL or a file "
    "name with a NUL byte is refused. Upload the file and try again."
)


class StudioBlocks(gr.Blocks):
    """gr.Blocks whose refusal of a file argument that no one uploaded is a sentence that says what
    to do, not Gradio's internal path text (or an empty error when show_error is off)."""

    async def preprocess_data(self, *args, **kwargs):
        try:
            return await super().preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except InvalidPathError:
            raise gr.Error(NOT_AN_UPLOAD) from None
        except ValueError as err:
            if "null byte" in str(err):
                raise gr.Error(NOT_AN_UPLOAD) from None
            raise


def build_ui(services: Services) -> gr.Blocks:
    with StudioBlocks(title="Seedling Studio") as demo:
        gr.Markdown("## Seedling Studio")
        made: dict[str, tab_ui.Tab] = {}
        with gr.Tabs() as tabs:
            for definition in GENERATION_TABS:
                with gr.Tab(definition.name.title(), id=definition.name, elem_id=f"tab-{definition.name}"):
                    made[definition.name] = tab_ui.build(services, definition)
            with gr.Tab("Fine-tune", id="finetune", elem_id="tab-finetune"):
                finetune = finetune_tab.build(services)
            with gr.Tab("History", id="history", elem_id="tab-history") as history_item:
                hist = history_tab.build(services)
        demo.generation_tabs = made  # the built tabs by name, for tests and tools
        _wire_sending(services, tabs, hist, made)
        _wire_restoring(services, tabs, hist, made)
        _wire_rerun(services, hist)
        history_item.select(hist.search, hist.query, [hist.gallery, hist.ids], api_visibility=PRIVATE)
        demo.load(hist.adapter_choices, None, hist.adapter, api_visibility=PRIVATE)
        _wire_adapter_lists(services, demo, finetune, hist, list(made.values()))
        boxes = {t.table[t.spec.prompt].elem_id: f"{t.spec.prefix}-run" for t in made.values()}
        demo.load(
            None, None, None, js=f"() => ({CTRL_ENTER_JS})({json.dumps(boxes)})", api_visibility=PRIVATE
        )
        pe_ui.register_api(services)
        _api_endpoints(services)
    return demo


def _wire_adapter_lists(services: Services, demo, finetune, hist, tabs) -> None:
    lists = [*(tab["adapters"] for tab in tabs), finetune.adapter_list]

    def reload(*selected):
        return (
            *[finetune_tab.adapter_dropdown_update(services, keep) for keep in selected],
            hist.adapter_choices(),
        )

    kwargs = {"fn": reload, "inputs": lists, "outputs": [*lists, hist.adapter], "api_visibility": PRIVATE}
    demo.load(**kwargs)
    finetune.refresh.click(**kwargs)
    finetune.deleted.success(**kwargs)
    finetune.trained.then(**kwargs)


def _selected(services: Services, image_id) -> ImageRecord:
    if image_id is None:
        raise gr.Error("Select an image in History first.")
    try:
        return services.history.get(image_id)
    except JobError:
        raise gr.Error(f"Image #{image_id} no longer exists.") from None


def _wire_sending(services: Services, tabs, hist, made: dict) -> None:
    """History's Send to edit / Send to compose and every result's Use as edit source / Add to
    compose: the picture goes into the Edit tab's editor, or the first free Compose slot."""
    editor, mask = made["edit"]["editor_value"], made["edit"]["mask"]
    refs = [made["compose"][name] for name in compose_tab.REFS]

    def to_edit(path):
        """A new source, with no mask left over from the picture before."""
        return edit_tab.editor_value(path), None, gr.Tabs(selected="edit")

    def to_compose(path, *slots):
        free = next((i for i, slot in enumerate(slots) if slot is None), len(slots) - 1)
        return (*[path if i == free else gr.skip() for i in range(len(slots))], gr.Tabs(selected="compose"))

    def history_path(image_id):
        return str(services.history.path(_selected(services, image_id)))

    def result_path(gallery_value, index):
        path = selected_path(gallery_value, index)
        if path is None:
            raise gr.Error("There is no result yet: run the tab first.")
        return path

    senders = [(hist.send_to_edit, hist.send_to_compose, [hist.selected_id], history_path)]
    senders += [
        (
            t.results.actions.get("use-edit"),
            t.results.actions.get("use-compose"),
            [t.results.gallery, t.results.selected],
            result_path,
        )
        for t in made.values()
    ]
    for edit_button, compose_button, inputs, path_of in senders:
        if edit_button is not None:
            edit_button.click(
                lambda *a, p=path_of: to_edit(p(*a)), inputs, [editor, mask, tabs], api_visibility=PRIVATE
            )
        if compose_button is not None:
            n = len(inputs)
            compose_button.click(
                lambda *a, p=path_of, n=n: to_compose(p(*a[:n]), *a[n:]),
                [*inputs, *refs],
                [*refs, tabs],
                api_visibility=PRIVATE,
            )


def _wire_restoring(services: Services, tabs, hist, made: dict) -> None:
    """History's Reuse parameters and a PNG dropped on any tab fill the tab that made the image
    with everything it was made with (prompt, settings, adapters, source and mask, references)."""
    statuses = [t.results.status for t in made.values()]
    outputs = [c for t in made.values() for c in t.table.inputs] + statuses + [tabs]

    def restore(params: dict, kind: str, said: str) -> tuple[str, dict]:
        target = TAB_FOR_KIND.get(kind, "generate")
        built = made[target]
        values = built.table.restored(params)
        note = built.spec.restore_note(params, built.table.ctx) if built.spec.restore_note else None
        values[built.results.status] = f"{said}. {note}" if note else said
        values[tabs] = gr.Tabs(selected=target)
        return target, values

    def reuse(image_id):
        """Fill the tab that made the image with its parameters (and input images)."""
        image = _selected(services, image_id)
        kind = image.params.get("kind", "generate")
        return restore(image.params, kind, f"Restored the parameters of image #{image.id} ({kind})")[1]

    hist.reuse.click(reuse, hist.selected_id, outputs, api_visibility=PRIVATE)

    for here, tab in made.items():

        def restore_png(path, here=here):
            """A dropped PNG: from History when its picture is there (everything it was made with),
            else from its parameters text (its input pictures are not in this history)."""
            if not path:
                return {}
            try:
                text = services.history.parameters_from_png(path)
                record = services.history.find_picture(path)
            except (ValueError, OSError) as err:
                raise gr.Error(f"Could not read parameters: {err}") from None
            known = record is not None and record.params.get("kind") == text.kind
            params = record.params if known else vars(text)
            said = f"Restored parameters of a {text.kind} image" + (
                "" if known else " (from its PNG text; the pictures it was made from are not in this history)"
            )
            target, values = restore(params, text.kind, said)
            if target != here:
                values[made[here].results.status] = (
                    f"This PNG is a {text.kind} image: its parameters belong to the {target.title()} tab, so "
                    f"nothing here was changed; they are restored there."
                )
            return values

        tab.png_drop.upload(restore_png, tab.png_drop, outputs, api_visibility=PRIVATE)


def _wire_rerun(services: Services, hist) -> None:
    job_state = gr.State(None)

    def rerun(image_id, progress=gr.Progress()):  # noqa: B008 - the Gradio idiom
        image = _selected(services, image_id)
        if image.job_id is None:
            raise gr.Error("This image was uploaded, not generated: there is no job to re-run.")
        for job_id, status, preview, _gallery in run_and_watch(
            services, None, progress, rerun_of=image.job_id
        ):
            yield job_id, status, preview

    hist.rerun.click(
        rerun,
        hist.selected_id,
        [job_state, hist.status, hist.preview],
        api_visibility=PRIVATE,
        **model_event(services),
    ).success(hist.search, hist.query, [hist.gallery, hist.ids], api_visibility=PRIVATE)


def _api_endpoints(services: Services) -> None:
    """Endpoints for gradio_client with no UI of their own."""

    def job_status(job_id: int) -> dict:
        """A job's status, progress, error, timings, and its output image ids once done."""
        view = services.jobs.view(job_id)
        job = view.job
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status.value,
            "queue_position": view.queue_position,
            "progress": [job.progress_step, job.progress_total],
            "error": job.error,
            "timings": job.timings,
            "images": [im.id for im in view.images],
        }

    def cancel_job(job_id: int) -> str:
        """Cancel a queued job now, or a running one at its next step; returns the status."""
        return services.jobs.cancel(job_id).value

    def rerun_job(job_id: int) -> int:
        """Queue a past job again with the same parameters and seed; returns the new job id."""
        return services.jobs.rerun(job_id).id

    gr.api(api_call(job_status), api_name="job_status")
    gr.api(api_call(cancel_job), api_name="cancel_job")
    gr.api(api_call(rerun_job), api_name="rerun_job")
