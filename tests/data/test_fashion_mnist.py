import gzip

import pytest

from mimir.data.fashion_mnist import read_idx
from mimir.errors import MimirError


def test_splits_have_the_published_sizes(fmnist_train, fmnist_test):
    assert fmnist_train.images.shape == (60000, 1, 28, 28)
    assert fmnist_test.images.shape == (10000, 1, 28, 28)
    assert fmnist_train.labels.unique().tolist() == list(range(10))


def test_truncated_idx_file_is_refused(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(10))
    with pytest.raises(MimirError, match="truncated"):
        read_idx(path)
