"""Few-step distillation (model/distill.py): the DMD gradient, the sampler it trains through, and
an end-to-end tiny run that resumes and exports a loadable pipeline."""

import json

import torch

from seedling.model import distill
from seedling.model.pipeline import SeedlingPipeline
from seedling.model.sampler import Branch, euler_sample, make_schedule
from seedling.model.training import latest_checkpoint


def test_dmd_loss_gradient_is_normalised_score_difference():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 1, 4, 8, 8, generator=g, requires_grad=True)
    real, fake = torch.randn(3, 1, 4, 8, 8, generator=g), torch.randn(3, 1, 4, 8, 8, generator=g)
    distill.dmd_loss(x0, real, fake).backward()
    w = (x0.detach() - real).abs().mean((1, 2, 3, 4), keepdim=True)
    expected = (fake - real) / w / x0.numel()
    assert torch.allclose(x0.grad, expected, rtol=1e-5, atol=1e-8)
    # where fake == real the student's distribution already matches: no gradient
    x1 = x0.detach().clone().requires_grad_(True)
    distill.dmd_loss(x1, real, real).backward()
    assert x1.grad.abs().max() == 0


def test_student_sampler_is_the_pipelines_sampler():
    """The student must be trained through exactly the sampler the pipeline runs at 1-2 steps."""
    w = torch.randn(4, 4)

    def fn(x, t, d):
        return torch.tanh(x @ w) * t.reshape(-1, 1, 1, 1, 1) + d.reshape(-1, 1, 1, 1, 1)

    z = torch.randn(2, 1, 3, 4, 4)
    for steps in (1, 2, 4):
        a = distill.student_sample(fn, z, steps)
        b = euler_sample({"cond": Branch("cond", fn)}, z.clone(), make_schedule(steps, "uniform"), 1.0, 1.0)
        assert torch.allclose(a, b, atol=1e-6), steps


def test_distill_runs_resumes_and_exports(tmp_path):
    torch.manual_seed(0)
    base = SeedlingPipeline.from_config("tiny", seed=0)
    for prm in base.dit.parameters():
        with torch.no_grad():
            prm.add_(torch.randn_like(prm) * 0.02)
    base.save_pretrained(tmp_path / "base")
    args = ["--model", str(tmp_path / "base"), "--out", str(tmp_path / "run"), "--token-budget", "200",
            "--threads", "1", "--max-steps", "10", "--ckpt-every", "1000"]
    distill.main(args + ["--stop-after", "2"])
    first = {k: v.clone() for k, v in
             SeedlingPipeline.from_pretrained(tmp_path / "base").dit.state_dict().items()}
    distill.main(args + ["--stop-after", "1", "--export", str(tmp_path / "export")])
    state = json.loads((latest_checkpoint(tmp_path / "run") / "trainer.json").read_text())
    assert state["step"] == 3 and state["extra"]["samples"] > 0
    lines = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert lines[0].startswith("step,task,nfe")
    pipe = SeedlingPipeline.from_pretrained(tmp_path / "export")
    assert pipe.settings.default_steps == 2 and pipe.settings.guidance == 1.0
    changed = [k for k, v in pipe.dit.state_dict().items() if not torch.allclose(v, first[k].half().float())]
    assert changed, "the student's weights did not move"
    assert pipe(prompt="a fox", seed=0, height=32, width=32).images[0].size == (32, 32)
