"""What the loop trains on: seeded batches of the few samples, augmented as whole batches, and the
teacher's targets of every view computed once when the views are finite.

Every random choice of step ``s`` comes from a generator seeded by ``(seed, s)`` (or ``(seed, pass)``
for the sample order), so a run resumed at step ``s`` sees exactly the batches an uninterrupted run
sees, and every process of a data-parallel run draws the same global batch and takes its share.

Small inputs (<= 64 px) are augmented by pad-and-crop + horizontal flip: with padding ``p`` an image
has exactly ``(2p + 1)^2 * 2`` views, so a view is an integer, a whole batch is cut out of the padded
images with one indexing operation on the device, and the teacher's target of every (image, view)
can be computed once and looked up (:class:`TargetCache`) - the same numbers, not an approximation.
Large inputs get RandomResizedCrop + flip per image, which :class:`LargeViewStream` runs in
DataLoader workers that prefetch while the model computes. An augmentation *policy* (RandAugment,
TrivialAugment) after the crop and flip makes the views of small images an unbounded set too; each
image's draw is seeded by ``(seed, step, position in the global batch)``.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mimir.core import DataConfig
from mimir.data.transforms import SMALL_INPUT, Augment, center_crop, normalize, policy_transform

_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, purpose, step...), different for every combination."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) + 0x632BE59BD9B4E019 + (h << 6) + (h >> 2))) & _MASK
        h = (h * 0x5851F42D4C957F2D + 0x14057B7EF767814F) & _MASK
    return h


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(mix_seed(*parts))


class BatchSchedule:
    """The sample indices of every step: each pass over the N samples is a fresh permutation
    (seeded by the pass number), cut into batches of ``min(batch_size, N)``; a last partial batch
    is dropped, so every step has the same size. ``views`` > 1 puts each sample of a batch that
    many times into it (each copy gets its own view): more views per step, a batch of
    ``views * min(batch_size, N)``."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, views: int = 1) -> None:
        self.n, self.seed, self.views = num_samples, seed, views
        self.samples = min(batch_size, num_samples)
        self.size = self.samples * views
        self.per_pass = num_samples // self.samples
        self._pass, self._order = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        p, k = divmod(step, self.per_pass)
        if p != self._pass:
            self._pass, self._order = p, torch.randperm(self.n, generator=_generator(self.seed, 1, p))
        batch = self._order[k * self.samples:(k + 1) * self.samples]
        return batch.repeat(self.views) if self.views > 1 else batch


class CropFlipViews:
    """Pad-and-crop + flip of small images as a finite set of views, rendered a batch at a time
    (with ``augment=False``: the single centre-cropped evaluation view, for images of any size).

    View ``v`` of an image: flip = ``v % 2``, crop offset ``(v // 2) // (2p+1)`` rows and
    ``(v // 2) % (2p+1)`` columns into the zero-padded image - the same distribution as
    ``RandomCrop(size, padding=p)`` followed by ``RandomHorizontalFlip()``.
    """

    def __init__(self, images: torch.Tensor, config: DataConfig, device: torch.device, augment: bool = True) -> None:
        self.size = config.input_size
        self.pad = max(2, self.size // 8) if augment else 0
        self.offsets = 2 * self.pad + 1
        self.num_views = self.offsets ** 2 * 2 if augment else 1
        self.config = config
        images = center_crop(images, self.size)   # a no-op for small images, the eval view for large ones
        self.padded = F.pad(images, (self.pad,) * 4).to(device)
        self._span = torch.arange(self.size, device=device)
        self._chans = torch.arange(images.shape[1], device=device)

    def __len__(self) -> int:
        return self.padded.shape[0]

    def draw(self, step: int, seed: int, count: int) -> torch.Tensor:
        """The views of the ``count`` images of step ``step`` (uniform, independent per image)."""
        if self.num_views == 1:
            return torch.zeros(count, dtype=torch.long)
        return torch.randint(self.num_views, (count,), generator=_generator(seed, 2, step))

    def render(self, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """Normalised float images ``idx`` seen through ``views``, on the device."""
        return normalize(self.crop(idx, views), self.config)

    def crop(self, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """The uint8 crops of images ``idx`` seen through ``views``, on the device."""
        idx, views = idx.to(self.padded.device), views.to(self.padded.device)
        flip, pos = views % 2, views // 2
        dy, dx = pos // self.offsets, pos % self.offsets
        rows = dy[:, None] + self._span
        cols = torch.where(flip[:, None].bool(), dx[:, None] + self.size - 1 - self._span, dx[:, None] + self._span)
        return self.padded[idx[:, None, None, None], self._chans[None, :, None, None],
                           rows[:, None, :, None], cols[:, None, None, :]]


class PolicyViews:
    """An augmentation policy applied to each uint8 image of a batch, every image seeded by
    ``(seed, step, its position in the global batch)`` - so a resumed or data-parallel run draws
    the same views as a single uninterrupted one."""

    def __init__(self, policy: str) -> None:
        self.transform = policy_transform(policy)

    def __call__(self, batch: torch.Tensor, seed: int, step: int, positions: range) -> torch.Tensor:
        out = torch.empty_like(batch)
        with torch.random.fork_rng(devices=[]):   # the policies draw from the CPU generator alone
            for i, pos in enumerate(positions):
                torch.default_generator.manual_seed(mix_seed(seed, 4, step, pos))
                out[i] = self.transform(batch[i])
        return out


class TargetCache:
    """The teacher's target of every (sample, view), computed once in a fixed order and batch
    layout (so a resumed run recomputes exactly the same numbers) and looked up per batch. A target
    may be a tensor or a tuple of tensors (one table each)."""

    def __init__(self, table: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
        self.table = table

    @staticmethod
    def worthwhile(views: CropFlipViews, lookups: int, bytes_per_target: int, budget_bytes: int) -> bool:
        """Cache when computing every view once costs fewer teacher passes than the run would
        make (``lookups``) and the table fits in ``budget_bytes``."""
        entries = len(views) * views.num_views
        return entries <= lookups and entries * bytes_per_target <= budget_bytes

    @classmethod
    @torch.no_grad()
    def build(cls, views: CropFlipViews, target: Callable[[torch.Tensor], torch.Tensor],
              chunk: int = 512) -> "TargetCache":
        per = max(1, chunk // views.num_views)       # samples per teacher pass, all their views together
        all_views = torch.arange(views.num_views)
        parts = []
        for start in range(0, len(views), per):
            idx = torch.arange(start, min(start + per, len(views)))
            x = views.render(idx.repeat_interleave(views.num_views), all_views.repeat(len(idx)))
            out = target(x)
            outs = out if isinstance(out, tuple) else (out,)
            parts.append([o.reshape(len(idx), views.num_views, *o.shape[1:]) for o in outs])
        tables = tuple(torch.cat(column) for column in zip(*parts))
        return cls(tables if isinstance(out, tuple) else tables[0])

    def lookup(self, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if isinstance(self.table, tuple):
            return tuple(self._lookup(t, idx, views) for t in self.table)
        return self._lookup(self.table, idx, views)

    @staticmethod
    def _lookup(table: torch.Tensor, idx: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        return table[idx.to(table.device), views.to(table.device)]


class LargeViewStream(IterableDataset):
    """RandomResizedCrop + flip per image for large inputs, one global batch per step, made in
    DataLoader workers (worker ``w`` makes steps ``w, w + W, ...``; the loader yields them in order).
    Each step seeds torch's generator from ``(seed, step)``, so the views do not depend on the
    number of workers or on where a run was resumed."""

    def __init__(self, images: torch.Tensor, config: DataConfig, schedule: BatchSchedule, seed: int,
                 start: int, stop: int, policy: str = "none") -> None:
        self.images, self.config, self.schedule, self.seed = images, config, schedule, seed
        self.start, self.stop = start, stop
        self.augment = Augment(config.input_size, policy)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        first, stride = (self.start, 1) if info is None else (self.start + info.id, info.num_workers)
        for step in range(first, self.stop, stride):
            idx = self.schedule.indices(step)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(mix_seed(self.seed, 3, step))
                batch = self.augment(self.images[idx])
            yield idx, batch


def large_view_loader(stream: LargeViewStream, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None, persistent_workers=False)


def is_small(config: DataConfig) -> bool:
    return config.input_size <= SMALL_INPUT
