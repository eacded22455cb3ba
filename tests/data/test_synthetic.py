"""Images synthesised from the teacher alone: deterministic, closer to the teacher's BatchNorm
statistics than noise, label-free, cached once."""

import pytest
import torch
from torch import nn

from mimir.data import UnlabeledImages, normalize
from mimir.data.synthetic import (
    SynthesisConfig,
    batchnorm_statistics_loss,
    parse_synthetic,
    synthesize,
    synthetic_images,
)
from mimir.errors import MimirError

FAST = SynthesisConfig(iterations=40, batch_size=8)


@pytest.mark.slow
def test_synthesis_is_deterministic_for_a_seed(teacher20):
    teacher, config = teacher20
    a = synthesize(teacher, config, 10, seed=1, settings=FAST, progress=False)
    b = synthesize(teacher, config, 10, seed=1, settings=FAST, progress=False)
    c = synthesize(teacher, config, 10, seed=2, settings=FAST, progress=False)
    assert isinstance(a, UnlabeledImages) and not hasattr(a, "labels")
    assert a.images.shape == (10, 1, 28, 28) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


@pytest.mark.slow
def test_synthesis_lowers_the_batchnorm_statistics_loss_and_convinces_the_teacher(teacher20):
    teacher, config = teacher20
    teacher.train()   # the caller's modes and trainable flags must come back as they were
    frozen = teacher.fc.weight.requires_grad_(False)
    try:
        images = synthesize(teacher, config, 20, seed=0, settings=SynthesisConfig(iterations=60, batch_size=20),
                            progress=False)
        assert all(m.training for m in teacher.modules())
        assert [p.requires_grad for p in teacher.parameters()] == [p is not frozen for p in teacher.parameters()]
    finally:
        teacher.eval(), frozen.requires_grad_(True)
    x = normalize(images.images, config)
    start = torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))   # where synthesis starts
    before, after = batchnorm_statistics_loss(teacher, start), batchnorm_statistics_loss(teacher, x)
    assert after < 0.5 * before, (before, after)
    with torch.no_grad():
        probs = teacher(x).softmax(1)
    assert probs.max(1).values.mean() > 0.8                  # confidently one class each
    assert len(set(probs.argmax(1).tolist())) == 10          # every class, as targeted (i mod 10)


def test_the_cache_returns_the_same_images_without_synthesising(teacher20, tmp_path, monkeypatch):
    teacher, config = teacher20
    monkeypatch.setenv("MIMIR_CACHE", str(tmp_path))
    first = synthetic_images(teacher, config, 6, seed=0, settings=FAST, progress=False)
    assert len(list((tmp_path / "synthetic").glob("*.pt"))) == 1
    import mimir.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "synthesize", lambda *a, **k: pytest.fail("synthesised again"))
    assert torch.equal(synthetic_images(teacher, config, 6, seed=0, settings=FAST, progress=False).images,
                       first.images)
    with pytest.raises(BaseException, match="synthesised again"):   # another seed is another set
        synthetic_images(teacher, config, 6, seed=1, settings=FAST, progress=False)


def test_a_teacher_without_batchnorm_is_refused_with_the_fix():
    from mimir.core import DataConfig

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    net(torch.zeros(1, 1, 8, 8))
    with pytest.raises(MimirError, match="needs a teacher with BatchNorm"):
        synthesize(net, DataConfig(1, 8, (0.5,), (0.5,), 10), 4, 0, FAST, progress=False)


@pytest.mark.parametrize("spec,expected", [("synthetic:256", 256), ("fashion-mnist", None), ("data/x", None)])
def test_parse_synthetic(spec, expected):
    assert parse_synthetic(spec) == expected


@pytest.mark.parametrize("spec", ["synthetic:", "synthetic:0", "synthetic:ten", "synthetic:-3"])
def test_a_malformed_count_is_a_one_line_error(spec):
    with pytest.raises(MimirError, match="positive integer"):
        parse_synthetic(spec)
