"""Studio LoRA adapters in peft's folder format: PeftModel.from_pretrained loads them and gives the
same weights as the studio's own apply; the single-file form still loads."""

import copy
import json

import pytest
import torch
from peft import PeftModel

from seedling.model.adapters import Adapter, load_adapter, save_adapter, set_adapters
from seedling.model.dit import DiT_tiny, UnifiedDiT

LAYERS = ("blocks.0.qkv", "blocks.1.proj", "blocks.1.mlp.0")


@pytest.fixture
def dit():
    torch.manual_seed(0)
    return UnifiedDiT(DiT_tiny()).eval()


def lora(dit, rank=4, alpha=8.0):
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for name in LAYERS:
        layer = dit.get_submodule(name)
        tensors[f"{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=g)
        tensors[f"{name}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=g) * 0.1
    return Adapter("lora", tensors, {"name": "blue", "rank": rank, "alpha": alpha, "steps": 6})


def test_peft_loads_a_studio_adapter(dit, tmp_path):
    adapter = lora(dit)
    folder = save_adapter(adapter, tmp_path / "blue")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and sorted(config["target_modules"]) == sorted(LAYERS)

    merged = PeftModel.from_pretrained(copy.deepcopy(dit), str(folder)).merge_and_unload()
    ours = copy.deepcopy(dit)
    set_adapters(ours, [(adapter, 1.0)])
    for name in LAYERS:
        base_w = dit.get_submodule(name).weight
        a, b = adapter.lora_pair(name)
        expected = base_w + adapter.scale * (b @ a)
        assert torch.allclose(merged.get_submodule(name).weight, expected, atol=1e-5), name
        assert torch.allclose(ours.get_submodule(name).weight, expected, atol=1e-5), name
    untouched = "blocks.0.proj.weight"
    assert torch.equal(merged.state_dict()[untouched], dit.state_dict()[untouched])


def test_folder_and_file_round_trip(dit, tmp_path):
    adapter = lora(dit)
    for path in (tmp_path / "as_folder", tmp_path / "as_file.safetensors"):
        back = load_adapter(save_adapter(adapter, path))
        assert back.kind == "lora" and back.metadata == adapter.metadata
        assert back.tensors.keys() == adapter.tensors.keys()
        assert all(torch.equal(back.tensors[k], v) for k, v in adapter.tensors.items())
    assert load_adapter(tmp_path / "as_folder" / "adapter_model.safetensors").metadata["name"] == "blue"


def test_a_peft_folder_written_by_peft_loads(dit, tmp_path):
    """A LoRA trained elsewhere with peft (no studio header) applies too."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(dit), LoraConfig(r=2, lora_alpha=2, target_modules=["qkv"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    model.save_pretrained(str(tmp_path / "theirs"))
    adapter = load_adapter(tmp_path / "theirs")
    assert adapter.rank == 2 and adapter.scale == 1.0 and len(adapter.lora_modules()) == dit.config.depth
    set_adapters(dit, [(adapter, 1.0)])
    merged = model.merge_and_unload()
    assert torch.allclose(dit.blocks[0].qkv.weight, merged.blocks[0].qkv.weight, atol=1e-5)


def test_full_adapters_have_no_peft_form(dit, tmp_path):
    full = Adapter("full", {"blocks.0.proj.bias": torch.ones(64)}, {"name": "f"})
    with pytest.raises(ValueError, match="only LoRA"):
        save_adapter(full, tmp_path / "f")
    assert load_adapter(save_adapter(full, tmp_path / "f.safetensors")).kind == "full"
