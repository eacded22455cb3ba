"""MiR's own rules, pinned for every method: the teacher is never changed."""

import pytest
import torch

from mimir import api
from mimir.methods import get_method, list_methods


@pytest.mark.parametrize("method", list_methods())
def test_teacher_weights_and_batchnorm_buffers_are_unchanged(teacher20, fmnist_train, method):
    teacher, config = teacher20
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    few = fmnist_train.subset(torch.arange(0, 240, 10))
    prune = "blocks:auto:1" if method == "practise" else "channels:0.5"
    api.compress(teacher, data=few, samples=24, prune=prune, method=method, iterations=3, data_config=config,
                 eval_data=None, progress=False, options={k: v for k, v in {"cd_steps": 3, "practise_iterations": 3}
                                                          .items() if k in get_method(method).options})
    after = teacher.state_dict()
    assert before.keys() == after.keys()
    for k in before:   # running means and variances included: the teacher stays in eval mode
        assert torch.equal(before[k], after[k]), k
