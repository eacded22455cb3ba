"""The body / head split every mimir model follows (timm's ``forward_features`` / ``forward_head``).

``forward_features(x)`` returns the last feature map *before* global pooling (MiR's mimic target);
``forward_head(f)`` is global average pooling + the classifier. ``forward = head . body``.
"""

from __future__ import annotations

import torch
from torch import nn


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
