"""Top-1 accuracy and feature-map error on a labelled image set."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from mimir.core import DataConfig, eval_mode, model_device
from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.folder import LabeledImageFiles, iter_labeled_files
from mimir.data.transforms import center_crop, normalize
from mimir.engine.runtime import Runtime
from mimir.export.onnx import ort_session


def eval_batches(data: LabeledImages | LabeledImageFiles, batch_size: int):
    """(uint8 images, labels) batches of a labelled set in memory or read from a folder."""
    if isinstance(data, LabeledImageFiles):
        yield from iter_labeled_files(data, batch_size)
        return
    for start in range(0, len(data), batch_size):
        yield data.images[start:start + batch_size], data.labels[start:start + batch_size]


def _runtime_for(model: nn.Module, runtime: Runtime | None) -> Runtime:
    """The given runtime, or plain fp32 on the device the model's weights are on."""
    return runtime or Runtime(model_device(model), channels_last=False)


def _eval_view(images: torch.Tensor, config: DataConfig, runtime: Runtime) -> torch.Tensor:
    return runtime.batch(normalize(center_crop(images, config.input_size).to(runtime.device), config))


@torch.no_grad()
def accuracy(model: nn.Module, data: LabeledImages | LabeledImageFiles, config: DataConfig,
             batch_size: int = 500, progress: bool = False, desc: str = "evaluate",
             runtime: Runtime | None = None) -> float:
    """Top-1 accuracy in percent (model put in eval mode, its mode restored afterwards), on the
    runtime's device and precision (default: fp32 where the model is).

    ``data`` is either in memory or a folder read batch by batch (unreadable files are left out
    of the count, with a warning)."""
    runtime = _runtime_for(model, runtime)
    correct = torch.zeros((), dtype=torch.long, device=runtime.device)
    seen = 0
    total = -(-len(data) // batch_size)
    with eval_mode(model):
        for images, labels in tqdm(eval_batches(data, batch_size), total=total, desc=desc, disable=not progress,
                                   leave=False):
            with runtime.autocast():
                logits = model(_eval_view(images, config, runtime))
            correct += (logits.argmax(1) == labels.to(runtime.device)).sum()
            seen += len(labels)
    return 100.0 * int(correct) / seen


@torch.no_grad()
def feature_mse(student: nn.Module, teacher: nn.Module, data: UnlabeledImages | LabeledImages,
                config: DataConfig, batch_size: int = 500, runtime: Runtime | None = None) -> float:
    """Mean squared error between the two pre-pool feature maps (both in eval mode)."""
    runtime = _runtime_for(student, runtime)
    total = torch.zeros((), dtype=torch.float64, device=runtime.device)
    count = 0
    with eval_mode(student), eval_mode(teacher):
        for start in range(0, len(data), batch_size):
            x = _eval_view(data.images[start:start + batch_size], config, runtime)
            with runtime.autocast():
                diff = student.forward_features(x).float() - teacher.forward_features(x).float()
            total += diff.pow(2).sum(dtype=torch.float64)
            count += diff.numel()
    return float(total) / count


def onnx_accuracy(blob: bytes, data: LabeledImages | LabeledImageFiles, config: DataConfig, batch_size: int = 500,
                  progress: bool = False, desc: str = "evaluate", threads: int = 0) -> float:
    """Top-1 accuracy in percent of an ONNX model (fp32 or int8) in ONNX Runtime on the CPU, on
    the same evaluation view as :func:`accuracy` (``threads`` 0: all cores)."""
    session = ort_session(blob, threads)
    correct = seen = 0
    total = -(-len(data) // batch_size)
    for images, labels in tqdm(eval_batches(data, batch_size), total=total, desc=desc, disable=not progress,
                               leave=False):
        x = normalize(center_crop(images, config.input_size), config).float().numpy()
        correct += int((session.run(None, {"input": x})[0].argmax(1) == labels.numpy()).sum())
        seen += len(labels)
    return 100.0 * correct / seen
