"""ONNX export: parity with PyTorch in ONNX Runtime (a channel-pruned teacher file and a block-dropped
student), dynamic batch, folded BatchNorm, metadata; models ONNX cannot express are refused."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import mimir
from mimir.cli import main
from mimir.errors import MimirError
from mimir.export import save_model
from mimir.export.onnx import PARITY_TOLERANCE, check_onnx, onnx_bytes, ort_session
from mimir.prune import prune


@pytest.fixture(scope="module")
def dropped_file(tmp_path_factory, teacher20_path):
    model, config, _ = mimir.load_model(teacher20_path)
    student, arch = prune(model, "blocks:layer1.1,layer2.1,layer2.2,layer3.1", torch.zeros(1, 1, 28, 28))
    path = tmp_path_factory.mktemp("onnx") / "dropped.safetensors"
    recipe = {"teacher": "resnet20", "method": "mir", "eval_data": "fashion-mnist"}
    save_model(path, student, config, arch["dropped_blocks"], info={"recipe": recipe,
                                                                    "dropped_blocks": arch["dropped_blocks"]})
    return path, student


@pytest.mark.parametrize("which", ["teacher", "dropped"])
def test_export_matches_pytorch_in_onnx_runtime(which, dropped_file, tmp_path, capsys, fmnist_test):
    source = "resnet20" if which == "teacher" else str(dropped_file[0])
    out = tmp_path / "m.onnx"
    assert main(["export", source, "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["relative_diff"] <= PARITY_TOLERANCE and result["top1_agreement"] >= 99.0
    assert result["inputs"] == "256 images of fashion-mnist" and result["batchnorm_left"] == 0

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["mimir_version"] == mimir.__version__ and meta["teacher"] == "resnet20"
    assert json.loads(meta["data_config"])["input_size"] == 28
    if which == "dropped":
        assert meta["method"] == "mir" and json.loads(meta["recipe"])["eval_data"] == "fashion-mnist"
    else:   # no method made the teacher: none is named ("none" is the method that trains nothing)
        assert "method" not in meta

    model = mimir.load(dropped_file[0] if which == "dropped" else mimir.teachers.bundled_teacher_path("resnet20"))
    session = ort_session(out)
    for batch in (1, 5):   # the batch dimension is dynamic
        x = torch.randn(batch, 1, 28, 28)
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4 * float(model(x).abs().max()))


def test_disagreeing_file_is_refused(dropped_file):
    _, student = dropped_file
    config = mimir.load(dropped_file[0]).data_config
    blob = onnx_bytes(student, config)
    wrong = nn.Sequential(student, _AddOne())   # PyTorch side now differs from the file
    with pytest.raises(MimirError, match="differ from PyTorch"):
        check_onnx(blob, wrong, torch.randn(4, 1, 28, 28), "4 random inputs")


class _AddOne(nn.Module):
    def forward(self, x):
        return x + 1


class _DataDependent(nn.Module):
    """Control flow on tensor values: torch.export (and so ONNX) cannot express it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if float(y.sum()) > 0:
            return y.mean((2, 3))
        return -y.mean((2, 3))


def test_model_onnx_cannot_express_gets_one_line_error():
    config = mimir.DataConfig(in_chans=1, input_size=28, mean=(0.5,), std=(0.5,), num_classes=4)
    with pytest.raises(MimirError, match="cannot be exported to ONNX") as err:
        onnx_bytes(_DataDependent(), config)
    assert "\n" not in str(err.value)


def test_failed_export_writes_nothing(tmp_path, capsys):
    assert main(["export", "resnet20", "--out", str(tmp_path / "x.tflite")]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_own_model_needs_its_input_size_and_says_its_inputs_were_random(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny_net.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--teacher", "tiny_net:build", "--out", str(out)]) == 2
    assert "input size of 'tiny_net:build' is unknown" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--teacher", "tiny_net:build", "--input-size", "40", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["inputs"].startswith("16 random inputs") and result["batchnorm_left"] == 0
    assert ort_session(out).get_inputs()[0].shape[1:] == [3, 40, 40]
