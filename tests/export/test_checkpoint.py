import os
import stat

import pytest
import torch

from mimir.core import FASHION_MNIST, atomic_save
from mimir.errors import MimirError
from mimir.export import load_model, read_checkpoint, save_model
from mimir.export.checkpoint import load_state
from mimir.models import create_model


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full, say")


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "model.pt"
    with pytest.raises(RuntimeError):
        atomic_save({"x": _Unpicklable()}, target)
    assert list(tmp_path.iterdir()) == []


def test_written_file_has_normal_permissions(tmp_path):
    path = atomic_save({"a": 1}, tmp_path / "m.pt")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH


def test_teacher_file_loads_weights_only(tmp_path):
    model = create_model("resnet20", num_classes=10, in_chans=1)
    path = save_model(tmp_path / "t.pt", model, FASHION_MNIST, info={"torch": torch.__version__})
    payload = torch.load(path, weights_only=True)
    assert payload["info"]["torch"] == str(torch.__version__)
    loaded, config, info = load_model(path)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_weights_of_another_architecture_are_refused():
    state = create_model("resnet20", num_classes=10, in_chans=1).state_dict()
    with pytest.raises(MimirError, match="does not match the architecture"):
        load_state(create_model("resnet56", num_classes=10, in_chans=1), state, "weights")


def test_non_checkpoint_is_refused(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(MimirError, match="neither a PyTorch"):
        read_checkpoint(tmp_path / "x.pt")


def test_failed_write_over_an_existing_file_keeps_the_old_one(tmp_path):
    target = tmp_path / "run.ckpt"
    atomic_save({"step": 10}, target)
    with pytest.raises(RuntimeError):   # e.g. killed or out of space while writing the next checkpoint
        atomic_save({"step": 20, "x": _Unpicklable()}, target)
    assert torch.load(target, weights_only=True) == {"step": 10}
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
