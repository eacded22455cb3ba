"""Top-1 accuracy and feature-map error on a labelled image set."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.folder import LabeledImageFiles, iter_labeled_files
from mimir.data.transforms import DataConfig, center_crop, normalize


def _batches(data: LabeledImages | LabeledImageFiles, batch_size: int):
    if isinstance(data, LabeledImageFiles):
        yield from iter_labeled_files(data, batch_size)
        return
    for start in range(0, len(data), batch_size):
        yield data.images[start:start + batch_size], data.labels[start:start + batch_size]


@torch.no_grad()
def accuracy(model: nn.Module, data: LabeledImages | LabeledImageFiles, config: DataConfig,
             batch_size: int = 500, progress: bool = False, desc: str = "evaluate") -> float:
    """Top-1 accuracy in percent (model put in eval mode, its mode restored afterwards).

    ``data`` is either in memory or a folder read batch by batch (unreadable files are left out
    of the count, with a warning)."""
    was_training = model.training
    model.eval()
    correct = seen = 0
    total = -(-len(data) // batch_size)
    for images, labels in tqdm(_batches(data, batch_size), total=total, desc=desc, disable=not progress,
                               leave=False):
        x = normalize(center_crop(images, config.input_size), config)
        correct += (model(x).argmax(1) == labels).sum().item()
        seen += len(labels)
    model.train(was_training)
    return 100.0 * correct / seen


@torch.no_grad()
def feature_mse(student: nn.Module, teacher: nn.Module, data: UnlabeledImages | LabeledImages,
                config: DataConfig, batch_size: int = 500) -> float:
    """Mean squared error between the two pre-pool feature maps (both in eval mode)."""
    modes = student.training, teacher.training
    student.eval(), teacher.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        x = normalize(center_crop(data.images[start:start + batch_size], config.input_size), config)
        diff = student.forward_features(x) - teacher.forward_features(x)
        total += diff.pow(2).sum().item()
        count += diff.numel()
    student.train(modes[0]), teacher.train(modes[1])
    return total / count
