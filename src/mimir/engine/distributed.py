"""Data parallelism with PyTorch's own machinery: torchrun's environment, a process group (gloo on
CPU, nccl on GPU), DistributedDataParallel, and BatchNorm statistics synchronised across processes.

Every process draws the same few samples and the same global batch; process ``r`` of ``P`` takes
its share of it (:func:`shard`). BatchNorm layers are converted to their synchronised form for the
run and back afterwards, so a student trained on P processes is the student one process would
train, up to floating-point noise. Only rank 0 evaluates, prints and writes files.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns True if this call
    created it (and so should destroy it with :func:`shutdown`)."""
    if not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def shutdown(owned: bool) -> None:
    if owned and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(count: int) -> slice:
    """This process's contiguous share of a global batch of ``count`` (sizes differ by at most one)."""
    base, extra = divmod(count, world_size())
    r = rank()
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def broadcast_module(module: nn.Module) -> None:
    """Make every process's parameters and buffers equal to rank 0's."""
    if is_distributed():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


class _GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the global batch on CPU, where ``nn.SyncBatchNorm`` refuses to run (it needs
    a GPU). Per-channel sums are combined with the differentiable ``all_reduce`` of
    ``torch.distributed.nn``, so the gradients flow through the global statistics as in SyncBatchNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        with warnings.catch_warnings():   # deprecated in favour of a private module; still the public one
            warnings.simplefilter("ignore")
            from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def _swap_batchnorm(module: nn.Module, make) -> None:
    """Replace children for which ``make`` returns a class; the replacement shares the original's
    parameters and buffers (as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does), so optimisers and
    references to them stay valid."""
    for name, child in module.named_children():
        cls = make(child)
        if cls is None:
            _swap_batchnorm(child, make)
            continue
        new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
        for attr in ("weight", "bias"):
            setattr(new, attr, getattr(child, attr))
        for attr in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, attr, getattr(child, attr))
        new.train(child.training)
        setattr(module, name, new)


def sync_batchnorm(module: nn.Module, device: torch.device) -> None:
    """Replace every BatchNorm2d of ``module`` (in place) by one that normalises over the global batch."""
    if is_distributed():
        cls = nn.SyncBatchNorm if device.type == "cuda" else _GlobalBatchNorm2d
        _swap_batchnorm(module, lambda m: cls if type(m) is nn.BatchNorm2d else None)


def revert_batchnorm(module: nn.Module) -> None:
    """Undo :func:`sync_batchnorm`: plain ``nn.BatchNorm2d`` sharing the same tensors."""
    _swap_batchnorm(module, lambda m: nn.BatchNorm2d if isinstance(m, (nn.SyncBatchNorm, _GlobalBatchNorm2d)) else None)
