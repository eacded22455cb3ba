"""The images a quantizer calibrates on: the few samples, unlabeled, through the views MiR trains on.

Every sample is seen once in its evaluation view (the centre crop a deployed model sees) and
``views`` more times through the training augmentation (pad-and-crop + flip for small inputs,
RandomResizedCrop + flip for large ones), drawn from a generator seeded by the run's seed, so
activations are calibrated on the same distribution the student was trained to mimic on. Only
image tensors reach the calibrator: it is given :class:`~mimir.data.UnlabeledImages`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

from mimir.core import DataConfig
from mimir.data import LabeledImages, UnlabeledImages
from mimir.data.transforms import Augment, center_crop, normalize
from mimir.engine.views import mix_seed

#: the calibration methods: ONNX Runtime's names for them
CALIBRATIONS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}


def unlabeled(samples: UnlabeledImages | LabeledImages) -> UnlabeledImages:
    """The images alone: labels, where there are any, never reach calibration."""
    return samples.without_labels() if isinstance(samples, LabeledImages) else samples


def calibration_views(samples: UnlabeledImages, config: DataConfig, seed: int = 0, views: int = 1,
                      limit: int | None = None) -> torch.Tensor:
    """Normalised float images: each sample's evaluation view, then ``views`` augmented views of
    each (seeded by ``seed``), on the CPU; with ``limit``, the first ``limit`` of them (only those
    are rendered: an image's view does not depend on the images after it)."""
    images = samples.images
    left = len(images) * (1 + views) if limit is None else limit
    out = [center_crop(images[:left], config.input_size)]
    left -= len(out[0])
    augment = Augment(config.input_size)
    with torch.random.fork_rng(devices=[]):   # torchvision's transforms draw from the CPU generator
        for v in range(views):
            if left <= 0:
                break
            torch.default_generator.manual_seed(mix_seed(seed, 7, v))
            out.append(augment(images[:left]))
            left -= len(out[-1])
    return normalize(torch.cat(out).cpu(), config).float()


class ImageReader(CalibrationDataReader):
    """ONNX Runtime's calibration feed: the ``input`` of every batch of ``images``, nothing else.

    Batches are all the same size (a last partial batch is left out): the histogram calibrators
    (entropy, percentile) stack the batches' activations and fail on one of another shape."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        self.batch_size = min(batch_size, len(images))
        self.images = images[:len(images) - len(images) % self.batch_size]
        self.rewind()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.images), self.batch_size):
            yield {"input": self.images[start:start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = self._batches()
