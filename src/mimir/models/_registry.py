"""The registry of mimir's own model names (``register_model``); :mod:`mimir.models.factory` adds
``timm:NAME`` on top."""

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


def create_registered(name: str, **kwargs) -> SplitModel:
    """Build registered model ``name`` with random weights; it records how it was built
    (``model_name``, ``model_kwargs``), so a saved file can rebuild it."""
    model = model_entrypoint(name)(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def registered(name: str) -> bool:
    return name in _MODELS
