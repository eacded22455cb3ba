"""The models the coverage sweep takes: the smallest image classifier of every timm name prefix,
and every torchvision classifier as a user's ``nn.Module``."""

from __future__ import annotations

import re
from dataclasses import dataclass

import timm
import torch
import torchvision

#: name modifiers that keep the model's own prefix after them (tf_efficientnet_b0: tf_efficientnet)
_MODIFIERS = ("tf_", "legacy_")
#: prefixes that are not a family of image classifiers (timm's tiny test models)
_NOT_FAMILIES = ("test",)


@dataclass(frozen=True)
class Candidate:
    source: str
    group: str
    model: str


def timm_prefix(name: str) -> str:
    """A timm name's family prefix: its leading letters with a version number that follows a ``v``
    (``resnet`` of resnet18d, ``mobilenetv3`` of mobilenetv3_small_050, ``convnextv2`` of
    convnextv2_atto), after ``tf_`` or ``legacy_`` where the name starts so (``tf_efficientnet``)."""
    modifier = next((m for m in _MODIFIERS if name.startswith(m)), "")
    return modifier + re.match(r"[a-z]+(?:(?<=v)\d+)?", name[len(modifier):]).group(0)


def timm_candidates() -> list[Candidate]:
    """For every timm name prefix, its image classifier with the fewest parameters (built on the
    meta device: nothing is allocated); prefixes with no image classifier are left out."""
    best: dict[str, tuple[int, str]] = {}
    for name in timm.list_models():
        try:
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False)
        except Exception:  # noqa: BLE001 - a model that cannot be built on meta is tried by its size later
            continue
        if getattr(model, "num_classes", 0) <= 0 or not hasattr(model, "forward_head"):
            continue
        params = sum(p.numel() for p in model.parameters())
        prefix = timm_prefix(name)
        if prefix in _NOT_FAMILIES:
            continue
        if prefix not in best or params < best[prefix][0]:
            best[prefix] = (params, name)
    return [Candidate("timm", prefix, f"timm:{name}") for prefix, (_, name) in sorted(best.items())]


def torchvision_candidates() -> list[Candidate]:
    """Every torchvision image classifier, as ``torchvision.models:NAME`` (a user's nn.Module)."""
    names = torchvision.models.list_models(module=torchvision.models)
    return [Candidate("torchvision", re.match(r"[a-z]+", n).group(0), f"torchvision.models:{n}") for n in sorted(names)]
