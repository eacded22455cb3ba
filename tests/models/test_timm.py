"""timm models by name: the split, every pruning scheme, weights files, saved files, and a whole
compress run from the command line on a generated image folder (random small variants: nothing
is downloaded)."""

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mimir.errors import MimirError
from mimir.export import load_model, save_model
from mimir.models import create_model
from mimir.models.anatomy import attention_modules, residual_blocks
from mimir.models.timm_models import TEST_SIZES, TESTED_FAMILIES
from mimir.prune import prune
from mimir.resolve import load_teacher
from tests.helpers import tiered

FAMILIES = sorted(TESTED_FAMILIES.values())
VITS = [n for n in FAMILIES if "vit" in n or "deit" in n]
#: the families the fast tier prunes, drops blocks of and saves: a ResNet, a mobile network, a ViT
FAST = {"resnet18", "mobilenetv3_small_050", "vit_tiny_patch16_224"}


def _model(name):
    torch.manual_seed(0)
    return create_model(f"timm:{name}", num_classes=10, **TEST_SIZES.get(name, {})).eval()


def _x(model, n=2):
    size = model.default_data_config().input_size if model.model_name.removeprefix("timm:") in TEST_SIZES else 64
    return torch.randn(n, 3, size, size)


@pytest.mark.parametrize("name", FAMILIES)
def test_head_of_body_is_the_model(name):
    model = _model(name)
    x = _x(model)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.allclose(model.forward_head(features), model.model(x), atol=1e-5)
    assert features.dim() == (3 if name in VITS else 4)   # tokens before pooling, or a map


@pytest.mark.parametrize("name", tiered(FAMILIES, FAST))
@pytest.mark.parametrize("scheme", ["channels:0.5", "channels-all:0.5"])
def test_pruning_keeps_the_heads_input_and_the_file_reloads(name, scheme, tmp_path):
    teacher = _model(name)
    x = _x(teacher)
    student, arch = prune(teacher, scheme, x[:1])
    with torch.no_grad():
        assert student.forward_features(x).shape == teacher.forward_features(x).shape
        for head in teacher.head_module_names():
            assert all(torch.equal(a, b) for a, b in zip(teacher.get_submodule(head).state_dict().values(),
                                                         student.get_submodule(head).state_dict().values()))
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    path = save_model(tmp_path / "s.safetensors", student, teacher.default_data_config(), arch["dropped_blocks"])
    loaded, config, _ = load_model(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), student.eval()(x))
    assert config == teacher.default_data_config()


@pytest.mark.parametrize("name", tiered([n for n in FAMILIES if residual_blocks(_model(n))], FAST))
def test_dropping_a_block(name, tmp_path):
    teacher = _model(name)
    x = _x(teacher)
    block = residual_blocks(teacher)[-1].removeprefix("model.")
    student, arch = prune(teacher, f"blocks:{block}", x[:1])
    assert arch["dropped_blocks"] == [f"model.{block}"]
    path = save_model(tmp_path / "s.pt", student, teacher.default_data_config(), arch["dropped_blocks"])
    with torch.no_grad():
        assert torch.equal(load_model(path)[0](x), student(x))


@pytest.mark.parametrize("name", VITS)
@pytest.mark.parametrize("head_pruning", ["dims", "heads"])
def test_vit_channels_prune_mlp_hidden_and_heads_not_the_embedding(name, head_pruning, tmp_path):
    """channels:0.5 halves each MLP and each attention's q/k/v: by default every head keeps half its
    dimensions (all heads stay), with head_pruning=heads half the heads go whole. The fused and the
    unfused attention agree (a narrowed head's scale follows its width), and the geometry survives
    a saved file."""
    teacher = _model(name)
    x = _x(teacher)
    student, arch = prune(teacher, "channels:0.5", x[:1], head_pruning=head_pruning)
    t_block, s_block = teacher.model.blocks[0], student.model.blocks[0]
    t_attn, s_attn = t_block.attn, s_block.attn
    assert s_block.mlp.fc1.out_features == t_block.mlp.fc1.out_features // 2
    if head_pruning == "dims":
        assert (s_attn.num_heads, s_attn.head_dim) == (t_attn.num_heads, t_attn.head_dim // 2)
        assert s_attn.scale == pytest.approx(s_attn.head_dim ** -0.5)
    else:
        assert s_attn.num_heads == t_attn.num_heads - -(-t_attn.num_heads // 2)   # ceil(R * heads) go
        assert s_attn.head_dim == t_attn.head_dim and s_attn.scale == t_attn.scale
    assert s_attn.qkv.out_features == 3 * s_attn.num_heads * s_attn.head_dim
    assert student.model.patch_embed.proj.out_channels == teacher.model.patch_embed.proj.out_channels
    assert arch["attention"]["model.blocks.0.attn"] == [s_attn.num_heads, s_attn.head_dim]
    student.eval()
    with torch.no_grad():
        fused = student(x)
        for m in attention_modules(student).values():
            m.fused_attn = False
        assert torch.allclose(student(x), fused, atol=1e-4, rtol=1e-4)
        path = save_model(tmp_path / "s.safetensors", student, teacher.default_data_config())
        loaded = load_model(path)[0]
        assert loaded.model.blocks[0].attn.head_dim == s_attn.head_dim
        assert torch.allclose(loaded(x), fused, atol=1e-4, rtol=1e-4)


def test_a_file_from_before_head_geometry_was_recorded_loads_with_whole_heads_dropped(tmp_path):
    teacher = _model(VITS[0])
    x = _x(teacher)
    student, _ = prune(teacher, "channels:0.5", x[:1], head_pruning="heads")
    path = save_model(tmp_path / "s.pt", student, teacher.default_data_config())
    payload = torch.load(path, weights_only=True)
    del payload["architecture"]["attention"]
    torch.save(payload, path)
    with torch.no_grad():
        assert torch.equal(load_model(path)[0](x), student.eval()(x))


@pytest.mark.parametrize("name", VITS[:1])
def test_vit_attention_dropping_keeps_the_mlp(name, tmp_path):
    teacher = _model(name)
    x = _x(teacher)
    student, arch = prune(teacher, "attention:blocks.1,blocks.2", x[:1])
    assert arch["dropped_attention"] == ["model.blocks.1", "model.blocks.2"]
    assert not hasattr(student.model.blocks[1], "attn") and hasattr(student.model.blocks[1], "mlp")
    assert torch.equal(student.model.blocks[1].mlp.fc1.weight, teacher.model.blocks[1].mlp.fc1.weight)
    path = save_model(tmp_path / "s.safetensors", student, teacher.default_data_config())
    with torch.no_grad():
        assert torch.equal(load_model(path)[0](x), student(x))
    with pytest.raises(MimirError, match="non-transformer block 'patch_embed'"):
        prune(teacher, "attention:patch_embed", x[:1])


def test_plain_timm_state_dict_and_training_checkpoint_load_with_timms_data_config(tmp_path):
    model = _model("resnet18")
    torch.save(model.model.state_dict(), tmp_path / "plain.pt")
    # timm's train.py checkpoint: the weights under state_dict, DDP's module. prefix, argparse args
    torch.save({"epoch": 3, "arch": "resnet18", "args": argparse.Namespace(model="resnet18"),
                "state_dict": {f"module.{k}": v for k, v in model.model.state_dict().items()}}, tmp_path / "ckpt.pth")
    x = _x(model)
    for file in ("plain.pt", "ckpt.pth"):
        loaded, config = load_teacher("timm:resnet18", tmp_path / file)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        assert (config.num_classes, config.interpolation, config.crop_pct, config.input_size) == (10, "bicubic", 0.95, 224)


def test_vit_patch_and_image_size_are_read_off_the_weights(tmp_path):
    model = _model("deit_tiny_patch16_224")   # built for 32 px
    torch.save(model.model.state_dict(), tmp_path / "w.pt")
    loaded, config = load_teacher("timm:deit_tiny_patch16_224", tmp_path / "w.pt", given={"mean": (0.5,) * 3})
    assert config.input_size == 32 and config.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(loaded(x), model(x))


def test_timm_names_that_do_not_exist_or_have_no_weights():
    with pytest.raises(MimirError, match="timm has no model 'resnet_nope'"):
        create_model("timm:resnet_nope")
    with pytest.raises(MimirError, match="nothing is downloaded"):
        load_teacher("timm:resnet18")


@pytest.mark.slow
def test_compress_a_timm_vit_from_the_command_line(tmp_path):
    """The whole product path: weights file -> CLI compress on an image folder -> saved file -> mimir.load."""
    model = _model("deit_tiny_patch16_224")
    torch.save(model.model.state_dict(), tmp_path / "w.pt")
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    out = tmp_path / "student.safetensors"
    cmd = [sys.executable, "-m", "mimir", "compress", "--teacher", "timm:deit_tiny_patch16_224", "--weights",
           str(tmp_path / "w.pt"), "--data", str(tmp_path / "imgs"), "--eval-data", "none", "--samples", "8",
           "--iterations", "3", "--batch-size", "4", "--prune", "channels:0.5", "--out", str(out), "--no-latency",
           "--json", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["compressed"]["macs"] < summary["teacher"]["macs"]
    import mimir

    student = mimir.load(out)
    assert student.data_config.input_size == 32 and student.data_config.interpolation == "bicubic"
    attn = student.model.blocks[0].attn
    assert (attn.num_heads, attn.head_dim) == (3, 32)   # every head of DeiT-Tiny narrowed from 64 to 32


def test_models_page_table_is_what_mimir_models_timm_prints():
    from pathlib import Path

    from mimir._readme import read_block
    from mimir.prune.families import README_MARKERS, family_rows, readme_text

    page = Path(__file__).resolve().parents[2] / "docs" / "MODELS.md"   # where the generated block lives
    assert read_block(page, *README_MARKERS) == readme_text(family_rows()), \
        "docs/MODELS.md is stale: run 'mimir models --timm --readme docs/MODELS.md'"


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("name", tiered(FAMILIES, FAST))
def test_timm_weights_load_in_both_formats(name, fmt, tmp_path):
    """A plain timm state dict as torch.save writes it and as safetensors (timm's hub format, keys
    sorted) loads into the same model: input channels come from the model's own first conv, never
    from the first 4-D tensor of the file (a block's depthwise conv sorts before the stem)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False, num_classes=7).eval()
    path = tmp_path / f"w.{fmt}"
    state = {k: v.contiguous() for k, v in original.state_dict().items()}
    save_file(state, str(path)) if fmt == "safetensors" else torch.save(state, path)
    model, config = load_teacher(f"timm:{name}", weights=path)
    assert (config.in_chans, config.num_classes) == (3, 7)
    x = torch.randn(1, 3, config.input_size, config.input_size)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
