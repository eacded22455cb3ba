"""Label-free mixing of whole batches on the device: MixUp, CutMix, and CutMix guided by saliency.

A :class:`Mixer` is applied by the loop to each (normalised, augmented) batch *before* teacher and
student see it, so both always see the identical mixed view and the target is the teacher's own
output on it: no label, and no mixed label, exists anywhere. With a teacher that answers for any
view, a few images become an unbounded label-free training set ("a good teacher is patient and
consistent", Beyer et al., CVPR 2022).

Every draw of step ``s`` comes from a generator seeded by ``(seed, step)``, so a resumed run mixes
exactly as an uninterrupted one. Under data parallelism the loop mixes the whole global batch
before splitting it, so N processes train on the views one process would.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mimir.engine.views import mix_seed
from mimir.errors import MimirError

MIXES = ("none", "mixup", "cutmix", "both", "salient")


class Mixer:
    """Mix each image of a batch with a random partner from the same batch.

    ``kind``: ``mixup`` (pixel-wise blend, weight ~ Beta(alpha, alpha)), ``cutmix`` (a box of the
    partner pasted in, area fraction ~ Beta(alpha, alpha)), ``both`` (each image one or the other,
    at random), ``salient`` (CutMix whose box is centred where the partner is salient: a position
    drawn in proportion to ``saliency(x)``, a ``B x h x w`` non-negative map - the teacher's
    pre-pool activation energy - pasted at the same position). ``prob``: the fraction of images
    that are mixed (the others pass unchanged)."""

    def __init__(self, kind: str, alpha: float = 1.0, prob: float = 1.0, seed: int = 0,
                 saliency: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if kind not in MIXES or kind == "none":
            raise MimirError(f"mix '{kind}' is not one of {', '.join(MIXES[1:])}", "use e.g. --option mix=cutmix")
        if alpha <= 0 or not 0 < prob <= 1:
            raise MimirError(f"mix_alpha {alpha} / mix_prob {prob} out of range",
                             "use mix_alpha > 0 and 0 < mix_prob <= 1")
        if kind == "salient" and saliency is None:
            raise ValueError("salient mixing needs a saliency function")
        self.kind, self.alpha, self.prob, self.seed, self.saliency = kind, alpha, prob, seed, saliency

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        b, _, h, w = x.shape
        rng = np.random.default_rng(mix_seed(self.seed, 5, step))
        partner = torch.from_numpy(rng.permutation(b)).to(x.device)
        lam = rng.beta(self.alpha, self.alpha, b)
        mixed = rng.random(b) < self.prob
        use_box = np.full(b, self.kind in ("cutmix", "salient"))
        if self.kind == "both":
            use_box = rng.random(b) < 0.5
        if use_box.all():   # CutMix only: no image is blended
            out = x
        else:
            keep = torch.from_numpy(np.where(mixed, lam, 1.0)).to(x.device, x.dtype).view(-1, 1, 1, 1)
            out = keep * x + (1 - keep) * x[partner]   # MixUp: ``keep`` is the weight of the image itself
        if use_box.any():
            centre = self._centres(x, partner, rng, h, w)
            box = _box_masks(centre, np.where(mixed, lam, 1.0), h, w, x.device)
            boxed = torch.from_numpy(use_box).to(x.device).view(-1, 1, 1, 1)
            out = torch.where(boxed, torch.where(box.unsqueeze(1), x[partner], x), out)
        return out

    def _centres(self, x: torch.Tensor, partner: torch.Tensor, rng: np.random.Generator, h: int,
                 w: int) -> np.ndarray:
        """Box centres (row, column) per image: uniform, or drawn from the partner's saliency."""
        b = x.shape[0]
        if self.kind != "salient":
            return np.stack([rng.integers(h, size=b), rng.integers(w, size=b)], 1)
        with torch.no_grad():
            energy = self.saliency(x)[partner].float().clamp_min(0)
        sh, sw = energy.shape[-2:]
        probs = energy.reshape(b, -1) + 1e-12
        probs = (probs / probs.sum(1, keepdim=True)).cpu().double().numpy()
        cells = np.array([rng.choice(sh * sw, p=p / p.sum()) for p in probs])
        row = (cells // sw + rng.random(b)) * h / sh       # a uniform position inside the chosen cell
        col = (cells % sw + rng.random(b)) * w / sw
        return np.stack([row.astype(int).clip(0, h - 1), col.astype(int).clip(0, w - 1)], 1)


def _box_masks(centre: np.ndarray, lam: np.ndarray, h: int, w: int, device: torch.device) -> torch.Tensor:
    """``B x H x W`` boolean boxes of area fraction about ``1 - lam`` around ``centre``, cut at the
    image border."""
    cut = np.sqrt(1.0 - lam)
    half_h, half_w = np.round(h * cut / 2).astype(int), np.round(w * cut / 2).astype(int)
    y0, y1 = (centre[:, 0] - half_h).clip(0, h), (centre[:, 0] + half_h).clip(0, h)
    x0, x1 = (centre[:, 1] - half_w).clip(0, w), (centre[:, 1] + half_w).clip(0, w)
    t = lambda a: torch.from_numpy(a).to(device).view(-1, 1, 1)  # noqa: E731
    rows = torch.arange(h, device=device).view(1, -1, 1)
    cols = torch.arange(w, device=device).view(1, 1, -1)
    return (rows >= t(y0)) & (rows < t(y1)) & (cols >= t(x0)) & (cols < t(x1))


def pre_pool_energy(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The saliency of salient mixing: mean square activation of ``model``'s pre-pool map over
    channels (``B x h x w``), computed without labels."""
    def energy(x: torch.Tensor) -> torch.Tensor:
        f = model.forward_features(x)
        if f.dim() != 4:
            raise MimirError("mix=salient needs a convolutional pre-pool map (B x C x H x W)",
                             "use mix=cutmix or mix=mixup for this model")
        return f.pow(2).mean(1)
    return energy
