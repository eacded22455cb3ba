"""The bundled teachers are real trained networks: their accuracy is measured here on the whole
Fashion-MNIST test set, and must equal what their files claim."""

import pytest
import torch

from mimir.evaluate import accuracy
from mimir.export import load_model
from mimir.teachers import bundled_teacher_path, bundled_teachers


def test_every_teacher_is_bundled():
    assert {"resnet20", "resnet56", "vit_p7"} <= set(bundled_teachers())


@pytest.mark.slow
@pytest.mark.parametrize("name,floor", [("resnet20", 92.0), ("resnet56", 92.0), ("vit_p7", 88.0)])
def test_bundled_teacher_is_accurate(name, floor, fmnist_test):
    path = bundled_teacher_path(name)
    payload = torch.load(path, weights_only=True)              # no pickled code in shipped files
    model, config, info = load_model(path)
    measured = accuracy(model, fmnist_test, config)            # all 10,000 test images
    assert measured >= floor and payload["model"] == name
    assert measured == pytest.approx(info["test_accuracy"], abs=0.02)   # the file's claim holds
