"""Small helpers on modules and tensors that every layer uses: where a model lives, a mode or a
set of trainable parameters held for the length of a block, a hash of a model's weights, and
seeded randomness that leaves torch's global generator as it was."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's weights (the CPU for a model without any)."""
    first = next(iter(model.state_dict().values()), None)
    return first.device if first is not None else torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; the train/eval mode each of its modules had before
    is restored after (a mixed one too), also on an error."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def frozen_except(module: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Inside the block only ``params`` of ``module`` require gradients; the others that did are
    frozen and get ``requires_grad`` back after."""
    keep = {id(p) for p in params}
    frozen = [p for p in module.parameters() if p.requires_grad and id(p) not in keep]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Inside the block torch's global CPU generator is seeded with ``seed`` (for code that draws
    from it and takes no generator: torchvision's transforms, module initialisation); its state
    before the block is restored after, so nothing outside sees the seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def fingerprint(model: nn.Module) -> str:
    """A hash of everything that decides a model's eval-mode outputs: its module tree and every
    parameter and buffer (names, shapes, dtypes, values)."""
    digest = hashlib.sha1(repr(model).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def trace_target(model: nn.Module) -> nn.Module:
    """The module to trace or count (for a wrapped user model: the user's model, called once)."""
    return model.trace_target() if hasattr(model, "trace_target") else model
