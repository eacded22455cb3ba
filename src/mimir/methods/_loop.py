"""The one training loop every iterative method shares (and teacher training reuses).

Iteration-based, as in the published MiR protocol: ``iterations`` SGD steps on mini-batches drawn
from the few samples (reshuffled every pass, freshly augmented every time), learning rate x
``gamma`` at each milestone (fractions of the run), or cosine decay. A tqdm bar shows the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from mimir.data.transforms import Augment, DataConfig, center_crop, normalize


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the defaults are the published MiR protocol (methods.md)."""

    iterations: int = 2000
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.4, 0.8)
    gamma: float = 0.1
    schedule: str = "step"  # "step" (milestones) or "cosine"
    nesterov: bool = False
    augment: bool = True
    extra: dict = field(default_factory=dict)

    def with_(self, **changes) -> "TrainConfig":
        return replace(self, **changes)


def batch_stream(tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless mini-batches: each pass is a fresh permutation; batch = min(batch_size, N)."""
    n = tensors[0].shape[0]
    size = min(batch_size, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - size + 1, size):
            idx = order[start:start + size]
            yield tuple(t[idx] for t in tensors)


def prepare(images: torch.Tensor, config: DataConfig, augment: Augment | None) -> torch.Tensor:
    """uint8 batch -> augmented (or centre-cropped) normalised float batch."""
    images = augment(images) if augment is not None else center_crop(images, config.input_size)
    return normalize(images, config)


def _lr_factor(cfg: TrainConfig, it: int) -> float:
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * it / cfg.iterations))
    return cfg.gamma ** sum(it >= round(m * cfg.iterations) for m in cfg.milestones)


def run_loop(
    params: Iterable[nn.Parameter],
    loss_fn: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    batches: Iterator[tuple[torch.Tensor, ...]],
    cfg: TrainConfig,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """Minimise ``loss_fn(batch)`` for ``cfg.iterations`` SGD steps; returns the loss of each step."""
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: _lr_factor(cfg, it))
    losses: list[float] = []
    bar = tqdm(range(cfg.iterations), desc=desc, disable=not progress, dynamic_ncols=True, leave=False)
    for it in bar:
        loss = loss_fn(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if it % 10 == 0 or it == cfg.iterations - 1:
            bar.set_postfix(loss=f"{losses[-1]:.4g}", lr=f"{scheduler.get_last_lr()[0]:.2g}")
    bar.close()
    return losses
