"""The bundled teachers are real trained networks (measured here, not read from their metadata)."""

import pytest
import torch

from mimir.evaluate import accuracy
from mimir.export import load_model
from mimir.teachers import bundled_teacher_path, bundled_teachers


def test_both_teachers_are_bundled():
    assert {"resnet20", "resnet56"} <= set(bundled_teachers())


@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_bundled_teacher_is_accurate(name, test_subset):
    path = bundled_teacher_path(name)
    payload = torch.load(path, weights_only=True)              # no pickled code in shipped files
    model, config, info = load_model(path)
    measured = accuracy(model, test_subset, config)
    assert measured > 90.0                                     # 2,000 test images; full set: info["test_accuracy"]
    assert info["test_accuracy"] >= 92.0 and payload["model"] == name
