"""Where the images of a run come from: the names a recipe gives (``fashion-mnist``, a folder,
``synthetic:N``) or image sets passed to the Python API, turned into the few samples, the extra
unlabeled images and the labelled evaluation set."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mimir.core import DataConfig
from mimir.core.references import refuse_in_memory
from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.fashion_mnist import load_fashion_mnist
from mimir.data.few_sample import sample_indices
from mimir.data.folder import LabeledImageFiles, index_folder, load_image_folder, sample_folder
from mimir.data.synthetic import parse_synthetic, synthetic_images
from mimir.errors import MimirError

FASHION = "fashion-mnist"


def _check_fashion_fits(config: DataConfig) -> None:
    if (config.in_chans, config.input_size, config.num_classes) != (1, 28, 10):
        raise MimirError("Fashion-MNIST (1 channel, 28 px, 10 classes) does not fit this teacher "
                         f"({config.in_chans} channels, {config.input_size} px, {config.num_classes} classes)",
                         "pass --data / --eval-data folders with images for this teacher")


def load_samples(data: str | Path | UnlabeledImages | LabeledImages, samples: int, seed: int, config: DataConfig,
                 balanced: bool = False, teacher: nn.Module | None = None,
                 progress: bool = True) -> LabeledImages | UnlabeledImages:
    """The few samples: ``samples`` images drawn from ``data`` with ``seed``.

    Labels are kept when the source has them (Fashion-MNIST, or a folder whose images all sit in
    class subfolders): they drive the paper's random-class-then-image draw, and the caller strips
    them before a label-free method sees the images. A folder is drawn from by file name and only
    the chosen files are decoded, so an ImageNet training folder costs a directory listing.
    ``synthetic:N`` synthesises N images from ``teacher`` (seeded by ``seed``) and draws from them."""
    refuse_in_memory(data, "data", "teacher, data=your_images")
    synthetic = parse_synthetic(data)
    if isinstance(data, (LabeledImages, UnlabeledImages)):
        pool = data
    elif synthetic is not None:
        if samples > synthetic:
            raise MimirError(f"--samples {samples} is more than the {synthetic} images of --data {data}",
                             f"pass --samples {synthetic} or fewer, or synthesise more")
        _check_balanced(balanced, None, data)
        pool = synthetic_images(teacher, config, synthetic, seed, progress=progress)
    elif str(data) == FASHION:
        _check_fashion_fits(config)
        pool = load_fashion_mnist("train")
    else:
        index = index_folder(data)
        _check_balanced(balanced, index.labels, data)
        return sample_folder(index, samples, seed, config.in_chans, config.input_size, balanced=balanced,
                             interpolation=config.interpolation, crop_pct=config.crop_pct)
    labels = pool.labels if isinstance(pool, LabeledImages) else None
    _check_balanced(balanced, labels, data)
    idx = sample_indices(len(pool), samples, seed, labels=labels, balanced=balanced)
    return pool.subset(idx) if isinstance(pool, LabeledImages) else UnlabeledImages(pool.images[idx], pool.source)


def load_extra_data(extra: str | Path, config: DataConfig, teacher: nn.Module | None = None, seed: int = 0,
                    progress: bool = True) -> UnlabeledImages:
    """``--extra-data``, never with labels: every readable image under a folder (e.g. out-of-domain
    images) at the teacher's input settings, or ``synthetic:N`` images synthesised from ``teacher``."""
    count = parse_synthetic(extra)
    if count is not None:
        return synthetic_images(teacher, config, count, seed, progress=progress)
    return load_image_folder(extra, config.in_chans, config.input_size, config.interpolation, config.crop_pct,
                             flag="--extra-data")


def _check_balanced(balanced: bool, labels: torch.Tensor | None, data: object) -> None:
    if balanced and labels is None:
        raise MimirError(f"--balanced needs class labels to balance, and '{data}' has none", "drop --balanced")


def load_eval_data(eval_data: str | Path | LabeledImages | LabeledImageFiles | None, config: DataConfig,
                   flag: str = "--eval-data") -> LabeledImages | LabeledImageFiles | None:
    """Fashion-MNIST's test set in memory, or an ImageNet-style folder read lazily at evaluation."""
    if eval_data is None or isinstance(eval_data, (LabeledImages, LabeledImageFiles)):
        return eval_data
    if str(eval_data) == FASHION:
        _check_fashion_fits(config)
        return load_fashion_mnist("test")
    return LabeledImageFiles(eval_data, config.in_chans, config.input_size, flag=flag,
                             interpolation=config.interpolation, crop_pct=config.crop_pct)
