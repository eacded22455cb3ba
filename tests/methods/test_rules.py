"""MiR's own rules, pinned for every method: the teacher is never changed."""

import pytest
import torch

from mimir import api
from mimir.methods import get_method, list_methods


@pytest.mark.parametrize("method", list_methods())
def test_teacher_weights_and_batchnorm_buffers_are_unchanged(teacher20, fmnist_train, method):
    """Checked on ``result.teacher``, the teacher the methods were given (``compress`` works on a
    copy of a module passed to it, so the caller's own module says nothing about them)."""
    teacher, config = teacher20
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    few = fmnist_train.subset(torch.arange(0, 240, 10))
    m = get_method(method)
    prune = "blocks:auto:1" if m.selects_blocks else "channels:0.5"
    result = api.compress(teacher, data=few, samples=24, prune=prune, method=method, iterations=3,
                          data_config=config, eval_data=None, progress=False, options=dict(m.quick_options))
    used = result.teacher
    assert used is not teacher   # the copy the run worked on
    after = used.state_dict()
    assert before.keys() == after.keys()
    for k in before:   # running means and variances included: the teacher stays in eval mode
        assert torch.equal(before[k], after[k].cpu()), k
    assert not any(module.training for module in used.modules())


def test_the_rule_can_fail(teacher20, fmnist_train, monkeypatch):
    """A method that trains the teacher's BatchNorm statistics is caught by the check above."""
    from mimir.methods.none import NoTraining

    def leaky(self, inp):
        inp.teacher.train()
        with torch.no_grad():
            inp.teacher(torch.randn(4, 1, 28, 28, device=next(inp.teacher.parameters()).device))
        return inp.student.eval()

    monkeypatch.setattr(NoTraining, "run", leaky)
    teacher, config = teacher20
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    result = api.compress(teacher, data=fmnist_train.subset(torch.arange(24)), samples=24, method="none",
                          iterations=1, data_config=config, eval_data=None, progress=False)
    after = result.teacher.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before)


@pytest.mark.parametrize("method", ["cd", "mir-plus"])
def test_a_run_never_reseeds_torchs_global_generator(teacher20, fmnist_train, method):
    """Methods draw from their own generators: the caller's global random stream goes on where the
    caller's seed put it (a reseeding run would give both draws below the same value)."""
    teacher, config = teacher20
    m = get_method(method)
    draws = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        api.compress(teacher, data=fmnist_train.subset(torch.arange(16)), samples=16, method=method, iterations=2,
                     data_config=config, eval_data=None, progress=False, options=dict(m.quick_options))
        draws.append(torch.rand(4))
    assert not torch.equal(draws[0], draws[1])
