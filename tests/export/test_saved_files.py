"""Saved models in both formats: every registry model with every pruning scheme it supports loads in
a fresh process with identical outputs; every damaged, tampered or foreign file is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from mimir.cli import main
from mimir.core import DataConfig
from mimir.export import save_model
from mimir.export.checkpoint import _JSON_ENTRIES
from mimir.models import accepts, create_model, list_models
from mimir.models.anatomy import residual_blocks
from mimir.prune import prune

FORMATS = (".pt", ".safetensors")


def _build(name: str):
    """A small-input, 1-channel variant of registry model ``name`` (fast, same code paths)."""
    kwargs = {"num_classes": 10, "in_chans": 1}
    if accepts(name, "small_input"):
        kwargs["small_input"] = True
    torch.manual_seed(0)
    return create_model(name, **kwargs), DataConfig(in_chans=1, input_size=28, mean=(0.5,), std=(0.25,),
                                                    num_classes=10)


def _schemes(model) -> list[str]:
    blocks = residual_blocks(model)
    return ["none", "channels:0.5"] + ([f"blocks:{blocks[-1]}"] if blocks else [])


CASES = [(name, scheme) for name in list_models() for scheme in _schemes(_build(name)[0])]

_LOADER = """
import json, sys, torch, mimir
x = torch.load(sys.argv[1], weights_only=True)["x"]
out = {}
for path in json.loads(sys.argv[2]):
    model = mimir.load(path)
    assert not model.training
    with torch.no_grad():
        torch.save(model(x), path + ".out")
    out[path] = model.data_config.input_size
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every case saved in both formats, loaded in one fresh process; its outputs written beside."""
    root = tmp_path_factory.mktemp("saved")
    x = torch.randn(3, 1, 28, 28)
    torch.save({"x": x}, root / "x.pt")
    expected, paths = {}, []
    for name, scheme in CASES:
        model, config = _build(name)
        student, arch = (model, {"dropped_blocks": []}) if scheme == "none" else prune(model, scheme, x[:1])
        student.eval()
        with torch.no_grad():
            out = student(x)
        for suffix in FORMATS:
            path = str(root / f"{name}-{scheme.replace(':', '_')}{suffix}")
            save_model(path, student, config, arch["dropped_blocks"], info={"scheme": scheme})
            expected[path] = out
            paths.append(path)
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(root / "x.pt"), json.dumps(paths)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return expected, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("name,scheme", CASES)
def test_saved_model_loads_identically_in_a_fresh_process(saved, name, scheme, suffix, tmp_path):
    expected, sizes = saved
    path = next(p for p in expected if p.endswith(f"{name}-{scheme.replace(':', '_')}{suffix}"))
    assert sizes[path] == 28
    assert torch.equal(torch.load(path + ".out", weights_only=True), expected[path])


def test_safetensors_file_needs_no_pickle(good):
    from safetensors import safe_open

    with safe_open(str(good[".safetensors"]), framework="pt") as f:
        meta = f.metadata()
        assert meta["format"] == "mimir/1" and meta["model"] == "resnet20"
        assert json.loads(meta["info"]) == {}
        assert f.get_tensor("fc.weight").shape == (10, 64)


# ----------------------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    model, config = _build("resnet20")
    student, arch = prune(model, "channels:0.5", torch.zeros(1, 1, 28, 28))
    return {s: save_model(root / f"m{s}", student, config, [], info={}) for s in FORMATS}


def _tampered_pt(good, tmp_path, change) -> str:
    payload = torch.load(good[".pt"], weights_only=True)
    change(payload)
    path = tmp_path / "tampered.pt"
    torch.save(payload, path)
    return str(path)


def _tampered_safetensors(good, tmp_path, change) -> str:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good[".safetensors"]), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    payload = {"state_dict": tensors, **{k: json.loads(meta[k]) for k in _JSON_ENTRIES}}
    change(payload)
    meta.update({k: json.dumps(payload[k]) for k in _JSON_ENTRIES})
    path = tmp_path / "tampered.safetensors"
    save_file(payload["state_dict"], str(path), metadata=meta)
    return str(path)


def _wrong_shape(p):
    p["state_dict"]["layer1.0.conv1.weight"] = torch.zeros(3, 16, 3, 3)


def _missing_key(p):
    del p["state_dict"]["layer2.1.bn2.running_var"]


def _layer_that_does_not_exist(p):
    p["architecture"]["layers"]["layer9.conv1"] = [16, 8, 1]


def _shape_that_does_not_fit(p):
    p["architecture"]["layers"]["layer1.0.conv1"] = [16, 99, 1]


def _garbage_shape(p):
    p["architecture"]["layers"]["layer1.0.bn1"] = "eight"


TAMPERINGS = [_wrong_shape, _missing_key, _layer_that_does_not_exist, _shape_that_does_not_fit, _garbage_shape]


def _refused(path, capsys) -> str:
    assert main(["evaluate", str(path), "--data", "fashion-mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("change", TAMPERINGS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("write", [_tampered_pt, _tampered_safetensors], ids=["pt", "safetensors"])
def test_tampered_file_is_refused(good, tmp_path, capsys, write, change):
    _refused(write(good, tmp_path, change), capsys)


@pytest.mark.parametrize("suffix", FORMATS)
def test_truncated_file_is_refused(good, tmp_path, capsys, suffix):
    blob = good[suffix].read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(blob[: len(blob) // 2])
    assert "damaged or incomplete" in _refused(path, capsys)


def test_pickled_module_is_refused_and_never_run(good, tmp_path, capsys):
    marker = tmp_path / "ran"
    torch.save(_Trap(str(marker)), tmp_path / "module.pt")
    assert "pickled Python objects" in _refused(tmp_path / "module.pt", capsys)
    assert not marker.exists()


class _Trap(torch.nn.Linear):
    """A module whose unpickling would leave a file behind."""

    def __init__(self, marker: str) -> None:
        super().__init__(2, 2)
        self.marker = marker

    def __reduce_ex__(self, protocol):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("write", ["other-tool.safetensors", "notes.pt"])
def test_file_of_another_tool_is_refused(tmp_path, capsys, write):
    from safetensors.torch import save_file

    path = tmp_path / write
    if write.endswith(".safetensors"):
        save_file({"weight": torch.zeros(2)}, str(path))
    else:
        path.write_text("epoch 3: loss 0.41\n")
    _refused(path, capsys)
