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


def test_a_failed_download_says_where_it_looked_and_why_it_failed(tmp_path, monkeypatch):
    """Not found anywhere and the downloader fails: one error naming the folders searched, the
    cache folder ($MIMIR_CACHE) the download went to and the downloader's own reason."""
    from mimir.data import fashion_mnist

    def offline(root, train, download):
        raise OSError("network is unreachable")

    monkeypatch.delenv("MIMIR_FASHION_MNIST", raising=False)
    monkeypatch.setenv("MIMIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(fashion_mnist, "FashionMNIST", offline)
    with pytest.raises(MimirError) as err:
        fashion_mnist.locate("test")
    message = str(err.value)
    assert f"download into {tmp_path / 'cache' / 'fashion-mnist'} failed: network is unreachable" in message
    assert str(tmp_path / "nowhere") in message and "\n" not in message
