"""The shared training loop (model/training.py) and the atomic-write helper (atomic.py)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from seedling.atomic import write_all_atomic, write_atomic
from seedling.model.training import StepTimer, Trainer, checkpoint_step, format_eta


def _run(out, stop_after=0, max_steps=12):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    tr = Trainer(out, max_steps=max_steps, ckpt_every=5, seed=1, stop_after=stop_after, progress_bar=False)
    model = tr.add("m", model, lr=1e-2, warmup=3, ema_decay=0.9)
    tr.resume()
    lrs = []
    while tr.running():
        # both the recipe's numpy generator and torch's global RNG feed the step
        x = torch.as_tensor(tr.rng.normal(size=(16, 4)), dtype=torch.float32) + torch.randn(16, 4)
        tr.step("m", model(x).pow(2).mean())
        lrs.append(tr.lr("m"))
        tr.end_step()
    tr.finish()
    return tr.unwrap("m").state_dict(), tr.ema_state_dict("m"), lrs


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    whole, whole_ema, whole_lrs = _run(tmp_path / "a")
    _, _, first = _run(tmp_path / "b", stop_after=7)  # stops between two periodic checkpoints
    assert checkpoint_step(tmp_path / "b") == 7
    resumed, resumed_ema, rest = _run(tmp_path / "b")
    assert first + rest == whole_lrs  # the schedule continues, not restarts
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k
        assert torch.equal(whole_ema[k], resumed_ema[k]), k
    assert not torch.equal(whole_ema["0.weight"], whole["0.weight"])  # the EMA is its own average
    ck = tmp_path / "b" / (tmp_path / "b" / "latest").read_text()
    assert json.loads((ck / "trainer.json").read_text())["step"] == 12
    assert len(list((tmp_path / "b" / "checkpoints").iterdir())) == 1  # older folders are removed


def test_lr_schedule_comes_from_diffusers_with_warmup(tmp_path):
    from diffusers.optimization import get_cosine_schedule_with_warmup

    _, _, lrs = _run(tmp_path, max_steps=12)
    ref = get_cosine_schedule_with_warmup(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-2), 3, 12)
    expected = []
    for _ in range(12):
        ref.step()
        expected.append(ref.get_last_lr()[0])
    assert lrs == pytest.approx(expected)
    assert lrs[0] < lrs[2] and lrs[2] == pytest.approx(1e-2) and lrs[-1] < lrs[2]


def test_trainable_only_checkpoints_hold_the_trainable_weights(tmp_path):
    from safetensors.torch import load_file

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    model[0].requires_grad_(False)
    tr = Trainer(tmp_path, max_steps=2, ckpt_every=0, trainable_only=True, progress_bar=False)
    m = tr.add("m", model, lr=1e-2)
    while tr.running():
        tr.step("m", m(torch.ones(2, 4)).sum())
        tr.end_step()
    ck = tr.finish()
    assert set(load_file(str(ck / "model.safetensors"))) == {"1.weight", "1.bias"}
    other = Trainer(tmp_path, max_steps=2, ckpt_every=0, trainable_only=True, progress_bar=False)
    wrong = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))  # every layer trains: the file lacks some
    other.add("m", wrong, lr=1e-2)
    with pytest.raises(ValueError, match="does not match"):
        other.resume()


def test_step_timer_eta_and_its_words():
    timer = StepTimer(window=2)
    assert timer.eta(10) is None and format_eta(None) == "…"
    timer.durations.extend([1.0, 3.0])
    assert timer.seconds_per_step == 2.0 and timer.eta(30) == 60.0
    assert (format_eta(45), format_eta(750), format_eta(3900)) == ("45 s", "12 min 30 s", "1 h 05 min")


def test_atomic_writes_replace_whole_files_and_leave_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    write_atomic(tmp_path / "b.bin", lambda p: p.write_bytes(b"three"))
    assert target.read_text() == "two" and (tmp_path / "b.bin").read_bytes() == b"three"

    def fail(path):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_all_atomic({target: "new", tmp_path / "c": fail})
    assert target.read_text() == "two" and not (tmp_path / "c").exists()  # all or nothing
    assert [p for p in tmp_path.rglob("*") if p.name.startswith(".")] == []
    assert os.listdir(tmp_path / "sub") == ["a.json"]
