"""Model registry: ``create_model(name, **kwargs)``, ``list_models()``."""

from __future__ import annotations

import inspect
from typing import Callable

from mimir.errors import MimirError
from mimir.models._base import SplitModel

_MODELS: dict[str, Callable[..., SplitModel]] = {}


def register_model(fn: Callable[..., SplitModel]) -> Callable[..., SplitModel]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def is_model(name: str) -> bool:
    """A registered name, or ``timm:NAME`` for any model timm knows."""
    from mimir.models.timm_models import is_timm_model

    return name in _MODELS or is_timm_model(name)


def model_entrypoint(name: str) -> Callable[..., SplitModel]:
    """The function that builds ``name`` (to inspect the arguments it accepts)."""
    if name not in _MODELS:
        raise MimirError(f"unknown model '{name}'", f"choose one of: {', '.join(list_models())}")
    return _MODELS[name]


def accepts(name: str, argument: str) -> bool:
    """Whether registry model ``name`` takes ``argument`` (e.g. ``small_input``)."""
    if name not in _MODELS:
        return False
    return argument in inspect.signature(model_entrypoint(name)).parameters


def create_model(name: str, **kwargs) -> SplitModel:
    """Build registered model ``name`` (or ``timm:NAME``) with random weights (``num_classes``,
    ``in_chans``, ...)."""
    from mimir.models.timm_models import create_timm_model, timm_name

    if timm_name(name) is not None:
        return create_timm_model(name, **kwargs)
    if name not in _MODELS:
        raise MimirError(f"unknown model '{name}'", f"choose one of: {', '.join(list_models())}")
    model = _MODELS[name](**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model
