"""Mixed and policy-augmented views: seeded, label-free, and always the same view for teacher and student."""

import pytest
import torch
import torch.nn.functional as F

from mimir.core import FASHION_MNIST
from mimir.engine import Checkpointing, Task, TrainConfig, train
from mimir.engine.mixing import Mixer
from mimir.engine.views import PolicyViews
from mimir.errors import MimirError
from mimir.models.anatomy import body_parameters
from mimir.prune import prune
from tests.helpers import crash_after_first_checkpoint


def _batch(n=16, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _partner_of(x, out):
    """For each mixed image, the index of the image it was mixed with (pixels from it where out != x)."""
    partners = []
    for i in range(len(x)):
        changed = (out[i] != x[i])
        if not changed.any():
            partners.append(None)
            continue
        matches = [j for j in range(len(x)) if j != i and torch.equal(out[i][changed], x[j][changed])]
        partners.append(matches[0] if matches else "blend")
    return partners


def test_mixing_is_seeded_by_seed_and_step():
    x = _batch()
    mixer = Mixer("both", seed=3)
    assert torch.equal(mixer(x, 5), Mixer("both", seed=3)(x, 5))
    assert not torch.equal(mixer(x, 5), mixer(x, 6))
    assert not torch.equal(mixer(x, 5), Mixer("both", seed=4)(x, 5))


def test_mixup_blends_each_image_with_one_partner():
    x = _batch()
    out = Mixer("mixup", seed=1)(x, 0)
    import numpy as np

    from mimir.engine.views import mix_seed

    rng = np.random.default_rng(mix_seed(1, 5, 0))
    partner, lam = rng.permutation(len(x)), rng.beta(1.0, 1.0, len(x))
    expected = torch.stack([lam[i] * x[i] + (1 - lam[i]) * x[partner[i]] for i in range(len(x))]).float()
    assert torch.allclose(out, expected, atol=1e-6)
    assert (out - x).abs().amax((1, 2, 3)).gt(1e-3).sum() >= len(x) // 2   # most images really changed


def test_cutmix_pastes_a_box_of_the_partner_and_keeps_the_rest():
    x = _batch()
    out = Mixer("cutmix", seed=2)(x, 0)
    pasted = 0
    for i in range(len(x)):
        changed = (out[i] != x[i])[0]
        if changed.any():
            rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
            box = torch.zeros_like(changed)
            box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
            assert not (changed & ~box).any()            # only a rectangle changed
            others = [j for j in range(len(x)) if torch.equal(out[i][0][box], x[j][0][box])]
            assert others and others[0] != i              # ... and it is a partner's rectangle
            pasted += 1
    assert pasted >= len(x) // 2


def test_salient_mixing_cuts_where_the_partner_is_salient():
    x = _batch(12)

    def saliency(batch):   # all the energy in the bottom-right cell of a 7 x 7 map
        s = torch.zeros(len(batch), 7, 7)
        s[:, 6, 6] = 1.0
        return s

    out = Mixer("salient", alpha=2.0, seed=0, saliency=saliency)(x, 0)
    changed = (out != x)[:, 0]
    mixed = changed.flatten(1).any(1)
    assert mixed.sum() >= 6
    # every box is centred inside the salient cell (pixels 24..27), so it covers the corner region
    assert changed[mixed][:, 24:, 24:].flatten(1).float().mean(1).min() > 0.5
    assert not changed[mixed][:, :8, :8].any()


def test_mix_prob_leaves_the_other_images_unchanged():
    x = _batch(64)
    out = Mixer("mixup", prob=0.25, seed=0)(x, 0)
    unchanged = (out == x).flatten(1).all(1).float().mean()
    assert 0.55 < unchanged < 0.95


def test_bad_mix_settings_are_refused():
    with pytest.raises(MimirError, match="mix 'cutout'"):
        Mixer("cutout")
    with pytest.raises(MimirError, match="mix_alpha"):
        Mixer("mixup", alpha=0)


def test_policy_views_are_seeded_per_image_position():
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    policy = PolicyViews("trivialaugment")
    a = policy(images, seed=1, step=3, positions=range(8))
    assert torch.equal(a, policy(images, seed=1, step=3, positions=range(8)))
    assert torch.equal(a[4:], policy(images[4:], seed=1, step=3, positions=range(4, 8)))   # a shard: same views
    assert not torch.equal(a, policy(images, seed=1, step=4, positions=range(8)))
    assert a.dtype == torch.uint8


@pytest.mark.parametrize("settings", [{"mix": "cutmix"}, {"policy": "randaugment"},
                                      {"mix": "both", "policy": "trivialaugment"}])
def test_teacher_and_student_see_the_identical_view(teacher20, settings):
    teacher, _ = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    seen = {"student": [], "teacher": []}

    def forward(m, x):
        seen["student"].append(x.clone())
        return m.forward_features(x)

    def target(x):
        seen["teacher"].append(x.clone())
        return teacher.forward_features(x)

    mix = Mixer(settings["mix"], seed=0) if "mix" in settings else None
    task = Task(student, forward=forward, loss=F.mse_loss, target=target, trainable=body_parameters, mix=mix)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    log = train(task, images, None, FASHION_MNIST,
                TrainConfig(iterations=4, batch_size=8, policy=settings.get("policy", "none")), progress=False)
    assert not log.cached_targets                     # unbounded views: nothing to cache
    assert len(seen["student"]) == len(seen["teacher"]) == 4
    for s, t in zip(seen["student"], seen["teacher"]):
        assert torch.equal(s, t)
    plain = _first_plain_batch(images)
    assert not any(torch.equal(s, plain) for s in seen["student"])


def _first_plain_batch(images):   # the unmixed first batch, to show the views really changed
    from mimir.engine.views import BatchSchedule, CropFlipViews

    views = CropFlipViews(images, FASHION_MNIST, torch.device("cpu"))
    schedule = BatchSchedule(len(images), 8, 0)
    return views.render(schedule.indices(0), views.draw(0, 0, 8))


def test_mixed_run_resumes_exactly(teacher20, tmp_path):
    teacher, _ = teacher20
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(iterations=6, batch_size=8, policy="trivialaugment")

    def run(ckpt=None):
        student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
        task = Task(student, forward=lambda m, x: m.forward_features(x), loss=F.mse_loss,
                    target=teacher.forward_features, trainable=body_parameters, mix=Mixer("salient", seed=1,
                    saliency=lambda x: teacher.forward_features(x).pow(2).mean(1)))
        train(task, images, None, FASHION_MNIST, cfg, seed=1, progress=False, checkpoint=ckpt)
        return student

    full = run()
    with crash_after_first_checkpoint():
        run(Checkpointing(tmp_path / "c.ckpt", every=3, tag="x"))
    resumed = run(Checkpointing(tmp_path / "c.ckpt", resume=True, tag="x"))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
