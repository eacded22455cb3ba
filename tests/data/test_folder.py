import numpy as np
import pytest
from PIL import Image

from mimir.data import load_image_folder, load_labeled_folder
from mimir.errors import MimirError


def _write(path, mode, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    channels = {"L": None, "RGB": 3, "RGBA": 4}[mode] if mode != "P" else None
    shape = (size[1], size[0]) if channels is None else (size[1], size[0], channels)
    img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode="L" if mode == "P" else mode)
    if mode == "P":
        img = img.convert("P")
    img.save(path)


@pytest.fixture()
def mixed_folder(tmp_path):
    _write(tmp_path / "a.png", "RGBA", (40, 30))
    _write(tmp_path / "sub" / "b.jpg", "RGB", (28, 28))
    _write(tmp_path / "sub" / "deeper" / "c.webp", "L", (100, 60))
    _write(tmp_path / "d.bmp", "P", (10, 10))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("in_chans,size", [(1, 28), (3, 32), (3, 224)])
def test_any_mode_and_size_is_converted(mixed_folder, in_chans, size):
    data = load_image_folder(mixed_folder, in_chans, size)
    stored = size if size <= 64 else 256
    assert data.images.shape == (4, in_chans, stored, stored)
    assert not hasattr(data, "labels")


def test_corrupt_files_are_skipped_with_a_count(mixed_folder):
    (mixed_folder / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        data = load_image_folder(mixed_folder, 1, 28)
    assert len(data) == 4


def test_missing_folder(tmp_path):
    with pytest.raises(MimirError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 1, 28)


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(MimirError, match="contains no images"):
        load_image_folder(tmp_path, 1, 28)


def test_no_readable_image(tmp_path):
    (tmp_path / "a.png").write_bytes(b"garbage")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(MimirError, match="none of the 2 image files"):
        load_image_folder(tmp_path, 1, 28)


def test_labeled_folder_uses_subfolder_names(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(3):
            _write(tmp_path / cls / f"{i}.png", "RGB", (20, 20))
    data = load_labeled_folder(tmp_path, 3, 32)
    assert data.classes == ("cat", "dog")
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_class_subfolders_give_labels_flat_folders_do_not(tmp_path):
    from mimir.data import load_folder

    for cls in ("a", "b"):
        for i in range(2):
            _write(tmp_path / "classes" / cls / f"{i}.png", "RGB", (12, 12))
        _write(tmp_path / "flat" / f"{cls}.png", "RGB", (12, 12))
    assert load_folder(tmp_path / "classes", 3, 16).labels.tolist() == [0, 0, 1, 1]
    assert not hasattr(load_folder(tmp_path / "flat", 3, 16), "labels")
