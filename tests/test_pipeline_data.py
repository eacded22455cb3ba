"""What a method receives from --extra-data and --data synthetic:N: unlabeled images, never labels."""

import pytest
import torch
from PIL import Image

from mimir import api
from mimir.data import UnlabeledImages
from mimir.methods.mir import MiR


@pytest.fixture()
def received(monkeypatch):
    seen = {}

    def spy(self, inp):
        seen["samples"] = inp.samples
        return inp.student.eval()

    monkeypatch.setattr(MiR, "run", spy)
    return seen


def test_extra_data_is_appended_without_its_labels(tmp_path, fmnist_train, received):
    for i in range(12):   # class subfolders: labels that could be read, and must not be
        folder = tmp_path / f"class{i % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(fmnist_train.images[100 + i, 0].numpy()).save(folder / f"{i}.png")
    plain = api.compress("resnet20", samples=10, seed=3, iterations=1, eval_data=None, progress=False)
    got_plain = received["samples"]
    result = api.compress("resnet20", samples=10, seed=3, iterations=1, eval_data=None, progress=False,
                          extra_data=tmp_path)
    got = received["samples"]
    assert type(got) is UnlabeledImages and not any("label" in k for k in vars(got))
    assert got.images.shape == (22, 1, 28, 28)
    assert torch.equal(got.images[:10], got_plain.images)           # the same seeded draw comes first
    extra = {bytes(im.numpy()) for im in fmnist_train.images[100:112]}
    assert {bytes(im.numpy()) for im in got.images[10:]} == extra
    assert result.recipe.extra_data == str(tmp_path) and plain.recipe.extra_data is None


@pytest.mark.slow   # synthesises images, evaluates on the whole test set
def test_synthetic_data_reaches_the_method_unlabeled(tmp_path, monkeypatch, received):
    import mimir.data.sources as sources
    from mimir.data.synthetic import SynthesisConfig, synthetic_images

    monkeypatch.setenv("MIMIR_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "synthetic_images", lambda *a, **k: synthetic_images(
        *a, **{**k, "settings": SynthesisConfig(iterations=3, batch_size=8)}))
    result = api.compress("resnet20", data="synthetic:12", samples=8, iterations=1, eval_data="fashion-mnist",
                          progress=False)
    got = received["samples"]
    assert type(got) is UnlabeledImages and got.images.shape == (8, 1, 28, 28)
    assert result.summary["data"] == "synthetic:12" and result.summary["compressed"]["accuracy"] is not None


def test_synthetic_extra_data_is_added_to_the_real_samples(tmp_path, monkeypatch, received):
    import mimir.data.sources as sources
    from mimir.data.synthetic import SynthesisConfig, synthetic_images

    monkeypatch.setenv("MIMIR_CACHE", str(tmp_path))
    monkeypatch.setattr(sources, "synthetic_images", lambda *a, **k: synthetic_images(
        *a, **{**k, "settings": SynthesisConfig(iterations=3, batch_size=8)}))
    api.compress("resnet20", samples=10, seed=2, iterations=1, eval_data=None, progress=False,
                 extra_data="synthetic:6")
    got = received["samples"]
    assert type(got) is UnlabeledImages and got.images.shape == (16, 1, 28, 28)
