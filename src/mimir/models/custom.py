"""A user's own ``nn.Module`` given the body / head split mimir needs.

The pre-pool feature map is found by tracing the model with torch.fx and running the trace once:
walking back from the last linear layer through shape-only steps (flatten, view, dropout), the
first operation whose output is the *mean* of its input over the spatial dimensions (or over the
tokens of a ``B x T x D`` sequence) is the global pooling, however it is written -
``nn.AdaptiveAvgPool2d``, ``x.mean((2, 3))``, ``F.adaptive_avg_pool2d(x, 1).flatten(1)``,
``torch.flatten(F.avg_pool2d(x, 7), 1)``, ``x.mean(1)``. Its input is the pre-pool map. The traced
model (a ``GraphModule`` with the user's layers under their own names) gets a marker layer there.

When torch.fx cannot trace the model, an ``nn`` pooling module before the classifier is used; when
there is none, the user names the layer (``feature_layer``), whose output is then the map.

Wrapping works on a copy: the user's model keeps its mode, gets no hooks and no changes, also when
wrapping fails. The head is global average pooling + the model's last linear layer; wrapping
checks on a random batch that ``head(body(x)) == model(x)`` and refuses otherwise.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import fx, nn

from mimir.errors import MimirError
from mimir.models._base import SplitModel

_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
_MARKER = "mimir_pre_pool"   # the identity layer placed on the pre-pool map of a traced model
_SHAPE_ONLY = {"flatten", "view", "reshape", "squeeze", "contiguous", "dropout"}


class WrappedModel(SplitModel):
    """``model`` (the traced copy, or a copy of the user's module) with ``forward_features``
    returning the map captured at ``feature_layer``'s output (``on_input``: its input)."""

    model_name = "custom"

    def __init__(self, model: nn.Module, feature_layer: str, classifier: str, on_input: bool,
                 factory: str | None, detected: bool) -> None:
        super().__init__()
        self.model = model
        # how to rebuild it on load: the factory, and the layer (None: detect the pooling again)
        self.model_kwargs = {"factory": factory, "feature_layer": None if detected else feature_layer}
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

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """As every model's, and also over the tokens of a ``B x T x D`` map (kept out of the base
        class: its dimension test would stop torch.fx from tracing models built on it)."""
        pooled = features.mean(1) if features.dim() == 3 else torch.flatten(
            nn.functional.adaptive_avg_pool2d(features, 1), 1)
        return pooled if pre_logits else self.get_submodule(self.classifier_name)(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def trace_target(self) -> nn.Module:
        """The module Torch-Pruning should trace (the user's model, called once)."""
        return self.model


# ----------------------------------------------------------------------------- finding the pooling
class _Recorder(fx.Interpreter):
    """Runs a traced graph and keeps every node's value."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[fx.Node, object] = {}

    def run_node(self, n: fx.Node):
        self.values[n] = out = super().run_node(n)
        return out


def _is_mean_of(out: object, source: object) -> bool:
    """Whether ``out`` is ``source`` averaged over its spatial dims (B C H W) or tokens (B T D)."""
    if not isinstance(out, torch.Tensor) or not isinstance(source, torch.Tensor) or source.dim() not in (3, 4):
        return False
    if source.dim() == 4 and source.shape[-2:] == (1, 1):
        return False   # already pooled: the map is further back
    mean = source.mean((2, 3)) if source.dim() == 4 else source.mean(1)
    return out.numel() == mean.numel() and torch.allclose(out.reshape(mean.shape), mean, atol=1e-5, rtol=1e-4)


def _shape_only(node: fx.Node, traced: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(traced.get_submodule(node.target), (nn.Dropout, nn.Identity, nn.Flatten))
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return node.op in ("call_method", "call_function") and name in _SHAPE_ONLY


class _UpToClassifier(fx.Tracer):
    """Traces only the forwards that lead to the classifier (the model's own, and those of the
    modules holding the classifier); every other module stays one call, with its own class, so
    its residual blocks can still be dropped."""

    def __init__(self, classifier: str) -> None:
        super().__init__()
        parts = classifier.split(".")
        self.open = {".".join(parts[:i]) for i in range(1, len(parts))}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname not in self.open


def _traced_split(model: nn.Module, x: torch.Tensor, classifier: str) -> fx.GraphModule | None:
    """The traced model with a marker layer on the pre-pool map; None when torch.fx cannot trace
    the model or no pooling feeds the ``classifier``."""
    try:
        traced = fx.GraphModule(model, _UpToClassifier(classifier).trace(model), type(model).__name__)
        recorder = _Recorder(traced)
        with torch.no_grad():
            recorder.run(x)
    except Exception:  # noqa: BLE001 - any tracing failure means: fall back to module hooks
        return None
    calls = [n for n in traced.graph.nodes if n.op == "call_module" and n.target == classifier]
    node = calls[-1].args[0] if calls and calls[-1].args and isinstance(calls[-1].args[0], fx.Node) else None
    while node is not None:
        sources = [a for a in node.all_input_nodes if isinstance(recorder.values.get(a), torch.Tensor)]
        pooled = [a for a in sources if _is_mean_of(recorder.values[node], recorder.values[a])]
        if pooled:
            with traced.graph.inserting_after(pooled[0]):
                traced.add_submodule(_MARKER, nn.Identity())
                marker = traced.graph.call_module(_MARKER, (pooled[0],))
            node.replace_input_with(pooled[0], marker)
            traced.recompile()
            return traced
        node = sources[0] if _shape_only(node, traced) and len(sources) == 1 else None
    return None


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
    """Give (a copy of) ``model`` the body / head split; see the module docstring."""
    factory = getattr(model, "_mimir_factory", None)
    model = copy.deepcopy(model).eval()
    x = torch.randn(2, in_chans, input_size, input_size)
    names = dict(model.named_modules())
    if feature_layer is not None and (feature_layer not in names or not feature_layer):
        candidates = [n for n in names if n][-6:]
        raise MimirError(f"the model has no layer named '{feature_layer}'",
                         f"use the dotted name of an existing module, e.g. one of {candidates}")
    order = _execution_order(model, x)
    linears = [n for n in order if isinstance(names[n], nn.Linear)]
    if not linears:
        raise MimirError("the model has no linear classifier layer", "mimir needs a model ending in a linear layer")
    classifier = linears[-1]
    if feature_layer is not None:
        wrapped = WrappedModel(model, feature_layer, classifier, False, factory, detected=False)
    elif (traced := _traced_split(model, x, classifier)) is not None:
        wrapped = WrappedModel(traced, _MARKER, classifier, False, factory, detected=True)
    else:
        wrapped = _wrap_at_pool_module(model, order, names, classifier, factory)
    _check_split(wrapped, x)
    return wrapped.eval()


def _wrap_at_pool_module(model: nn.Module, order: list[str], names: dict, classifier: str,
                         factory: str | None) -> WrappedModel:
    before = order[: len(order) - 1 - order[::-1].index(classifier)]
    pools = [n for n in before if isinstance(names[n], _POOLS)]
    if not pools:
        raise MimirError("could not find the global pooling before the classifier (torch.fx could not trace "
                         "the model, and it has no pooling layer)",
                         "name the layer whose output is the pre-pool feature map (--feature-layer)")
    return WrappedModel(model, pools[-1], classifier, True, factory, detected=True)


def _check_split(wrapped: WrappedModel, x: torch.Tensor) -> None:
    layer = wrapped.feature_layer
    with torch.no_grad():
        features = wrapped.forward_features(x)
        if not isinstance(features, torch.Tensor) or features.dim() not in (3, 4):
            raise MimirError(f"layer '{layer}' does not output a feature map (B x C x H x W, or B x T x D tokens)",
                             "name the last convolutional layer or stage before global pooling")
        reference = wrapped.model(x)
        try:
            rebuilt = wrapped.forward_head(features)
            fits = rebuilt.shape == reference.shape and torch.allclose(rebuilt, reference, atol=1e-4, rtol=1e-4)
        except RuntimeError:
            fits = False
    if not fits:
        raise MimirError(f"what follows layer '{layer}' is not global average pooling + the linear "
                         f"layer '{wrapped.classifier_name.removeprefix('model.')}'",
                         "name the layer whose output feeds the global pooling")


@contextmanager
def _importable_from_cwd() -> Iterator[None]:
    """The current folder on ``sys.path`` for the length of the block only."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def build_from_factory(spec: str) -> nn.Module:
    """Call ``MODULE:CALLABLE`` (importable from the current directory) and return its module."""
    module_name, _, attr = spec.partition(":")
    try:
        with _importable_from_cwd():
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
