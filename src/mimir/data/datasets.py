"""Image containers that make "unsupervised methods never see labels" a matter of types.

:class:`UnlabeledImages` has no labels at all: it is what every label-free method receives.
:class:`LabeledImages` adds labels; only methods that declare ``needs_labels`` are handed one.
Images are kept as a uint8 tensor ``N x C x H x W`` (small sets) and normalised on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class UnlabeledImages(Dataset):
    """A set of images and nothing else. ``dataset[i]`` is one ``C x H x W`` uint8 tensor."""

    images: torch.Tensor
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.images.dtype != torch.uint8:
            raise ValueError("images must be a uint8 tensor of shape N x C x H x W")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class LabeledImages(Dataset):
    """Images with their integer class labels. ``dataset[i]`` is ``(image, label)``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.images.dtype != torch.uint8:
            raise ValueError("images must be a uint8 tensor of shape N x C x H x W")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be a 1-D tensor with one label per image")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def subset(self, indices: torch.Tensor) -> "LabeledImages":
        return LabeledImages(self.images[indices], self.labels[indices], self.classes, self.source)

    def without_labels(self) -> UnlabeledImages:
        """The same images with the labels stripped: what a label-free method is given."""
        return UnlabeledImages(self.images, self.source)
