import numpy as np
import pytest
import torch
from PIL import Image

from mimir.data import load_image_folder, load_labeled_folder
from mimir.errors import MimirError


def _write(path, mode, size, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
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


# ----------------------------------------------------------------------------- large folders: read only what is used
def _class_folder(root, classes=("a", "b", "c"), per_class=10, size=(12, 12)):
    for c, cls in enumerate(classes):
        for i in range(per_class):
            _write(root / cls / f"{i:03d}.png", "RGB", size, seed=100 * c + i)
    return root


def test_sampling_reads_only_the_chosen_files(tmp_path, monkeypatch):
    from mimir.data import folder, index_folder, sample_folder

    _class_folder(tmp_path)
    reads = []
    real = folder.read_image
    monkeypatch.setattr(folder, "read_image", lambda path, *a: reads.append(path) or real(path, *a))
    data = sample_folder(index_folder(tmp_path), 5, seed=3, in_chans=3, input_size=16)
    assert len(data) == 5 and len(reads) == 5
    expected = [("a", "b", "c").index(p.parent.name) for p in reads]
    assert data.labels.tolist() == expected


def test_folder_sampling_is_determined_by_the_seed(tmp_path):
    from mimir.data import index_folder, sample_folder

    index = index_folder(_class_folder(tmp_path))
    first, again = (sample_folder(index, 6, seed=1, in_chans=3, input_size=16) for _ in range(2))
    other = sample_folder(index, 6, seed=2, in_chans=3, input_size=16)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.images, other.images)


def test_unreadable_chosen_files_are_replaced_by_readable_ones(tmp_path):
    from mimir.data import index_folder, sample_folder

    for i in range(6):
        _write(tmp_path / f"good{i}.png", "L", (10, 10))
        (tmp_path / f"bad{i}.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="unreadable"):
        data = sample_folder(index_folder(tmp_path), 6, seed=0, in_chans=1, input_size=16)
    assert len(data) == 6  # exactly the six good files, whatever the first draw picked


def test_too_few_readable_files_for_the_sample_count(tmp_path):
    from mimir.data import index_folder, sample_folder

    _write(tmp_path / "good.png", "L", (10, 10))
    (tmp_path / "bad.png").write_bytes(b"")
    with pytest.raises(MimirError, match="more than the 1 images .*, 1 more could not be read"):
        sample_folder(index_folder(tmp_path), 2, seed=0, in_chans=1, input_size=16)


def test_lazy_evaluation_folder_matches_the_in_memory_one(tmp_path):
    from mimir.core import DataConfig
    from mimir.data import LabeledImageFiles
    from mimir.evaluate import accuracy
    from mimir.models import create_model

    _class_folder(tmp_path, per_class=7, size=(20, 14))
    (tmp_path / "a" / "broken.png").write_bytes(b"garbage")
    config = DataConfig(3, 16, num_classes=3)
    model = create_model("resnet20", num_classes=3, in_chans=3)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        in_memory = accuracy(model, load_labeled_folder(tmp_path, 3, 16), config, batch_size=4)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        lazy = accuracy(model, LabeledImageFiles(tmp_path, 3, 16), config, batch_size=4)
    assert lazy == pytest.approx(in_memory)


def test_an_evaluation_folder_with_no_readable_file_fails_before_training(tmp_path):
    from mimir.data import LabeledImageFiles

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.png").write_bytes(b"")
    with pytest.raises(MimirError, match="none of the 2 image files"):
        LabeledImageFiles(tmp_path, 3, 16)
    with pytest.raises(MimirError, match="--eval-data"):
        LabeledImageFiles(tmp_path / "missing", 3, 16)
