"""Shared fixtures: the real Fashion-MNIST splits and the bundled trained ResNet-20 teacher."""

from __future__ import annotations

import pytest
import torch

from mimir.data import LabeledImages, load_fashion_mnist
from mimir.export import load_model
from mimir.teachers import bundled_teacher_path


@pytest.fixture(scope="session")
def fmnist_train() -> LabeledImages:
    return load_fashion_mnist("train")


@pytest.fixture(scope="session")
def fmnist_test() -> LabeledImages:
    return load_fashion_mnist("test")


@pytest.fixture(scope="session")
def test_subset(fmnist_test) -> LabeledImages:
    """2,000 fixed test images: enough to tell 25 % from 85 % with a wide margin, fast to evaluate."""
    return fmnist_test.subset(torch.arange(0, 10000, 5))


@pytest.fixture(scope="session")
def teacher20_path():
    path = bundled_teacher_path("resnet20")
    assert path is not None, "the bundled ResNet-20 teacher is missing"
    return path


@pytest.fixture()
def teacher20(teacher20_path):
    model, config, info = load_model(teacher20_path)
    return model, config
