"""A user's own ``nn.Module`` given the body / head split mimir needs.

The pre-pool feature map is either the output of a named layer (``feature_layer="layer4"``) or,
when the model ends in a global pooling followed by a linear layer, found automatically as the
*input* of that pooling. The head is global average pooling + the model's last linear layer;
wrapping checks on a random batch that ``head(body(x)) == model(x)`` and refuses otherwise.
"""

from __future__ import annotations

import importlib
import os
import sys

import torch
from torch import nn

from mimir.errors import MimirError
from mimir.models._base import SplitModel

_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)


class WrappedModel(SplitModel):
    """``model`` with ``forward_features`` returning the map at ``feature_layer``.

    The wrapped model still runs whole (the head is a pooling and one linear layer, so the
    waste is negligible) and a hook captures the feature map; no graph surgery is needed, so any
    model the user can call works.
    """

    model_name = "custom"

    def __init__(self, model: nn.Module, feature_layer: str, classifier: str, on_input: bool) -> None:
        super().__init__()
        self.model = model
        # how to rebuild it on load: the factory, and the layer (None: detect the pooling again)
        self.model_kwargs = {"factory": getattr(model, "_mimir_factory", None),
                             "feature_layer": None if on_input else feature_layer}
        self.feature_layer = feature_layer
        self.classifier_name = f"model.{classifier}"
        self._on_input = on_input
        self._captured: torch.Tensor | None = None
        layer = model.get_submodule(feature_layer)
        if on_input:
            layer.register_forward_pre_hook(self._capture_input)
        else:
            layer.register_forward_hook(self._capture_output)

    def _capture_input(self, module, args):
        self._captured = args[0]

    def _capture_output(self, module, args, output):
        self._captured = output

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._captured = None
        self.model(x)
        features, self._captured = self._captured, None
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def trace_target(self) -> nn.Module:
        """The module Torch-Pruning should trace (the user's model, called once)."""
        return self.model


def _execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    order: list[str] = []
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: order.append(n))
               for n, m in model.named_modules() if n and not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def wrap_model(model: nn.Module, in_chans: int, input_size: int, feature_layer: str | None = None) -> WrappedModel:
    """Give ``model`` the body / head split; see the module docstring."""
    names = dict(model.named_modules())
    x = torch.randn(2, in_chans, input_size, input_size)
    was_training = model.training
    model.eval()
    order = _execution_order(model, x)
    linears = [n for n in order if isinstance(names[n], nn.Linear)]
    if not linears:
        raise MimirError("the model has no linear classifier layer", "mimir needs a model ending in a linear layer")
    classifier = linears[-1]
    if feature_layer is None:
        before = order[: len(order) - 1 - order[::-1].index(classifier)]
        pools = [n for n in before if isinstance(names[n], _POOLS)]
        if not pools:
            raise MimirError("could not find the global pooling before the classifier",
                             "name the layer whose output is the pre-pool feature map (--feature-layer)")
        wrapped = WrappedModel(model, pools[-1], classifier, on_input=True)
        feature_layer = pools[-1]
    else:
        if feature_layer not in names or not feature_layer:
            candidates = [n for n in names if n][-6:]
            raise MimirError(f"the model has no layer named '{feature_layer}'",
                             f"use the dotted name of an existing module, e.g. one of {candidates}")
        wrapped = WrappedModel(model, feature_layer, classifier, on_input=False)
    with torch.no_grad():
        features = wrapped.forward_features(x)
        if not isinstance(features, torch.Tensor) or features.dim() != 4:
            raise MimirError(f"layer '{feature_layer}' does not output a 4-D feature map",
                             "name the last convolutional layer or stage before global pooling")
        reference = model(x)
        try:
            rebuilt = wrapped.forward_head(features)
            fits = rebuilt.shape == reference.shape and torch.allclose(rebuilt, reference, atol=1e-4, rtol=1e-4)
        except RuntimeError:
            fits = False
    if not fits:
        raise MimirError(f"what follows layer '{feature_layer}' is not global average pooling + the linear "
                         f"layer '{classifier}'", "name the layer whose output feeds the global pooling")
    model.train(was_training)
    wrapped.train(was_training)
    return wrapped


def build_from_factory(spec: str) -> nn.Module:
    """Call ``MODULE:CALLABLE`` (importable from the current directory) and return its module."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise MimirError(f"cannot import '{spec}' ({err})",
                         "give MODULE:CALLABLE, importable from the current directory, returning an nn.Module") from None
    model = factory()
    if not isinstance(model, nn.Module):
        raise MimirError(f"'{spec}' returned a {type(model).__name__}, not an nn.Module",
                         "make the callable return your model")
    model._mimir_factory = spec
    return model
