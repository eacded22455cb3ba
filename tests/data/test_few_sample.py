import pytest
import torch

from mimir.data import sample_indices
from mimir.errors import MimirError


def test_same_seed_same_images(fmnist_train):
    a = sample_indices(len(fmnist_train), 500, seed=3, labels=fmnist_train.labels)
    b = sample_indices(len(fmnist_train), 500, seed=3, labels=fmnist_train.labels)
    assert torch.equal(a, b)


def test_different_seeds_differ(fmnist_train):
    a = sample_indices(len(fmnist_train), 500, seed=1, labels=fmnist_train.labels)
    b = sample_indices(len(fmnist_train), 500, seed=2, labels=fmnist_train.labels)
    assert len(set(a.tolist()) & set(b.tolist())) < 50


@pytest.mark.parametrize("balanced", [False, True])
def test_distinct_indices_in_range(fmnist_train, balanced):
    idx = sample_indices(len(fmnist_train), 1000, seed=0, labels=fmnist_train.labels, balanced=balanced)
    assert len(idx) == 1000 and len(set(idx.tolist())) == 1000
    assert idx.min() >= 0 and idx.max() < len(fmnist_train)


def test_balanced_draws_equal_classes(fmnist_train):
    idx = sample_indices(len(fmnist_train), 100, seed=0, labels=fmnist_train.labels, balanced=True)
    counts = torch.bincount(fmnist_train.labels[idx], minlength=10)
    assert counts.tolist() == [10] * 10


def test_protocol_draw_is_class_random_not_balanced(fmnist_train):
    # picking a random class per image makes counts uneven, as in the MiR protocol
    idx = sample_indices(len(fmnist_train), 100, seed=0, labels=fmnist_train.labels)
    counts = torch.bincount(fmnist_train.labels[idx], minlength=10)
    assert counts.sum() == 100 and counts.max() > counts.min()


def test_unlabeled_draw_is_deterministic():
    a = sample_indices(37, 10, seed=5)
    assert torch.equal(a, sample_indices(37, 10, seed=5))
    assert len(set(a.tolist())) == 10


@pytest.mark.parametrize("n", [0, -3, 38])
def test_impossible_counts(n):
    with pytest.raises(MimirError, match="--samples"):
        sample_indices(37, n, seed=0)
