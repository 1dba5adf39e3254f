"""Bad input, fuzzed with hypothesis (issue #7): damaged and hostile pictures, masks of the wrong
size or mode, empty and huge prompts, NaN/negative/huge numbers, unknown kinds and adapters, and
path-traversal strings, (a) through the job layer (JobService.submit + the worker runtime on a
MemoryHuey, tiny model) and (b) through the Gradio API of a running app on 127.0.0.1.

Every case ends completed, or refused with a sentence (no traceback, no exception repr); after
every case the history database passes `PRAGMA integrity_check`, and valid jobs keep running.

The default run is small (60 + 20 cases). The long run (≥1,000 cases, table + runs/fuzz.json):

    SEEDLING_FUZZ_EXAMPLES=1000 python -m pytest -m slow tests/test_fuzz_inputs.py -s
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from seedling.backend.errors import JobError
from seedling.backend.specs import make_spec
from seedling.storage.jobs_common import JobStatus
from tests.conftest import REPO_ROOT, SECURED_AUTH, drain
from tests.fuzz_helpers import (
    TRAVERSAL,
    Tally,
    assert_readable,
    encode,
    fuzz_settings,
    ids,
    image_bytes,
    integrity_ok,
    numbers,
    pictures,
    png_claiming,
    real_bomb,
    report,
    requested_examples,
    texts,
)
from tests.helpers import error_message, logged_in_http, raw_call

MACHINE = "2 CPU cores (x86-64), 24 GiB RAM, no GPU, tiny random-weight model"
BUDGET = 16  # steps x outputs x (pixels / 128²) a fuzzed job may cost; dearer accepted jobs are cancelled
FOLLOW_UP_EVERY = 25
KINDS = ["generate", "edit", "inpaint", "compose", "style", "storyboard", "finetune"]
BAD_KINDS = ["t2i", "", "GENERATE", "../../etc/passwd", None, 7, "finetune\x00"]

# layer -> Tally for the current run (the long run reports them)
TALLIES: dict[str, Tally] = {}


# ================================================================================================
# (a) the job layer
# ================================================================================================
class JobLayer:
    """The services of one test, with a few stored pictures (ids 1-4) the cases refer to, and a
    sentinel PNG outside the data folder that no case may delete."""

    def __init__(self, services, outside: Path):
        self.s = services
        self.sentinel = outside / "sentinel.png"
        Image.new("RGB", (32, 32), "orange").save(self.sentinel)
        h = services.history
        self.src = h.store_input(Image.new("RGB", (128, 128), (10, 120, 200))).id
        self.mask = h.store_input(Image.new("L", (128, 128), 255), origin="mask").id
        self.small_mask = h.store_input(Image.new("L", (64, 64), 255), origin="mask").id
        self.tiny = h.store_input(Image.new("RGB", (1, 1), "red")).id
        self.tally = TALLIES.setdefault("job layer", Tally("job layer"))

    def bases(self) -> dict[str, dict]:
        return {
            "generate": {"prompt": "a fox", "steps": 1},
            "edit": {"prompt": "make it red", "source_image_id": self.src, "steps": 1},
            "inpaint": {
                "prompt": "a sun",
                "source_image_id": self.src,
                "mask_image_id": self.mask,
                "steps": 1,
            },
            "compose": {"prompt": "both", "reference_image_ids": [self.src, self.tiny], "steps": 1},
            "style": {"style_image_id": self.src, "steps": 1},
            "storyboard": {"prompt": "a; b", "num_outputs": 2, "steps": 1},
            "finetune": {"name": "fuzz", "images": [{"image_id": self.src, "caption": "c"}], "steps": 1},
        }

    # -- one job: submitted, then run (or cancelled when it is over the fuzz's compute budget) --
    def submit_and_run(self, submit) -> str:
        try:
            job = submit()
        except JobError as err:
            assert_readable(err)
            return "rejected"
        spec = job.spec
        steps = spec.get("steps") or 4
        cost = steps * spec.get("num_outputs", 1) * spec.get("width", 128) * spec.get("height", 128) / 128**2
        if job.kind == "finetune" or cost > BUDGET:
            self.s.jobs.cancel(job.id)
            drain(self.s.huey)
            assert self.s.jobs.get(job.id).status == JobStatus.CANCELLED
            return "not run (over budget)"
        drain(self.s.huey)
        done = self.s.jobs.get(job.id)
        if done.status == JobStatus.SUCCEEDED:
            assert self.s.jobs.view(job.id).images, "a job succeeded without images"
            return "completed"
        assert done.status == JobStatus.FAILED, done.status
        assert_readable(done.error)
        return "failed"

    def call(self, fn) -> str:
        """A call that may refuse: refusing is a JobError with a sentence."""
        try:
            fn()
        except JobError as err:
            assert_readable(err)
            return "rejected"
        return "completed"

    # -- the case kinds ----------------------------------------------------------------------------
    def spec_case(self, kind, from_base: bool, fields: dict) -> str:
        data = dict(self.bases()[kind]) if from_base and kind in KINDS else {}
        data |= fields
        return self.submit_and_run(lambda: self.s.jobs.submit_dict({"kind": kind, **data}))

    def upload_case(self, data: bytes, origin: str, via_file: bool, use: str, tmp: Path) -> str:
        source: bytes | str = data
        if via_file:
            path = tmp / "upload.bin"
            path.write_bytes(data)
            source = str(path)
        try:
            image = self.s.history.store_upload(source, origin)
        except JobError as err:
            assert_readable(err)
            return "rejected"
        if origin == "mask":
            fields = {"source_image_id": self.src, "mask_image_id": image.id}
            return self.submit_and_run(
                lambda: self.s.jobs.submit(make_spec("inpaint", prompt="x", steps=1, **fields))
            )
        fields = {
            "edit": {"source_image_id": image.id},
            "compose": {"reference_image_ids": [image.id, self.src]},
            "style": {"style_image_id": image.id},
            "storyboard": {"character_image_id": image.id, "num_outputs": 2},
        }[use]
        return self.submit_and_run(lambda: self.s.jobs.submit(make_spec(use, prompt="x", steps=1, **fields)))

    def mask_case(self, source: Image.Image, mask: Image.Image) -> str:
        src = self.s.history.store_input(source)
        msk = self.s.history.store_input(mask, origin="mask")
        fields = {
            "source_image_id": src.id,
            "mask_image_id": msk.id,
            "width": src.width,
            "height": src.height,
        }
        return self.submit_and_run(
            lambda: self.s.jobs.submit(make_spec("inpaint", prompt="x", steps=1, **fields))
        )

    def path_case(self, target: str, value) -> str:
        h, j = self.s.history, self.s.jobs
        if value == "<sentinel>":
            value = str(self.sentinel)
        elif value == "<sentinel-relative>":
            value = os.path.relpath(self.sentinel, self.s.files.root)
        fn = {
            "parameters_from_png": lambda: h.parameters_from_png(value),
            "read_upload": lambda: self.s.finetune.read_upload([value]),
            "history.get": lambda: h.get(value),
            "history.open": lambda: h.open(value),
            "history.delete": lambda: h.delete(value),
            "history.lineage": lambda: h.lineage(value),
            "jobs.view": lambda: j.view(value),
            "jobs.cancel": lambda: j.cancel(value),
            "jobs.rerun": lambda: j.rerun(value),
            "adapter": lambda: j.submit_dict({"kind": "generate", "prompt": "x", "adapters": [value]}),
            "finetune name": lambda: j.submit_dict(
                {**self.bases()["finetune"], "kind": "finetune", "name": value}
            ),
        }[target]
        if target in ("adapter", "finetune name"):  # specs: submitted, then run or cancelled
            outcome = self.submit_and_run(fn)
            if isinstance(value, str) and value in TRAVERSAL:
                assert outcome == "rejected", f"{target} {value!r} was accepted"
            return outcome
        outcome = self.call(fn)
        drain(self.s.huey)
        return outcome

    def check_after(self, n: int) -> None:
        assert self.sentinel.exists(), "a case deleted a file outside the data folder"
        self.tally.integrity_checks += 1
        if not integrity_ok(self.s.settings.db_path):
            self.tally.integrity_failures += 1
            raise AssertionError("history.db failed PRAGMA integrity_check")
        if n % FOLLOW_UP_EVERY == 0:
            self.follow_up()

    def follow_up(self) -> None:
        """A valid job after the bad ones: the runtime still works."""
        job = self.s.jobs.submit(make_spec("generate", prompt="a calm fox", steps=1, seed=1))
        drain(self.s.huey)
        done = self.s.jobs.get(job.id)
        assert done.status == JobStatus.SUCCEEDED, done.error
        self.tally.follow_up_jobs_ok += 1


def _field_values() -> dict[str, st.SearchStrategy]:
    maybe_num = lambda *good: st.one_of(st.sampled_from(good), numbers())
    id_list = st.one_of(st.lists(ids(), max_size=6), ids())
    return {
        "prompt": texts(),
        "typed_prompt": st.one_of(st.none(), texts()),
        "steps": maybe_num(None, 1, 2),
        "guidance": maybe_num(None, 0.5, 5.0),
        "image_guidance": maybe_num(None, 1.5),
        "seed": maybe_num(0, 7),
        "width": maybe_num(128, 144, 64),
        "height": maybe_num(128, 96),
        "num_outputs": maybe_num(1, 2),
        "adapters": st.one_of(
            st.just([]),
            st.lists(ids(), max_size=5),
            st.lists(st.tuples(ids(), numbers()), max_size=2),
            texts(),
        ),
        "adapter_id": ids(),
        "source_image_id": ids(),
        "mask_image_id": ids(),
        "style_image_id": ids(),
        "character_image_id": ids(),
        "reference_image_ids": id_list,
        "name": texts(),
        "images": st.lists(st.fixed_dictionaries({"image_id": ids(), "caption": texts()}), max_size=3),
        "pairs": st.lists(
            st.fixed_dictionaries(
                {"before_image_id": ids(), "after_image_id": ids(), "instruction": texts()}
            ),
            max_size=2,
        ),
        "method": st.sampled_from(["lora", "full", "../x", None, 3]),
        "rank": numbers(),
        "alpha": numbers(),
        "learning_rate": numbers(),
        "batch_size": numbers(),
        "sample_every": numbers(),
        "sample_prompts": st.lists(texts(), max_size=5),
        "positional": st.just([1, 2]),
        "../../etc/passwd": st.just("x"),
    }


FIELDS = _field_values()
PATH_TARGETS = [
    "parameters_from_png",
    "read_upload",
    "history.get",
    "history.open",
    "history.delete",
    "history.lineage",
    "jobs.view",
    "jobs.cancel",
    "jobs.rerun",
    "adapter",
    "finetune name",
]


@st.composite
def job_cases(draw):
    case = draw(st.sampled_from(["spec", "spec", "spec", "upload", "upload", "mask", "path", "path"]))
    if case == "spec":
        kind = draw(st.one_of(st.sampled_from(KINDS), st.sampled_from(BAD_KINDS)))
        names = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=4, unique=True))
        fields = {name: draw(FIELDS[name]) for name in names}
        return case, (kind, draw(st.booleans()), fields)
    if case == "upload":
        what, data = draw(image_bytes())
        origin = draw(st.sampled_from(["upload", "upload", "mask"]))
        use = draw(st.sampled_from(["edit", "compose", "style", "storyboard"]))
        return f"upload: {what}", (data, origin, draw(st.booleans()), use)
    if case == "mask":
        source = draw(pictures(sizes=((128, 128), (144, 128), (16, 16), (1, 1))))
        mask = draw(pictures(sizes=((128, 128), (144, 128), (64, 64), (1, 1), (128, 129))))
        return f"mask {mask.mode} {mask.size} on {source.size}", (source, mask)
    target = draw(st.sampled_from(PATH_TARGETS))
    value = draw(st.one_of(st.sampled_from(TRAVERSAL + ["<sentinel>", "<sentinel-relative>"]), ids()))
    return f"path/id into {target}", (target, value)


def _job_case(layer: JobLayer, tmp: Path, case) -> None:
    kind, args = case
    if kind == "spec":
        outcome = layer.spec_case(*args)
    elif kind.startswith("upload"):
        outcome = layer.upload_case(*args, tmp=tmp)
    elif kind.startswith("mask"):
        outcome = layer.mask_case(*args)
    else:
        outcome = layer.path_case(*args)
    layer.tally.add(kind.split(":")[0].split(" ")[0], outcome)
    layer.check_after(layer.tally.cases)


def _run_job_layer(services, tmp_path, examples: int | None) -> JobLayer:
    layer = JobLayer(services, tmp_path)

    @fuzz_settings("jobs", examples)
    @given(case=job_cases())
    def run(case):
        try:
            _job_case(layer, tmp_path, case)
        except AssertionError:
            layer.tally.add(case[0].split(":")[0], "crash", repr(case)[:300])
            raise
        except Exception as err:  # anything but a refusal with a sentence is a crash
            layer.tally.add(case[0].split(":")[0], "crash", f"{type(err).__name__}: {err}")
            raise

    run()
    layer.follow_up()
    return layer


def test_bad_input_through_the_job_layer(services, tmp_path):
    layer = _run_job_layer(services, tmp_path, None)
    t = layer.tally
    print(t.as_dict())
    assert t.counts["crash"] == 0 and t.integrity_failures == 0
    assert t.counts["rejected"] > 0 and t.counts["completed"] > 0  # the cases reach both ends


def test_unknown_kinds_traversal_and_bombs_have_clear_messages(services):
    """Fixed examples of the fuzzed classes, with the sentence each one gets."""
    h = services.history
    for data, message in [
        (b"", "not a picture"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "not a picture"),
        (png_claiming(100_000, 100_000), "too many pixels"),
        (real_bomb(), "4112x4112 pixels"),
    ]:
        with pytest.raises(JobError, match=message):
            h.store_upload(data)
    png = encode(Image.new("RGB", (64, 64)))
    with pytest.raises(JobError, match="damaged or cut short"):
        h.store_upload(png[: len(png) // 2])
    for kind in ("t2i", "../../etc/passwd"):
        with pytest.raises(JobError, match="unknown job kind"):
            services.jobs.submit_dict({"kind": kind, "prompt": "x"})
    with pytest.raises(JobError, match="control characters"):
        services.jobs.submit_dict({"kind": "generate", "prompt": "fox\x00"})
    with pytest.raises(JobError, match="less than or equal to 9223372036854775807"):
        services.jobs.submit_dict({"kind": "edit", "prompt": "x", "source_image_id": 2**64})
    with pytest.raises(JobError, match="adapter #77 does not exist"):
        services.jobs.submit_dict({"kind": "generate", "prompt": "x", "adapters": [77]})
    for bad in ("../../etc/passwd", float("nan"), -1, 2**64):
        with pytest.raises(JobError, match="job id must be a whole number|job -1 does not exist"):
            services.jobs.view(bad)
    with pytest.raises(JobError, match="could not read 'passwd'|not a picture|unreadable|no pictures"):
        services.finetune.read_upload(["/nonexistent/passwd"])
    src = h.store_input(Image.new("RGB", (144, 128)))
    mask = h.store_input(Image.new("L", (144, 128), 255), origin="mask")
    with pytest.raises(JobError, match="keeps the source's size"):
        services.jobs.submit(make_spec("inpaint", prompt="x", source_image_id=src.id, mask_image_id=mask.id))
    assert services.huey.pending_count() == 0


# ================================================================================================
# (b) the Gradio API of a running app
# ================================================================================================
# (gradio_client cannot send NaN or infinity: JSON has no such numbers; the job layer covers them)
SMALL_NUMBERS = [0, 1, 2, -1, 0.5, 3.5, 120, 1040, 2**63, 10**30, -(10**30), "x", None, [1], {"a": 1}]


def _files(tmp: Path, n: int, draw) -> list:
    out = []
    for i in range(n):
        _what, data = draw(image_bytes())
        path = tmp / f"up-{i}-{len(data)}.png"
        path.write_bytes(data)
        out.append(handle_file(str(path)))
    return out


@st.composite
def api_cases(draw, tmp: Path):
    """(api_name, kwargs or args) for one call; sizes stay small so a valid job is cheap."""
    n = lambda *good: draw(st.one_of(st.sampled_from(good), st.sampled_from(SMALL_NUMBERS)))
    adapters = draw(
        st.one_of(st.just([]), st.lists(st.one_of(ids().map(str), st.sampled_from(TRAVERSAL)), max_size=2))
    )
    common = {"steps": n(1, 2), "seed": n(1, -1), "adapters": adapters, "adapter_strength": n(1.0)}
    api = draw(
        st.sampled_from(
            ["/generate", "/edit", "/compose", "/storyboard", "ids", "/history_search", "server path"]
        )
    )
    if api == "/generate":
        return api, {
            "prompt": draw(texts()), "width": n(128), "height": n(128), "guidance": n(0, 2.5),
            "num_outputs": n(1, 2), **common,
        }  # fmt: skip
    if api == "/edit":
        (bg,) = _files(tmp, 1, draw)
        editor = {"background": bg, "layers": [], "composite": bg}
        return api, {"editor_value": editor, "instruction": draw(texts()), "image_guidance": n(0, 1.5),
                     "guidance": n(0), **common}  # fmt: skip
    if api == "/compose":
        refs = _files(tmp, draw(st.integers(1, 4)), draw) + [None] * 4
        mode = draw(st.sampled_from(["compose", "style", "../x"]))
        return api, {"mode": mode, "prompt": draw(texts()), "guidance": n(0), "ref1": refs[0], "ref2": refs[1],
                     "ref3": refs[2], "ref4": refs[3], **common}  # fmt: skip
    if api == "/storyboard":
        character = draw(st.one_of(st.none(), st.just("file")))
        character = _files(tmp, 1, draw)[0] if character else None
        return api, {
            "story": draw(texts()),
            "panels": n(2, 3),
            "character": character,
            "guidance": n(0),
            **common,
        }
    if api == "ids":
        return draw(st.sampled_from(["/job_status", "/cancel_job", "/rerun_job"])), {"job_id": draw(ids())}
    if api == "/history_search":
        return api, {"text": draw(texts()), "task": draw(st.sampled_from(["all", "edit", "../x"])),
                     "date": draw(st.sampled_from(["any time", "today", "../x"])),
                     "adapter": draw(st.one_of(st.just("all adapters"), ids().map(str)))}  # fmt: skip
    path = draw(st.sampled_from(["/etc/passwd", str(REPO_ROOT / "README.md"), "../../etc/passwd", "<db>"]))
    return api, {"server_path": path, "endpoint": draw(st.sampled_from(["/edit", "/compose"]))}


def _server_path_call(client: Client, http, app, server_path: str, endpoint: str) -> str:
    """A FileData naming a file on the server, not an upload, sent as raw JSON (gradio_client would
    upload the path from the test's own disk instead): the app must refuse to read it."""
    path = str(app.data_dir / "history.db") if server_path == "<db>" else server_path
    fake = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}
    if endpoint == "/edit":
        editor = {"background": fake, "layers": [], "composite": fake}
        events = raw_call(http, client, "/edit", editor_value=editor, instruction="x")
    else:
        events = raw_call(http, client, "/compose", mode="compose", prompt="x", ref1=fake)
    if "event: error" not in events:
        raise AssertionError(f"the app read {server_path} from its own disk: {events[-300:]}")
    # refused by Gradio's path check or by ours: either way a sentence, never {"error": null}
    message = assert_readable(error_message(events))
    assert "upload" in message, message
    return "rejected"


def _api_call(client: Client, http, app, api: str, kwargs: dict) -> str:
    if api == "server path":
        return _server_path_call(client, http, app, **kwargs)
    try:
        client.predict(**kwargs, api_name=api)
    except AppError as err:
        assert_readable(err)
        return "rejected"
    return "completed"


def _run_api_layer(app, tmp: Path, examples: int | None) -> Tally:
    tally = TALLIES.setdefault("Gradio API", Tally("Gradio API"))
    client = Client(app.url, auth=SECURED_AUTH, verbose=False)
    http = logged_in_http(app.url, SECURED_AUTH)

    def follow_up():
        status, *_ = client.predict(prompt="a calm fox", width=128, height=128, steps=1, guidance=0, seed=1,
                                    num_outputs=1, api_name="/generate")  # fmt: skip
        assert "done" in status
        tally.follow_up_jobs_ok += 1

    @fuzz_settings("api", examples)
    @given(case=api_cases(tmp))
    def run(case):
        api, kwargs = case
        try:
            outcome = _api_call(client, http, app, api, kwargs)
        except BaseException as err:
            tally.add(api, "crash", f"{type(err).__name__}: {str(err)[:300]} in {api} {kwargs!r:.200}")
            raise
        tally.add(api, outcome)
        assert app.proc.poll() is None, "the app exited"
        assert app.worker_pids(), "no worker is running"
        tally.integrity_checks += 1
        assert integrity_ok(app.data_dir / "history.db")
        if tally.cases % FOLLOW_UP_EVERY == 0:
            follow_up()

    run()
    follow_up()
    return tally


def test_bad_input_through_the_gradio_api(secured_app):
    with tempfile.TemporaryDirectory() as tmp:
        tally = _run_api_layer(secured_app, Path(tmp), None)
    assert tally.counts["crash"] == 0 and tally.counts["rejected"] > 0


# ================================================================================================
# the long run: ≥1,000 cases, a table and runs/fuzz.json
# ================================================================================================
@pytest.mark.slow
def test_fuzz_long_run_report(services, tmp_path, secured_app):
    """SEEDLING_FUZZ_EXAMPLES=N (default 1000): N job-layer cases + N/8 API cases."""
    counts = requested_examples() or {"jobs": 1000, "api": 125}
    TALLIES.clear()
    try:
        _run_job_layer(services, tmp_path, counts["jobs"])
        with tempfile.TemporaryDirectory() as tmp:
            _run_api_layer(secured_app, Path(tmp), counts["api"])
    finally:
        table = report(list(TALLIES.values()), REPO_ROOT / "runs" / "fuzz.json", MACHINE)
        print("\n" + table)
    assert all(t.counts["crash"] == 0 and t.integrity_failures == 0 for t in TALLIES.values())
    assert sum(t.cases for t in TALLIES.values()) >= 1000
