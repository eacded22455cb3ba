"""Drawing the few samples: the same N images for every method, given the same seed."""

from __future__ import annotations

import numpy as np
import torch

from mimir.errors import MimirError


def sample_indices(
    num_images: int,
    n: int,
    seed: int,
    labels: torch.Tensor | None = None,
    balanced: bool = False,
) -> torch.Tensor:
    """Indices of ``n`` distinct images out of ``num_images``, determined by ``seed`` alone.

    With ``labels`` and ``balanced=False`` (the MiR / PRACTISE protocol) each image is drawn by
    picking a class uniformly at random, then an unused image of that class, so classes are
    represented unevenly, as in the paper. ``balanced=True`` takes ``n // C`` images of every
    class and gives the remainder to randomly chosen classes. Without labels (a folder of
    unlabeled images) the ``n`` images are drawn uniformly without replacement.
    """
    if n < 1:
        raise MimirError(f"--samples must be at least 1 (got {n})", "pass a positive number of images")
    if n > num_images:
        raise MimirError(
            f"--samples {n} is more than the {num_images} images available",
            f"pass --samples {num_images} or fewer, or add images",
        )
    rng = np.random.default_rng(seed)
    if labels is None:
        return torch.from_numpy(np.sort(rng.choice(num_images, size=n, replace=False)))

    labels_np = labels.cpu().numpy()
    classes = np.unique(labels_np)
    pools = {int(c): rng.permutation(np.flatnonzero(labels_np == c)).tolist() for c in classes}
    chosen: list[int] = []
    if balanced:
        per_class, extra = divmod(n, len(classes))
        quota = {int(c): per_class for c in classes}
        for c in rng.choice(classes, size=extra, replace=False):
            quota[int(c)] += 1
        for c, k in quota.items():
            if k > len(pools[c]):
                raise MimirError(
                    f"class {c} has only {len(pools[c])} images, {k} needed for a balanced set",
                    "lower --samples or drop --balanced",
                )
            chosen += pools[c][:k]
    else:
        live = [int(c) for c in classes]
        while len(chosen) < n:
            c = live[int(rng.integers(len(live)))]
            chosen.append(pools[c].pop())
            if not pools[c]:
                live.remove(c)
    return torch.tensor(sorted(chosen), dtype=torch.long)
