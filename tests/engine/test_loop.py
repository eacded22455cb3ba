"""The shared loop: schedule, frozen parameters, non-finite losses, checkpoints and resume, determinism."""

import math

import pytest
import torch
import torch.nn.functional as F

from mimir.core import FASHION_MNIST
from mimir.engine import Checkpointing, Task, TrainConfig, lr_factor, train
from mimir.errors import MimirError
from mimir.models.anatomy import body_parameters
from mimir.prune import prune
from tests.helpers import crash_after_first_checkpoint


def _images(n=16):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _mir_task(teacher, student, scale=None):
    calls = {"n": 0}

    def loss(out, target):
        calls["n"] += 1
        value = F.mse_loss(out, target)
        return value * scale(calls["n"]) if scale else value

    return Task(student, forward=lambda m, x: m.forward_features(x), loss=loss,
                target=lambda x: teacher.forward_features(x), trainable=body_parameters)


def test_learning_rate_at_each_milestone(teacher20, monkeypatch):
    teacher, _ = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    seen = []
    step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    cfg = TrainConfig(iterations=10, batch_size=8)
    train(_mir_task(teacher, student), _images(), None, FASHION_MNIST, cfg, progress=False)
    assert seen == pytest.approx([0.02] * 4 + [0.002] * 4 + [0.0002] * 2)   # x0.1 at 40 % and 80 %
    assert lr_factor(TrainConfig(), 799) == 1 and lr_factor(TrainConfig(), 800) == pytest.approx(0.1)
    assert lr_factor(TrainConfig(), 1600) == pytest.approx(0.01)
    assert lr_factor(TrainConfig(schedule="cosine"), 1000) == pytest.approx(0.5)


def test_head_gets_no_gradient_and_is_not_optimised(teacher20, monkeypatch):
    teacher, _ = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    optimised = []
    init = torch.optim.SGD.__init__

    def spy(self, params, *a, **k):
        params = list(params)
        optimised.extend(params)
        init(self, params, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "__init__", spy)
    head_before = student.fc.weight.detach().clone()
    train(_mir_task(teacher, student), _images(), None, FASHION_MNIST, TrainConfig(iterations=3, batch_size=8),
          progress=False)
    ids = {id(p) for p in optimised}
    assert id(student.fc.weight) not in ids and id(student.fc.bias) not in ids
    assert ids == {id(p) for p in body_parameters(student)}
    assert student.fc.weight.grad is None and torch.equal(student.fc.weight, head_before)
    assert student.fc.weight.requires_grad   # frozen only for the run


def test_non_finite_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(teacher20, tmp_path):
    teacher, _ = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    ckpt = Checkpointing(tmp_path / "run.ckpt", every=4, tag="t")
    task = _mir_task(teacher, student, scale=lambda n: math.nan if n >= 11 else 1.0)
    cfg = TrainConfig(iterations=40, batch_size=8, log_every=5)
    with pytest.raises(MimirError, match=r"the loss became nan at iteration 11;.*last good checkpoint"):
        train(task, _images(), None, FASHION_MNIST, cfg, progress=False, checkpoint=ckpt)
    state = torch.load(ckpt.path, weights_only=True)
    assert state["step"] == 8 and bool(torch.isfinite(state["losses"]).all())


def _run(teacher, ckpt=None, iterations=12):
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    train(_mir_task(teacher, student), _images(), None, FASHION_MNIST, TrainConfig(iterations=iterations, batch_size=8),
          seed=5, progress=False, checkpoint=ckpt)
    return student.state_dict()


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_weights_and_resume_is_exact(teacher20, tmp_path):
    teacher, _ = teacher20
    full = _run(teacher)
    _assert_identical(full, _run(teacher))   # bit-identical on the same machine
    # stop after 7 steps (a checkpoint at 7, as Ctrl-C or --checkpoint-every would leave), then resume
    ckpt = Checkpointing(tmp_path / "c.ckpt", every=7, tag="x")
    with pytest.raises(MimirError):   # a resume without a checkpoint is refused
        _run(teacher, Checkpointing(tmp_path / "none.ckpt", resume=True, tag="x"))

    with crash_after_first_checkpoint():
        _run(teacher, ckpt)
    assert torch.load(ckpt.path, weights_only=True)["step"] == 7
    _assert_identical(full, _run(teacher, Checkpointing(ckpt.path, resume=True, tag="x")))
    with pytest.raises(MimirError, match="belongs to another run"):
        _run(teacher, Checkpointing(ckpt.path, resume=True, tag="other"))


def test_compile_warm_up_leaves_no_trace(teacher20):
    """--compile builds its graphs in one forward/backward before the timed steps; that pass must
    not change the run (BatchNorm statistics restored, no gradients left)."""
    from mimir.engine.loop import _Objective, _warm_up
    from mimir.engine.runtime import Runtime

    teacher, _ = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    student.train()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    _warm_up(_Objective(student, lambda m, x: m.forward_features(x)), student, torch.randn(4, 1, 28, 28), Runtime())
    _assert_identical(before, student.state_dict())
    assert all(p.grad is None for p in student.parameters())
