"""Augmentation and normalisation, chosen by input size.

Small inputs (<= 64 px, CIFAR / Fashion-MNIST style): pad-and-crop + horizontal flip.
Large inputs (ImageNet style): RandomResizedCrop + flip for training, centre crop for evaluation
(images are stored at ``stored_size``, 256 for a 224 input, as in Resize 256 / CenterCrop 224).
All functions take and return whole uint8 batches so a training step needs no DataLoader workers.
A stronger *policy* (torchvision's RandAugment or TrivialAugmentWide) can follow the crop and flip.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from mimir.core import DataConfig
from mimir.errors import MimirError

SMALL_INPUT = 64
POLICIES = ("none", "randaugment", "trivialaugment")


def stored_size(input_size: int, crop_pct: float = 0.875) -> int:
    """Side length at which images are kept before cropping to ``input_size`` (``input_size /
    crop_pct``: 256 for 224 at timm's and torchvision's usual 0.875; small inputs are not cropped)."""
    return input_size if input_size <= SMALL_INPUT else round(input_size / crop_pct)


def policy_transform(policy: str) -> v2.Transform | None:
    """torchvision's augmentation policy ``policy`` for one uint8 image (None for "none")."""
    if policy not in POLICIES:
        raise MimirError(f"augmentation policy '{policy}' is not one of {', '.join(POLICIES)}",
                         "use --option augment=randaugment or augment=trivialaugment")
    return {"none": None, "randaugment": v2.RandAugment(), "trivialaugment": v2.TrivialAugmentWide()}[policy]


class Augment:
    """Per-image random augmentation of a uint8 batch (a fresh draw for every image): the crop and
    flip for the input size, then ``policy``."""

    def __init__(self, input_size: int, policy: str = "none") -> None:
        if input_size <= SMALL_INPUT:
            pad = max(2, input_size // 8)
            steps = [v2.RandomCrop(input_size, padding=pad), v2.RandomHorizontalFlip()]
        else:
            steps = [v2.RandomResizedCrop(input_size, antialias=True), v2.RandomHorizontalFlip()]
        extra = policy_transform(policy)
        self.transform = v2.Compose(steps + ([extra] if extra is not None else []))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(img) for img in batch])


def center_crop(batch: torch.Tensor, input_size: int) -> torch.Tensor:
    """The evaluation view: centre crop of stored images to ``input_size``."""
    if batch.shape[-1] == input_size and batch.shape[-2] == input_size:
        return batch
    return v2.functional.center_crop(batch, [input_size, input_size])


def normalize(batch: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """uint8 ``N x C x H x W`` -> float, scaled to [0, 1] then standardised per channel."""
    x = batch.float().div_(255)
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std
