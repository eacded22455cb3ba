"""Batched views of the few samples, and the teacher-target cache that replaces recomputing the teacher."""

import torch
import torch.nn.functional as F

from mimir.core import FASHION_MNIST
from mimir.data import normalize
from mimir.engine.views import BatchSchedule, CropFlipViews, TargetCache


def _images(n=6, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_every_view_is_a_pad_crop_flip_of_its_image():
    images = _images()
    views = CropFlipViews(images, FASHION_MNIST, torch.device("cpu"))
    assert views.pad == 3 and views.num_views == 7 * 7 * 2
    padded = F.pad(images, (3, 3, 3, 3))
    for v in [0, 1, 2, 13, 50, 97]:
        idx = torch.tensor([4])
        got = views.render(idx, torch.tensor([v]))
        dy, dx = (v // 2) // 7, (v // 2) % 7
        crop = padded[4:5, :, dy:dy + 28, dx:dx + 28]
        if v % 2:
            crop = crop.flip(-1)
        assert torch.equal(got, normalize(crop, FASHION_MNIST)), v


def test_views_are_drawn_from_step_and_seed_alone():
    views = CropFlipViews(_images(), FASHION_MNIST, torch.device("cpu"))
    a, b = views.draw(7, seed=1, count=50), views.draw(7, seed=1, count=50)
    assert torch.equal(a, b)
    assert not torch.equal(a, views.draw(8, seed=1, count=50))
    assert not torch.equal(a, views.draw(7, seed=2, count=50))
    assert int(a.min()) >= 0 and int(a.max()) < views.num_views


def test_batch_schedule_passes_are_permutations():
    schedule = BatchSchedule(10, 4, seed=3)   # 2 batches of 4 per pass, the last 2 images of a pass dropped
    first_pass = torch.cat([schedule.indices(0), schedule.indices(1)])
    assert len(set(first_pass.tolist())) == 8
    assert torch.equal(schedule.indices(1), BatchSchedule(10, 4, seed=3).indices(1))   # no hidden state
    assert not torch.equal(torch.cat([schedule.indices(2), schedule.indices(3)]), first_pass)


def test_cached_targets_equal_the_teacher_recomputed_on_the_same_views(teacher20):
    teacher, config = teacher20
    images = _images(5)
    views = CropFlipViews(images, config, torch.device("cpu"))
    with torch.no_grad():
        cache = TargetCache.build(views, teacher.forward_features)
        idx, v = torch.tensor([0, 3, 3, 4, 1]), torch.tensor([0, 97, 5, 50, 13])
        recomputed = teacher.forward_features(views.render(idx, v))
    looked_up = cache.lookup(idx, v)
    assert cache.table.shape == (5, 98, 64, 7, 7)
    torch.testing.assert_close(looked_up, recomputed, rtol=1e-5, atol=1e-5)
    student = torch.randn_like(recomputed)
    torch.testing.assert_close(F.mse_loss(student, looked_up), F.mse_loss(student, recomputed), rtol=1e-6, atol=0)


def test_cache_is_used_only_when_it_saves_teacher_passes():
    views = CropFlipViews(_images(50), FASHION_MNIST, torch.device("cpu"))
    entries = 50 * 98
    assert TargetCache.worthwhile(views, lookups=2000 * 50, bytes_per_target=64 * 49 * 4, budget_bytes=2 << 30)
    assert not TargetCache.worthwhile(views, lookups=entries - 1, bytes_per_target=4, budget_bytes=2 << 30)
    assert not TargetCache.worthwhile(views, lookups=10 ** 9, bytes_per_target=10 ** 6, budget_bytes=2 << 30)


def test_more_views_per_step_repeat_each_sample_of_the_batch():
    one, two = BatchSchedule(10, 4, seed=3), BatchSchedule(10, 4, seed=3, views=2)
    assert two.size == 8 and two.per_pass == one.per_pass == 2
    for step in range(5):
        assert torch.equal(two.indices(step), one.indices(step).repeat(2))
