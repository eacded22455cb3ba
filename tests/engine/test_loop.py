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
        params = list(params)   # parameter groups
        optimised.extend(p for g in params for p in (g["params"] if isinstance(g, dict) else [g]))
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


def _run(teacher, ckpt=None, iterations=12, **settings):
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    train(_mir_task(teacher, student), _images(), None, FASHION_MNIST,
          TrainConfig(iterations=iterations, batch_size=8, **settings), seed=5, progress=False, checkpoint=ckpt)
    return student.state_dict()


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("settings", [{}, {"ema": 0.9, "optimizer": "adamw"}])
def test_same_seed_same_weights_and_resume_is_exact(teacher20, tmp_path, settings):
    teacher, _ = teacher20
    full = _run(teacher, **settings)
    _assert_identical(full, _run(teacher, **settings))   # bit-identical on the same machine
    # stop after 7 steps (a checkpoint at 7, as Ctrl-C or --checkpoint-every would leave), then resume
    ckpt = Checkpointing(tmp_path / "c.ckpt", every=7, tag="x")
    with pytest.raises(MimirError):   # a resume without a checkpoint is refused
        _run(teacher, Checkpointing(tmp_path / "none.ckpt", resume=True, tag="x"))

    with crash_after_first_checkpoint():
        _run(teacher, ckpt, **settings)
    assert torch.load(ckpt.path, weights_only=True)["step"] == 7
    _assert_identical(full, _run(teacher, Checkpointing(ckpt.path, resume=True, tag="x"), **settings))
    with pytest.raises(MimirError, match="belongs to another run"):
        _run(teacher, Checkpointing(ckpt.path, resume=True, tag="other"))


def test_ema_result_is_the_moving_average_of_the_weights(teacher20, monkeypatch):
    """With ``ema`` the result is the exponential moving average of the weights after each step,
    its decay warmed up as min(decay, (1 + n) / (10 + n)): recomputed here from the weights the
    same run (no ema) passes through, step by step."""
    import mimir.engine.loop as loop

    teacher, _ = teacher20
    trajectory = []
    step = loop._step

    def recording(objective, task, state, *args):
        step(objective, task, state, *args)
        trajectory.append({k: v.detach().clone() for k, v in state.module.state_dict().items()})

    monkeypatch.setattr(loop, "_step", recording)
    plain = _run(teacher, iterations=30)
    monkeypatch.setattr(loop, "_step", step)
    decay = 0.8
    expected = {k: v.clone() for k, v in trajectory[0].items()}
    for n, weights in enumerate(trajectory[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        for k, v in weights.items():
            expected[k] = expected[k] * d + v * (1 - d) if v.is_floating_point() else v.clone()
    averaged = _run(teacher, iterations=30, ema=decay)
    moved = sum(float((plain[k] - averaged[k]).norm()) for k in plain if plain[k].is_floating_point())
    assert moved > 0   # the average is not the last weights
    for k, v in averaged.items():
        assert torch.allclose(v.float(), expected[k].float(), rtol=1e-4, atol=1e-5), k


def test_each_optimiser_has_its_own_default_learning_rate():
    from mimir.engine.loop import DEFAULT_LR

    assert TrainConfig().learning_rate == 0.02 == DEFAULT_LR["sgd"]   # the MiR protocol
    assert TrainConfig(optimizer="adamw").learning_rate == DEFAULT_LR["adamw"] < 0.01
    assert TrainConfig(optimizer="adamw", lr=0.1).learning_rate == 0.1


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


def test_parameter_groups_get_their_own_scaled_learning_rate(teacher20, monkeypatch):
    """``trainable`` may give groups with an ``lr_scale``: each group's rate is the run's times its
    scale, at every step of the schedule; a group at scale 0 does not move."""
    import mimir.engine.loop as loop

    teacher, _ = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    body = body_parameters(student)
    first, rest = body[:3], body[3:]
    before = [p.detach().clone() for p in body]
    seen = []
    step = loop._step

    def recording(objective, task, state, *args):
        seen.append([g["lr"] for g in state.optimizer.param_groups])
        step(objective, task, state, *args)

    monkeypatch.setattr(loop, "_step", recording)
    task = _mir_task(teacher, student)
    task.trainable = lambda m: [{"params": first, "lr_scale": 0.0}, {"params": rest, "lr_scale": 0.5}]
    cfg = TrainConfig(iterations=10, batch_size=8, milestones=(0.5,))
    train(task, _images(), None, FASHION_MNIST, cfg, progress=False)
    assert seen[0] == [0.0, 0.01] and seen[-1] == [0.0, pytest.approx(0.001)]
    assert all(torch.equal(a, p) for a, p in zip(before[:3], first))
    assert not any(torch.equal(a, p) for a, p in zip(before[3:], rest))
