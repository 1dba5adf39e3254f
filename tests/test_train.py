"""The trainers run end to end on tiny configs and resume exactly."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seedling.model import train, train_ae, train_data
from seedling.model.autoencoder import AE_CONFIGS, Autoencoder
from seedling.model.modeling import weights_path
from seedling.model.train_data import task_probs
from seedling.model.training import checkpoint_step, latest_checkpoint


def test_curriculum_and_task_floor():
    assert set(task_probs(0.0)) == {"t2i"}
    assert set(task_probs(0.2)) == {"t2i", "edit", "inpaint"}
    full = task_probs(0.9)
    assert set(full) == {"t2i", "edit", "inpaint", "compose", "storyboard", "style"}
    assert abs(sum(full.values()) - 1) < 1e-9
    assert min(full.values()) >= 0.05


def test_autoencoder_trainer_resumes(tmp_path):
    out = tmp_path / "ae"
    args = ["--out", str(out), "--config", "tiny", "--batch", "4", "--crop", "32", "--threads", "1", "--max-steps", "50"]
    train_ae.main(args + ["--stop-after", "2"])
    train_ae.main(args + ["--stop-after", "1"])
    assert checkpoint_step(out) == 3
    ae = Autoencoder.from_pretrained(out / "final")
    assert ae.config.latent_scale != 1.0  # measured on data at the end of each invocation


def test_autoencoder_decoder_only_keeps_the_latent_space(tmp_path):
    torch.manual_seed(0)
    base = Autoencoder(AE_CONFIGS["tiny"])
    base.register_to_config(latent_shift=0.25, latent_scale=0.5)
    base.save_pretrained(tmp_path / "pipe" / "autoencoder")  # a pipeline folder's layout
    out = tmp_path / "dec"
    args = ["--out", str(out), "--init", str(tmp_path / "pipe"), "--decoder-only", "--batch", "4", "--crop", "32",
            "--threads", "1", "--max-steps", "50", "--warmup", "1"]
    train_ae.main(args + ["--stop-after", "2"])
    train_ae.main(args + ["--stop-after", "1"])  # resumes the decoder-only run
    assert checkpoint_step(out) == 3
    tuned = Autoencoder.from_pretrained(out / "final")
    assert (tuned.config.latent_shift, tuned.config.latent_scale) == (0.25, 0.5)
    for (name, a), b in zip(base.encoder.state_dict().items(), tuned.encoder.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, b) for a, b in zip(base.decoder.state_dict().values(),
                                                      tuned.decoder.state_dict().values()))
    record = json.loads((out / "final" / "val.json").read_text())
    assert record["decoder_only"] and record["step"] == 3 and "init_psnr" in record
    with pytest.raises(SystemExit):
        train_ae.main(["--out", str(tmp_path / "x"), "--decoder-only"])


def test_dit_trainer_resume_is_exact(tmp_path):
    torch.manual_seed(0)
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae")
    common = ["--ae", str(tmp_path / "ae"), "--config", "tiny", "--token-budget", "300", "--max-steps", "100",
              "--threads", "1", "--seed", "0", "--ckpt-every", "1000"]
    for _ in range(3):  # three invocations of one step each, resuming from the checkpoint
        train.main(common + ["--out", str(tmp_path / "resumed"), "--stop-after", "1"])
    train.main(common + ["--out", str(tmp_path / "oneshot"), "--stop-after", "3",
                         "--export", str(tmp_path / "export")])
    assert checkpoint_step(tmp_path / "resumed") == checkpoint_step(tmp_path / "oneshot") == 3
    for name in ("model.safetensors", "ema-model.safetensors"):
        a = load_file(str(latest_checkpoint(tmp_path / "resumed") / name))
        b = load_file(str(latest_checkpoint(tmp_path / "oneshot") / name))
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    # the export is a loadable pipeline
    from seedling.model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_pretrained(tmp_path / "export")
    assert pipe(prompt="a fox", steps=1, seed=0, height=32, width=32).images[0].size == (32, 32)


def test_planned_batches_depend_on_seed_and_step_only():
    import numpy as np

    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler

    icons = load_icons(limit=40)
    args = dict(seed=3, max_steps=100, token_budget=900, text_len=16, tpi=16, max_batch=48)
    fresh = [TaskSampler(icons, seed=3) for _ in range(2)]
    # step 70 is in the "all tasks" phase; a sampler that already drew other batches gives the same
    train_data.planned_batch(fresh[1], step=5, **args)
    a, b = (train_data.planned_batch(s, step=70, **args) for s in fresh)
    assert a["step"] == b["step"] == 70 and a["task"] == b["task"] and a["prompts"] == b["prompts"]
    for k in ("refs", "outputs"):
        assert a[k].dtype == np.uint8 and np.array_equal(a[k], b[k])
    B, N, M = a["refs"].shape[0], a["refs"].shape[1], a["outputs"].shape[1]
    assert B == train_data.batch_size_for(N, M, 900, 16, 16, 48) == len(a["prompts"])
    assert a["outputs"].shape[2:] == (128, 128, 3)
    # the worker split (round-robin over steps) does not change what each step gets
    ds = train_data.PlannedBatches(3, 68, 74, 900, 16, 16, 48, icons)
    got = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=train_data.keep_arrays))
    assert [g["step"] for g in got] == list(range(68, 74))
    assert got[2]["prompts"] == a["prompts"] and torch.equal(got[2]["outputs"], torch.from_numpy(a["outputs"]))
    # encode_batch takes the stacked form and gives what it gives for the sample list
    ae = Autoencoder(AE_CONFIGS["tiny"]).eval()
    sampler = TaskSampler(icons, seed=1)
    samples = [sampler.sample("inpaint", np.random.default_rng(i)) for i in range(3)]
    r1, m1, x1 = train_data.encode_batch(samples, ae, "cpu")
    r2, m2, x2 = train_data.encode_batch(train_data.keep_arrays(train_data.stack_samples(samples)), ae, "cpu")
    assert torch.equal(x1, x2) and all(torch.equal(u, v) for u, v in zip(r1 + m1, r2 + m2, strict=True))


def test_dit_trainer_with_workers_resumes_exactly_and_inits_from_a_pipeline(tmp_path):
    torch.manual_seed(0)
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae")
    common = ["--ae", str(tmp_path / "ae"), "--config", "tiny", "--token-budget", "300", "--max-steps", "100",
              "--threads", "1", "--seed", "0", "--ckpt-every", "1000", "--workers", "2", "--max-batch", "6"]
    # the weights to start from: another seed's init, one step trained
    train.main(common + ["--out", str(tmp_path / "base"), "--stop-after", "1", "--seed", "1",
                         "--export", str(tmp_path / "init")])
    init = ["--init", str(tmp_path / "init")]
    for _ in range(2):
        train.main(common + init + ["--out", str(tmp_path / "resumed"), "--stop-after", "1"])
    train.main(common + init + ["--out", str(tmp_path / "oneshot"), "--stop-after", "2"])
    for name in ("model.safetensors", "ema-model.safetensors"):
        a = load_file(str(latest_checkpoint(tmp_path / "resumed") / name))
        b = load_file(str(latest_checkpoint(tmp_path / "oneshot") / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # --init started from the exported weights (fp16 there), not from this seed's random init
    start = load_file(str(weights_path(tmp_path / "init" / "dit")))
    torch.manual_seed(0)
    fresh = train.UnifiedDiT(train.DiT_configs["tiny"]()).state_dict()
    ema = load_file(str(latest_checkpoint(tmp_path / "oneshot") / "ema-model.safetensors"))
    moved = [k for k in start if not torch.equal(start[k].float(), fresh[k])]
    assert len(moved) > 10
    for k in moved:
        assert (ema[k] - start[k].float()).abs().max() < (ema[k] - fresh[k]).abs().max(), k
    batches = [int(r.split(",")[4]) for r in (tmp_path / "oneshot" / "loss.csv").read_text().splitlines()[1:]]
    assert len(batches) == 2 and all(b <= 6 for b in batches)  # a row per step


def test_compose_batches_share_their_boxes_with_reference_boxes():
    import numpy as np

    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler

    sampler = TaskSampler(load_icons()[:60], seed=0)
    maker = train_data.BatchMaker(sampler, np.random.default_rng(0), 1200, 16, 16, max_batch=4, boxes=True)
    for _ in range(3):
        st = train_data.stack_samples(maker.next("compose"))
        boxes = st["ref_boxes"]
        assert boxes is not None and len(boxes) == st["refs"].shape[1]
        assert all(0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1 for b in boxes)
    plain = train_data.BatchMaker(sampler, np.random.default_rng(0), 1200, 16, 16, max_batch=4)
    mixed = [train_data.stack_samples(plain.next("compose"))["ref_boxes"] for _ in range(6)]
    assert any(b is None for b in mixed)  # without boxes=True a batch mixes layouts: no shared boxes


def test_dit_trainer_with_reference_boxes_records_it_and_trains_compose(tmp_path, monkeypatch):
    torch.manual_seed(0)
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae")
    monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None: "compose")
    seen = []
    real = train.reference_positions
    monkeypatch.setattr(train, "reference_positions", lambda *a: seen.append(real(*a)) or seen[-1])
    train.main(["--ae", str(tmp_path / "ae"), "--config", "tiny", "--token-budget", "400", "--max-steps", "10",
                "--threads", "1", "--stop-after", "2", "--reference-boxes", "--out", str(tmp_path / "run"),
                "--no-curriculum"])
    cfg = json.loads((latest_checkpoint(tmp_path / "run") / "config.json").read_text())
    assert cfg["reference_boxes"] is True
    assert any(placed for placed in seen)  # positions reached the model on compose steps
    assert all(torch.is_tensor(p) for placed in seen if placed for p in placed)


def test_task_weights_change_the_mix_and_bad_ones_are_sentences():
    mixed = task_probs(1.0, {"compose": 5.0})
    assert mixed["compose"] > 0.5 > task_probs(1.0)["compose"]
    with pytest.raises(SystemExit):
        train.main(["--task-weights", "painting=2", "--out", "/nonexistent"])
    assert train._task_weights("compose=0.5, t2i=1") == {"compose": 0.5, "t2i": 1.0}


def test_control_tasks_join_the_mix_only_with_a_weight():
    assert not set(task_probs(1.0)) & {"edges", "sketch", "colourise", "upscale"}
    mix = task_probs(1.0, {"edges": 0.3, "upscale": 0.2, "storyboard": 0})
    assert {"edges", "upscale"} <= set(mix) and "storyboard" not in mix and "sketch" not in mix
    assert set(task_probs(0.2, {"edges": 0.3})) == {"t2i", "edit", "inpaint"}  # the curriculum still holds
    assert train._task_weights("edges=0.2") == {"edges": 0.2}


def test_a_run_from_init_adds_the_control_tasks_it_weights(tmp_path, monkeypatch):
    """--init from a model trained without the control tasks, --task-weights naming them: the run's
    model knows them (their embedding rows start from the edit task's), trains them, and a resume
    keeps them; a run that cannot add them (no --init) says so."""
    from dataclasses import replace

    from seedling.model.dit import DiT_tiny, UnifiedDiT

    torch.manual_seed(0)
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae")
    six = replace(DiT_tiny(), tasks=("t2i", "edit", "inpaint", "compose", "storyboard", "style"), num_tasks=8)
    UnifiedDiT(six).save_pretrained(tmp_path / "init" / "dit")
    monkeypatch.setattr(train, "draw_task", lambda rng, progress, weights=None: "edges")
    args = ["--ae", str(tmp_path / "ae"), "--config", "tiny", "--token-budget", "400", "--max-steps", "10",
            "--threads", "1", "--out", str(tmp_path / "run"), "--no-curriculum", "--task-weights", "edges=0.5,upscale=0.2"]
    train.main(args + ["--init", str(tmp_path / "init"), "--stop-after", "1"])
    train.main(args + ["--stop-after", "1"])  # resumes: the checkpoint's config has the tasks
    ck = latest_checkpoint(tmp_path / "run")
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["tasks"][:6] == list(six.tasks) and cfg["tasks"][6:] == ["edges", "upscale"]
    weights = load_file(str(ck / "model.safetensors"))["task_embed.weight"]
    init = load_file(str(weights_path(tmp_path / "init" / "dit")))["task_embed.weight"]
    assert weights.shape[0] == 8  # two new tasks fit the spare rows
    for row in (6, 7):  # edges and upscale start from the edit task's row (two warm-up steps move little)
        assert (weights[row] - init[1]).abs().max() < 0.05
    assert (weights[:6] - init[:6]).abs().max() < 0.05
    rows = [r.split(",") for r in (tmp_path / "run" / "loss.csv").read_text().splitlines()]
    assert [r[rows[0].index("task")] for r in rows[1:]] == ["edges", "edges"]
    with pytest.raises(SystemExit, match="does not know"):  # a run without --init cannot add a task
        train.main(args + ["--task-weights", "sketch=1", "--stop-after", "1"])


@pytest.mark.parametrize("task,boxes,panels", [("compose", False, False), ("compose", True, False),
                                                ("compose", True, True), ("storyboard", False, False)])
def test_planned_batches_render_only_the_samples_they_keep(task, boxes, panels):
    """Compose and storyboards come in several layouts: a batch picks its layout from the draws
    alone and renders only the samples it keeps, and over many steps each layout's share of the
    samples is its share of the sampler's draws (with boxes too, where racing whole samples to a
    full bucket gave compose batches of 2 references almost only)."""
    import collections

    import numpy as np

    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler

    icons = load_icons(limit=40)
    sampler = TaskSampler(icons, seed=3, storyboard_panels=panels)
    rendered = collections.Counter()
    render = sampler._render
    sampler._render = lambda plan: rendered.update([plan["kind"]]) or render(plan)
    args = {"seed": 3, "max_steps": 100, "token_budget": 900, "text_len": 16, "tpi": 16, "max_batch": 8,
            "boxes": boxes, "weights": {t: float(t == task) for t in ("t2i", "edit", "inpaint", "compose", "storyboard",
                                                                       "style")}}
    shares = collections.Counter()
    for step in range(60):
        before = sum(rendered.values())
        b = train_data.planned_batch(sampler, step=step, curriculum=False, **args)
        assert b["task"] == task and sum(rendered.values()) - before == len(b["prompts"])
        shares[(b["refs"].shape[1], b["outputs"].shape[1])] += len(b["prompts"])
    # the sampler's own shares, from its draws alone
    natural = collections.Counter(sampler.layout_of(task, np.random.default_rng(i), boxes)[0][1:3] for i in range(600))
    assert set(shares) == set(natural)
    total = sum(shares.values())
    for layout, n in natural.items():
        assert abs(shares[layout] / total - n / 600) < 0.12, (layout, shares, natural)
    # a sample drawn with a layout kept has that layout's key
    for seed in range(20):
        key, layout = sampler.layout_of(task, np.random.default_rng(seed), boxes)
        assert train_data.batch_key(sampler.sample(task, np.random.default_rng(seed + 99), layout=layout), boxes) == key
    assert sampler.layout_of("t2i", np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="one layout"):
        sampler.sample("t2i", np.random.default_rng(0), layout={"kind": "compose", "n_refs": 2})


def test_planned_batches_follow_the_runs_task_weights():
    """Data workers draw the run's mix too, so a GPU run (which needs workers) can train the
    control tasks: with edges weighted high, most planned steps are edges batches."""
    from seedling.model.data.icons import load_icons
    from seedling.model.data.tasks import TaskSampler

    icons = load_icons(limit=40)
    sampler = TaskSampler(icons, seed=3)
    args = dict(seed=3, max_steps=100, token_budget=900, text_len=16, tpi=16, max_batch=8)
    plain = {train_data.planned_batch(sampler, step=s, **args)["task"] for s in range(60, 80)}
    weighted = [train_data.planned_batch(sampler, step=s, weights={"edges": 20.0}, **args)["task"]
                for s in range(60, 80)]
    # edges: 20 of 21 parts, the six others at their 6% floor: about 73% of steps
    assert "edges" not in plain and weighted.count("edges") >= 8
    ds = train_data.PlannedBatches(3, 60, 64, 900, 16, 16, 8, icons, weights={"edges": 20.0})
    assert [b["task"] for b in ds] == weighted[:4]


def test_a_native_512_run_on_a_deep_compression_autoencoder_starts_from_a_128_dit(tmp_path, monkeypatch):
    """--size draws the samples at that size; --ae may be a DCAutoencoder (f32) with another
    latent width: --init keeps every DiT weight that fits and starts the latent projections
    afresh; the export draws at its native size by default; resuming at another size is refused.
    The icons are rasterised once at the run's size (here: recorded, not written; a 256 px file of
    every icon is 0.4 GB)."""
    from seedling.model.data import icons as ic
    from seedling.model.dcae import DCAutoencoder, load_autoencoder
    from seedling.model.pipeline import SeedlingPipeline

    rasters = []
    monkeypatch.setattr(ic, "ensure_rasters", lambda icons, size, folder, processes=1: rasters.append(
        (len(icons), size, Path(folder).name)) or True)

    torch.manual_seed(0)
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae8")
    common = ["--config", "tiny", "--token-budget", "300", "--max-steps", "100", "--threads", "1", "--seed", "0",
              "--ckpt-every", "1000", "--max-batch", "4"]
    train.main(common + ["--ae", str(tmp_path / "ae8"), "--out", str(tmp_path / "base"), "--stop-after", "1",
                         "--export", str(tmp_path / "init")])
    DCAutoencoder.from_named("tiny-f32").save_pretrained(tmp_path / "ae32")
    assert isinstance(load_autoencoder(tmp_path / "ae32"), DCAutoencoder)
    run = ["--ae", str(tmp_path / "ae32"), "--size", "256", "--init", str(tmp_path / "init"),
           "--out", str(tmp_path / "big"), "--no-curriculum"]
    assert rasters == []  # 128 px: the icon cache is already at that size
    train.main(common + run + ["--stop-after", "1", "--export", str(tmp_path / "export")])
    assert rasters == [(len(ic.load_icons()), side, "icon_rasters") for side in (84, 112, 152, 200, 256)]
    cfg = json.loads((latest_checkpoint(tmp_path / "big") / "config.json").read_text())
    assert cfg["latent_channels"] == 8 and json.loads((latest_checkpoint(tmp_path / "big") / "data.json")
                                                      .read_text()) == {"size": 256}
    start = load_file(str(weights_path(tmp_path / "init" / "dit")))
    fitted = train.load_fitting(train.UnifiedDiT(train.DiTConfig.from_dict(cfg)), start)
    assert fitted and len(fitted) <= 6  # only the latent in/out projections start afresh
    assert all("block" not in k for k in fitted)
    pipe = SeedlingPipeline.from_pretrained(tmp_path / "export")
    assert isinstance(pipe.autoencoder, DCAutoencoder) and pipe.settings.default_size == 256
    assert pipe(prompt="a fox", steps=1, seed=0).images[0].size == (256, 256)
    with pytest.raises(SystemExit, match="--size 256"):
        train.main(common + run[:2] + ["--size", "128"] + run[4:] + ["--stop-after", "1"])


def test_t2i_mix_sets_what_t2i_samples_show_in_process_and_in_workers():
    """--t2i-mix: icon=1 makes every t2i sample an icon (in the trainer's sampler and in the data
    workers' PlannedBatches); a kind not in T2I_KINDS, or every weight 0, is a sentence."""
    from seedling.model.data.icon_names import icon_names
    from seedling.model.data.icons import load_icons

    assert train._t2i_mix("icon=0.8, shapes=0.2") == {"icon": 0.8, "shapes": 0.2}
    for bad in ("fox=1", "icon=0,shapes=0", "icon=lots"):
        with pytest.raises(SystemExit):
            train.main(["--t2i-mix", bad, "--out", "/nonexistent"])
    icons = load_icons(limit=40)
    ds = train_data.PlannedBatches(3, 60, 72, 900, 16, 16, 8, icons, weights={"t2i": 50.0}, t2i_mix={"icon": 1.0})
    batches = [b for b in ds if b["task"] == "t2i"]
    assert len(batches) >= 4
    # every t2i prompt names one of the icons (by any of its names)
    names = [n.lower() for ns in icon_names(icons).values() for n in ns]
    assert all(any(n in p.lower() for n in names) for b in batches for p in b["prompts"])
    plain = train_data.PlannedBatches(3, 60, 72, 900, 16, 16, 8, icons, weights={"t2i": 50.0})
    assert [b["prompts"] for b in plain if b["task"] == "t2i"] != [b["prompts"] for b in batches]
