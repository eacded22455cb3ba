"""The body / head split every mimir model follows (timm's ``forward_features`` / ``forward_head``).

``forward_features(x)`` returns the last feature map *before* global pooling (MiR's mimic target);
``forward_head(f)`` is global average pooling + the classifier. ``forward = head . body``.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


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


class SplitModel(nn.Module):
    """Base class of every mimir model. Subclasses set ``classifier_name`` and implement the split."""

    #: dotted name of the final linear layer (the head's only parameters)
    classifier_name: str = "fc"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1)
        return pooled if pre_logits else self.get_submodule(self.classifier_name)(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def head_module_names(self) -> list[str]:
        """Modules that belong to the head (copied from the teacher, never trained by mimicking)."""
        return [self.classifier_name]
