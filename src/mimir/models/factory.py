"""Every model by name: a registered one (``resnet20``, ``vit_p7``, ...) or ``timm:NAME``."""

from __future__ import annotations

from mimir.errors import MimirError
from mimir.models._base import SplitModel
from mimir.models._registry import create_registered, list_models, registered
from mimir.models.timm_models import create_timm_model, is_timm_model, timm_name


def is_model(name: str) -> bool:
    """A registered name, or ``timm:NAME`` for any model timm knows."""
    return registered(name) or is_timm_model(name)


def create_model(name: str, **kwargs) -> SplitModel:
    """Build registered model ``name`` (or ``timm:NAME``) with random weights (``num_classes``,
    ``in_chans``, ...)."""
    if timm_name(name) is not None:
        return create_timm_model(name, **kwargs)
    if not registered(name):
        raise MimirError(f"unknown model '{name}'", f"choose one of: {', '.join(list_models())}")
    return create_registered(name, **kwargs)
