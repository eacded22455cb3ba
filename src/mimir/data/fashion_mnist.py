"""Fashion-MNIST from the original IDX files.

Looked for, in order: ``$MIMIR_FASHION_MNIST``, Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``), then mimir's cache (``$MIMIR_CACHE/fashion-mnist``, default
``~/.cache/mimir``), where torchvision's downloader puts the files when none of these has them.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import FashionMNIST

from mimir.core import Memo, cache_root
from mimir.data.datasets import LabeledImages
from mimir.errors import MimirError, first_line

CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: the splits read in this process (two at most: train and test)
SPLITS: Memo[LabeledImages] = Memo(len(_FILES))


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise MimirError(f"{path} is not an unsigned-byte IDX file", "reinstall the data set")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise MimirError(f"{path} is truncated ({len(data) - offset} of {expected} bytes)",
                         "reinstall the data set")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, "FashionMNIST/raw/" + stem, "FashionMNIST/raw/" + stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("MIMIR_FASHION_MNIST"):
        dirs.append(Path(os.environ["MIMIR_FASHION_MNIST"]))
    dirs += [DEBIAN_DIR, cache_root() / "fashion-mnist"]
    return dirs


def locate(split: str, download: bool = True) -> tuple[Path, Path]:
    """Return the (images, labels) IDX paths of ``split``, downloading with torchvision if needed."""
    image_stem, label_stem = _FILES[split]
    for directory in _candidate_dirs():
        images, labels = _find(directory, image_stem), _find(directory, label_stem)
        if images and labels:
            return images, labels
    failure = "not downloaded (downloading was not asked for)"
    if download:
        target = cache_root() / "fashion-mnist"
        try:
            FashionMNIST(str(target), train=(split == "train"), download=True)
        except Exception as err:  # noqa: BLE001 - the downloader fails in many ways (network, disk, checksum)
            failure = f"torchvision's download into {target} failed: {first_line(err)}"
        else:
            return locate(split, download=False)
    raise MimirError(
        f"Fashion-MNIST not found ({', '.join(str(d) for d in _candidate_dirs())}) and {failure}",
        "install it with 'apt-get install dataset-fashion-mnist' (Debian), or put the four IDX "
        "files in a folder and set MIMIR_FASHION_MNIST to it",
    )


def load_fashion_mnist(split: str = "train") -> LabeledImages:
    """The whole ``train`` (60,000) or ``test`` (10,000) split as 1 x 28 x 28 uint8 images."""
    if split not in _FILES:
        raise MimirError(f"unknown Fashion-MNIST split '{split}'", "use 'train' or 'test'")
    def read() -> LabeledImages:
        image_path, label_path = locate(split)
        images = torch.from_numpy(read_idx(image_path).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
        return LabeledImages(images, labels, CLASSES, source=f"fashion-mnist:{split}")

    return SPLITS.get(split, read)
