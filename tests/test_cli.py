"""The CLI's main paths and every bad input: one-line error, exit code 2, no output file."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mimir.cli import main
from mimir.errors import MimirError
from mimir.methods import get_method, list_methods
from mimir.models import create_model


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.slow
def test_compress_json_then_evaluate(tmp_path, capsys):
    out = tmp_path / "s.pt"
    assert main(["compress", "--no-latency", "--samples", "50", "--iterations", "20", "--seed", "1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == 50 and summary["iterations"] == 20 and summary["method"] == "mir"
    for row in ("teacher", "pruned", "compressed"):
        assert set(summary[row]) >= {"accuracy", "params", "macs"}
    assert summary["compressed"]["macs"] < 0.6 * summary["teacher"]["macs"]
    payload = torch.load(out, weights_only=True)   # no pickled modules
    assert payload["format"] == "mimir/1" and payload["model"] == "resnet20"
    assert main(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["accuracy"] == pytest.approx(summary["compressed"]["accuracy"])
    assert ev["macs"] == summary["compressed"]["macs"]


@pytest.mark.slow
def test_compress_prints_a_table_with_latency(capsys):
    assert main(["compress", "--samples", "20", "--iterations", "5", "--eval-data", "none"]) == 0
    captured = capsys.readouterr()
    for word in ("teacher", "pruned (before training)", "compressed (mir)", "MACs", "5 iterations", "latency",
                 "ONNX Runtime, batch 1, 1 thread"):
        assert word in captured.out
    rows = [line for line in captured.out.splitlines() if line.startswith(("teacher ", "compressed"))]
    assert len(rows) == 2 and all(" ms " in row for row in rows)
    assert "CUDA_HOME" not in captured.err and "warning" not in captured.err.lower()


@pytest.mark.slow
def test_compress_json_has_latency_unless_skipped(capsys):
    assert main(["compress", "--samples", "8", "--iterations", "2", "--eval-data", "none", "--json"]) == 0
    lat = json.loads(capsys.readouterr().out)["latency"]
    assert lat["runtime"] == "onnxruntime" and lat["batch"] == 1 and 0 < lat["latency_ratio"] < 2
    assert main(["compress", "--samples", "8", "--iterations", "2", "--eval-data", "none", "--json",
                 "--no-latency"]) == 0
    assert "latency" not in json.loads(capsys.readouterr().out)


def test_compress_from_an_unlabeled_folder(tmp_path, capsys, fmnist_train):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(fmnist_train.images[i, 0].numpy()).convert("RGB").save(folder / f"{i}.jpg")
    assert main(["compress", "--no-latency", "--data", str(folder), "--samples", "10", "--iterations", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["compressed"]["accuracy"] is None and summary["samples"] == 10


def _bad_folder(tmp_path, kind):
    folder = tmp_path / kind
    if kind == "missing":
        return folder
    folder.mkdir()
    if kind == "unreadable":
        (folder / "x.png").write_bytes(b"nope")
    return folder


def _mismatched_weights(tmp_path):
    path = tmp_path / "r20.pth"
    torch.save(create_model("resnet20", num_classes=10, in_chans=1).state_dict(), path)
    return path


BAD = {
    "missing folder": (lambda t: ["--data", str(_bad_folder(t, "missing"))], "does not exist"),
    "empty folder": (lambda t: ["--data", str(_bad_folder(t, "empty"))], "contains no images"),
    "unreadable folder": (lambda t: ["--data", str(_bad_folder(t, "unreadable"))], "could be read"),
    "too many samples": (lambda t: ["--samples", "60001"], "more than the 60000 images"),
    "zero samples": (lambda t: ["--samples", "0"], "at least 1"),
    "ratio too big": (lambda t: ["--prune", "channels:1.2"], "outside (0, 1)"),
    "ratio zero": (lambda t: ["--prune", "channels:0"], "outside (0, 1)"),
    "unknown block": (lambda t: ["--prune", "blocks:layer1.9"], "block 'layer1.9'"),
    "unknown model": (lambda t: ["--teacher", "resnet99"], "unknown model 'resnet99'"),
    "unknown method": (lambda t: ["--method", "magic"], "--method must be one of bp, cd"),
    "mismatched checkpoint": (lambda t: ["--teacher", "resnet56", "--weights", str(_mismatched_weights(t))],
                              "does not match the architecture"),
    "not a checkpoint": (lambda t: ["--teacher", "resnet20", "--weights", str(_garbage(t))], "neither a PyTorch"),
    "missing checkpoint": (lambda t: ["--teacher", str(t / "nope.pt")], "does not exist"),
    "feature layer": (lambda t: ["--feature-layer", "layer9"], "--feature-layer is only for a user's own model"),
    "no bundled teacher": (lambda t: ["--teacher", "vgg16_bn"], "no trained teacher is bundled"),
    "missing out folder": (lambda t: ["--out", str(t / "no" / "where.pt")], "does not exist"),
    "synthetic count": (lambda t: ["--data", "synthetic:none"], "must be a positive integer"),
    "synthetic too few": (lambda t: ["--data", "synthetic:4"], "more than the 4 images"),
    "synthetic with labels": (lambda t: ["--data", "synthetic:64", "--method", "bp"], "needs labels"),
    "extra data missing": (lambda t: ["--extra-data", str(t / "nope")], "does not exist"),
    "extra synthetic count": (lambda t: ["--extra-data", "synthetic:0"], "--extra-data synthetic:0"),
    "extra data with labels": (lambda t: ["--extra-data", str(t), "--method", "bp"], "needs labels"),
    "bad mix": (lambda t: ["--option", "mix=cutout"], "not one of none, mixup"),
    "synthetic twice": (lambda t: ["--data", "synthetic:64", "--extra-data", "synthetic:32"],
                        "use --data synthetic:96 without --extra-data"),
    "bad temperature": (lambda t: ["--option", "temperature=0"], "outside (0, inf)"),
    "bad cd weight": (lambda t: ["--method", "cd", "--option", "mu=2"], "mu=2 for method 'cd' is outside [0, 1]"),
}


def _garbage(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(tmp_path, capsys, case):
    make_args, expected = BAD[case]
    out = tmp_path / "never.pt"
    args = ["compress", "--no-latency", "--iterations", "2", "--samples", "10", "--out", str(out)] + make_args(tmp_path)
    assert main(args) == 2
    assert expected in _error(capsys)
    assert not out.exists()
    assert not list(tmp_path.glob(".never.pt*"))


def test_user_model_feature_layer_that_does_not_exist():
    import torchvision

    from mimir import api
    from mimir.errors import MimirError

    with pytest.raises(MimirError, match="no layer named 'head9'"):
        api.compress(torchvision.models.resnet18(num_classes=10), feature_layer="head9", samples=5)


@pytest.mark.slow
def test_version_prints_mimirs_and_with_verbose_the_libraries(capsys):
    from mimir import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"mimir {__version__}\n"
    assert main(["--version", "-v"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"mimir {__version__}"
    named = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert {"python", "torch", "torchvision", "timm", "torch-pruning", "onnxruntime"} <= set(named)
    assert named["torch"][0].isdigit() and named["onnxruntime"][0].isdigit()
    with pytest.raises(SystemExit) as stop:   # no command and no --version: usage, exit 2
        main([])
    assert stop.value.code == 2 and "a command is required" in capsys.readouterr().err


def test_real_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mimir.cli", "compress", "--samples", "-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "error: --samples must be at least 1 (got -1); pass a valid --samples (in a recipe file: 'samples:')"


USERS_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.trunk = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        return self.out(torch.flatten(self.pool(self.trunk(self.stem(x))), 1))


def build():
    torch.manual_seed(0)
    return Net()
'''


def test_users_own_model_from_the_command_line(tmp_path, monkeypatch, capsys):
    from mimir.export import load_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_net.py").write_text(USERS_MODEL)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "small.pt"
    assert main(["compress", "--no-latency", "--teacher", "my_net:build", "--input-size", "32", "--data", str(folder),
                 "--samples", "8", "--iterations", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["compressed"]["params"] < summary["teacher"]["params"]
    assert str(tmp_path) not in sys.path   # the folder was importable only while the factory was imported
    # the file names the code that rebuilds it: run only when the user says so, never on the file's word
    with pytest.raises(MimirError, match="names but does not contain.*--trust-code"):
        load_model(out)
    assert main(["evaluate", str(out), "--data", str(folder)]) == 2
    assert "--trust-code" in _error(capsys)
    assert main(["compress", "--recipe", str(out), "--iterations", "1"]) == 2
    assert "names code to run" in _error(capsys)
    model, config, _ = load_model(out, trust_code=True)   # rebuilt from the factory recorded in the file
    assert config.input_size == 32 and model.model.stem[0].out_channels == 4
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_users_model_that_cannot_be_imported(capsys):
    assert main(["compress", "--teacher", "no_such_module_xyz:build"]) == 2
    assert "cannot import 'no_such_module_xyz:build'" in _error(capsys)


def test_train_teacher_checks_its_output_folder_before_training(tmp_path, capsys):
    assert main(["train-teacher", "resnet20", "--epochs", "1", "--out", str(tmp_path / "no" / "t.pt")]) == 2
    assert "does not exist" in _error(capsys)


def test_warnings_are_one_line(tmp_path, capsys):
    folder = tmp_path / "val"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / cls / "0.png")
    (folder / "a" / "broken.png").write_bytes(b"not a png")
    assert main(["evaluate", "resnet20", "--data", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped 1 unreadable image file(s)" in err and "UserWarning" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line(capsys):
    assert main(["compress", "--device", "cuda", "--samples", "5", "--iterations", "1"]) == 2
    assert "needs a CUDA GPU, and none is available" in _error(capsys)


@pytest.mark.parametrize("flag,expected", [(["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
                                           (["--precision", "fp8"], "--precision must be one of fp32, bf16, fp16"),
                                           (["--option", "temprature=2", "--method", "kd"],
                                            "unknown option 'temprature' for method 'kd' (known: temperature)")])
def test_bad_runtime_flags_are_one_line(capsys, flag, expected):
    assert main(["compress", "--samples", "5", "--iterations", "1"] + flag) == 2
    assert expected in _error(capsys)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_on_cpu(capsys, precision):
    assert main(["compress", "--no-latency", "--samples", "8", "--iterations", "2", "--device", "cpu", "--precision", precision,
                 "--eval-data", "none", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["device"].endswith(precision) and summary["compressed"]["feature_mse"] < 10


def test_methods_lists_each_option_with_its_choices_or_range(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "mix=none (none|mixup|cutmix|both|salient)" in out and "mix_prob=1.0 in (0, 1]" in out
    assert "mu=0.6 in [0, 1]" in out


@pytest.mark.parametrize("method", list_methods())
def test_compress_prints_the_summary_of_every_method(method, capsys, monkeypatch):
    """The text a user reads after a run, for every method, label-using ones included."""
    from mimir import cli

    m = get_method(method)
    results = []
    real = cli.api.compress
    monkeypatch.setattr(cli.api, "compress", lambda **kw: results.append(real(**kw)) or results[-1])
    argv = ["compress", "--no-latency", "--method", method, "--samples", "16", "--iterations", "2",
            "--eval-data", "none", "--device", "cpu", "--prune", "blocks:auto:1" if m.selects_blocks else "channels:0.5"]
    for key, value in m.quick_options.items():
        argv += ["--option", f"{key}={value}"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"mimir compress: teacher resnet20, method {method}, ")
    table = next(i for i, line in enumerate(out) if line.startswith("model "))
    assert out[table + 2].startswith("teacher ") and out[table + 3].startswith("pruned (before training) ")
    assert out[table + 4].startswith(f"compressed ({method}) ")
    assert out[1:table] == m.summary_lines(results[0].summary)   # a method's own lines (a ranking), first
    assert ("note: method '%s' used the labels of the 16 samples" % method in out) == m.needs_labels
    assert any(line.startswith("trained in ") for line in out)


def test_ctrl_c_leaves_no_checkpoint_in_the_current_folder_unless_asked(tmp_path, monkeypatch):
    """Where compress is told to checkpoint: beside --out, where --checkpoint says, in the current
    folder only with --checkpoint-every; with none of them, nowhere (Ctrl-C just stops)."""
    from mimir import cli

    seen = []
    monkeypatch.setattr(cli.api, "compress", lambda **kw: seen.append(kw["checkpoint"]) or
                        type("R", (), {"summary": {}})())
    monkeypatch.chdir(tmp_path)
    base = ["compress", "--samples", "8", "--iterations", "2"]
    for extra in ([], ["--out", "s.pt"], ["--checkpoint", "c.ckpt"], ["--checkpoint-every", "5"]):
        assert cli.main(base + extra) == 0
    assert seen[0] is None and seen[1] == "s.pt.ckpt" and seen[2] == "c.ckpt"
    assert seen[3].startswith("mimir-") and seen[3].endswith(".ckpt")
    assert list(tmp_path.iterdir()) == []


def test_a_criterion_that_scores_on_data_gets_the_samples_from_the_pruning_stage(capsys):
    """taylor needs the few samples (it would refuse to run without them); compress hands them over."""
    assert main(["compress", "--no-latency", "--importance", "taylor", "--samples", "16", "--iterations", "2",
                 "--eval-data", "none", "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["recipe"]["importance"] == "taylor" and summary["compressed"]["macs"] < summary["teacher"]["macs"]
