"""The trainers run end to end on tiny configs and resume exactly."""

import torch
from safetensors.torch import load_file

from model import train, train_ae
from model.autoencoder import AE_CONFIGS, Autoencoder
from model.train import task_probs


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
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 3
    ae = Autoencoder.from_pretrained(out / "final")
    assert ae.config.latent_scale != 1.0  # measured on data at the end of each invocation


def test_dit_trainer_resume_is_exact(tmp_path):
    torch.manual_seed(0)
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae")
    common = ["--ae", str(tmp_path / "ae"), "--config", "tiny", "--token-budget", "300", "--max-steps", "100",
              "--threads", "1", "--seed", "0", "--ckpt-every", "1000"]
    for _ in range(3):  # three invocations of one step each, resuming from the checkpoint
        train.main(common + ["--out", str(tmp_path / "resumed"), "--stop-after", "1"])
    train.main(common + ["--out", str(tmp_path / "oneshot"), "--stop-after", "3",
                         "--export", str(tmp_path / "export")])
    sa = torch.load(tmp_path / "resumed" / "checkpoint" / "state.pt", weights_only=False)
    sb = torch.load(tmp_path / "oneshot" / "checkpoint" / "state.pt", weights_only=False)
    assert sa["step"] == sb["step"] == 3
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "resumed" / "checkpoint" / name))
        b = load_file(str(tmp_path / "oneshot" / "checkpoint" / name))
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    # the export is a loadable pipeline
    from model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_pretrained(tmp_path / "export")
    assert pipe(prompt="a fox", steps=1, seed=0, height=32, width=32).images[0].size == (32, 32)
