"""Images synthesised from the teacher alone (``--data synthetic:N``), for when no real image exists.

DeepInversion-style (Yin et al., CVPR 2020; the "ADI" images PRACTISE mimics on): start from
Gaussian noise and optimise the pixels with Adam so that (1) the batch statistics every BatchNorm
layer of the teacher sees match the running mean and variance it stored during training, and (2)
the teacher assigns each image confidently to a class (cross-entropy to class ``i mod C``), with a
small total-variation and L2 prior, random jitter and flips at every step. The result is quantised
to uint8, like any other few-sample set, and no label leaves this module: the images are returned
as :class:`~mimir.data.UnlabeledImages`.

Synthesis is deterministic for a seed (on one device), and costs ``N x iterations`` teacher
forward and backward passes; :func:`synthetic_images` keeps the result in a cache keyed by the
teacher's weights and every setting, so the cells of a benchmark grid synthesise once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mimir.core import DataConfig, cache_root, eval_mode, file_lock, fingerprint, frozen_except, model_device
from mimir.data.datasets import UnlabeledImages
from mimir.errors import MimirError

PREFIX = "synthetic:"
_VERSION = 1   # bump when the synthesis changes: cached images of older versions are not reused


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of the optimisation. 200 iterations per batch were chosen in a one-off probe on the
    bundled ResNet-20, where MiR on 64 images synthesised that way already recovered the pruned
    student to within about a point of the teacher; the ``synthetic:256`` rows of
    ``benchmarks/beyond-mir.yaml`` measure it properly."""

    iterations: int = 200
    batch_size: int = 64
    lr: float = 0.1
    bn_weight: float = 1.0
    tv_weight: float = 1e-3
    l2_weight: float = 1e-5
    jitter: int = 2


def parse_synthetic(data: object, flag: str = "--data") -> int | None:
    """N for a data spec ``synthetic:N``, None for anything else."""
    if not isinstance(data, str) or not data.startswith(PREFIX):
        return None
    count = data[len(PREFIX):]
    if not count.isdigit() or int(count) < 1:
        raise MimirError(f"{flag} {data}: the number of images to synthesise must be a positive integer",
                         f"write e.g. {flag} synthetic:256")
    return int(count)


def _norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.running_mean is not None and m.running_var is not None]


class _BatchNormStatistics:
    """While open, sums over the teacher's BatchNorm layers ``|mean_batch - running_mean|_2 +
    |var_batch - running_var|_2`` of what each layer receives."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = _norm_layers(model)
        self.terms: list[torch.Tensor] = []

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        dims = [d for d in range(x.dim()) if d != 1]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        self.terms.append(torch.linalg.vector_norm(mean - module.running_mean) +
                          torch.linalg.vector_norm(var - module.running_var))

    def __enter__(self) -> "_BatchNormStatistics":
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()

    def take(self) -> torch.Tensor:
        loss, self.terms = torch.stack(self.terms).sum(), []
        return loss


def batchnorm_statistics_loss(teacher: nn.Module, x: torch.Tensor) -> float:
    """How far the BatchNorm statistics of the normalised batch ``x`` are from the teacher's
    running statistics (summed over layers; lower = closer to the teacher's training data)."""
    with eval_mode(teacher), _BatchNormStatistics(teacher) as stats, torch.no_grad():
        teacher(x)
        return float(stats.take())


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return ((x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean())


def synthesize(teacher: nn.Module, config: DataConfig, n: int, seed: int,
               settings: SynthesisConfig = SynthesisConfig(), progress: bool = True) -> UnlabeledImages:
    """``n`` uint8 images (``config``'s channels and input size) optimised from noise against
    ``teacher`` (on the teacher's device, which is left in its mode)."""
    if not _norm_layers(teacher):
        raise MimirError("--data synthetic:N needs a teacher with BatchNorm layers (their statistics guide the "
                         "synthesis)", "give a few real or out-of-domain images with --data FOLDER instead")
    device = model_device(teacher)
    mean = torch.tensor(config.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, -1, 1, 1)
    low, high = (0 - mean) / std, (1 - mean) / std            # the valid pixel range, normalised
    gen = torch.Generator().manual_seed(seed)
    out = []
    with eval_mode(teacher), frozen_except(teacher, []):   # the images are optimised, never the teacher
        bar = tqdm(total=n * settings.iterations, desc="synthesise", leave=False, disable=not progress)
        for start in range(0, n, settings.batch_size):
            count = min(settings.batch_size, n - start)
            x = torch.randn(count, config.in_chans, config.input_size, config.input_size, generator=gen)
            x = x.to(device).requires_grad_(True)
            targets = (torch.arange(start, start + count) % config.num_classes).to(device)
            opt = torch.optim.Adam([x], lr=settings.lr, betas=(0.5, 0.9))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, settings.iterations)
            with _BatchNormStatistics(teacher) as stats:
                for _ in range(settings.iterations):
                    dy, dx = (int(v) for v in torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=gen))
                    view = torch.roll(x, (dy, dx), (2, 3))
                    if bool(torch.rand(1, generator=gen) < 0.5):
                        view = view.flip(3)
                    logits = teacher(view)
                    loss = (F.cross_entropy(logits, targets) + settings.bn_weight * stats.take()
                            + settings.tv_weight * _total_variation(view) + settings.l2_weight * view.pow(2).mean())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    with torch.no_grad():
                        x.copy_(torch.maximum(torch.minimum(x, high), low))
                    bar.update(count)
            pixels = (x.detach() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
            out.append(pixels.cpu())
        bar.close()
    return UnlabeledImages(torch.cat(out), source=f"{PREFIX}{n}")


def _cache_dir() -> Path:
    return cache_root() / "synthetic"


def synthetic_images(teacher: nn.Module, config: DataConfig, n: int, seed: int,
                     settings: SynthesisConfig = SynthesisConfig(), progress: bool = True,
                     cache: bool = True) -> UnlabeledImages:
    """:func:`synthesize`, kept in ``$MIMIR_CACHE/synthetic`` (default ``~/.cache/mimir``) under a
    key of the teacher's weights, ``config``, ``n``, ``seed``, the settings and the device type."""
    device = model_device(teacher).type
    key = hashlib.sha1(repr((_VERSION, fingerprint(teacher), config.to_dict(), n, seed, asdict(settings),
                             device, str(torch.__version__))).encode()).hexdigest()[:20]
    path = _cache_dir() / f"{key}.pt"
    if not cache:
        return synthesize(teacher, config, n, seed, settings, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):   # parallel benchmark workers synthesise a set once
        if not path.is_file():
            images = synthesize(teacher, config, n, seed, settings, progress)
            partial = path.with_suffix(f".{os.getpid()}.part")
            torch.save(images.images, partial)
            os.replace(partial, path)        # atomic: a reader never sees half a file
    return UnlabeledImages(torch.load(path, weights_only=True), source=f"{PREFIX}{n}")


