"""Channel pruning through Torch-Pruning's pruner, with the groups chosen by structure.

``scope="inner"`` (``channels:R``) prunes the channel groups no residual addition and no head
module ties together (see :mod:`mimir.prune.structure`): a ResNet block's inner channels, a
bottleneck's two inner widths, an inverted-residual block's expansion, a plain VGG's every conv
but the last, a ViT's MLP hidden width and its attention's q/k/v width (every head narrowed, or
whole heads dropped: ``head_pruning``). ``scope="all"``
(``channels-all:R``) also prunes coupled groups - the additions shrink with them - but never one
that reaches the head. Surviving weights are the teacher's, so the head always fits unchanged.

Torch-Pruning does the ranking and the surgery: ``importance`` (l1 - the filter's own L1 norm,
Li et al. 2017, the default - l2, fpgm, lamp, or taylor, see :func:`taylor_scores`),
``global_pruning`` (rank all groups together), per-layer ratios and ``round_to`` (see
:mod:`mimir.prune.rounding`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn

from mimir.core import trace_target
from mimir.errors import MimirError
from mimir.models.anatomy import attention_modules, head_modules, resolve_name, sync_heads
from mimir.prune.rounding import rounded
from mimir.prune.structure import channel_groups, dependency_graph


def kept_channels(channels: int, ratio: float, round_to: int | None = None) -> int:
    """How many of ``channels`` survive pruning at ``ratio``: Torch-Pruning's ``int(C * (1 - R))``,
    at least one; with ``round_to`` K, rounded by :func:`mimir.prune.rounding.rounded` (the nearest
    multiple of K, at least K, at most ``channels``; 8 for a layer that keeps fewer than K) -
    Torch-Pruning's own ``round_to`` rounds down, and can reach zero."""
    return rounded(max(1, int(channels * (1 - ratio))), channels, round_to)


#: how channels:R narrows an attention: every head fewer dimensions, or fewer whole heads
HEAD_PRUNING = ("dims", "heads")


class _Pruner(tp.pruner.BasePruner):
    """Torch-Pruning's pruner with mimir's rounding (:func:`mimir.prune.rounding.rounded`, never 0)."""

    def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
        return current_channels - rounded(current_channels - n_pruned, current_channels, round_to)


def taylor_scores(model: nn.Module, images: torch.Tensor, projections: int = 8) -> None:
    """Leave in every parameter's ``.grad`` the diagonal Gauss-Newton curvature of the MiR loss.

    The student starts as a copy of the teacher, where MiR's loss ``||body_S(x) - body_T(x)||^2``
    is zero and so is its gradient: first-order Taylor scores would all be zero. The second-order
    term is ``delta' J'J delta``; ``E_r[(d r'f(x) / dw)^2] = diag(J'J)`` for Gaussian ``r``, so a few
    random projections of the pre-pool map estimate it. Torch-Pruning's Hessian (OBD) criterion
    then scores a channel by ``sum w^2 diag(J'J)``: how much removing it moves the map MiR mimics.
    """
    generator = torch.Generator(device="cpu").manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    curvature = [torch.zeros_like(p) for p in params]
    with torch.enable_grad():
        for _ in range(projections):
            model.zero_grad(set_to_none=True)
            features = model.forward_features(images)
            r = torch.randn(features.shape, generator=generator).to(features)
            (features * r).sum().backward()
            for c, p in zip(curvature, params):
                if p.grad is not None:
                    c.add_(p.grad.detach() ** 2)
    for c, p in zip(curvature, params):
        p.grad = c / projections


@dataclass(frozen=True)
class Criterion:
    """A channel-importance criterion: Torch-Pruning's scorer, and what it must first compute on
    the few samples, if anything (``prepare(model, images)``; such a criterion needs the images)."""

    make: Callable[[], tp.importance.Importance]
    prepare: Callable[[nn.Module, torch.Tensor], None] | None = None

    @property
    def needs_images(self) -> bool:
        return self.prepare is not None


#: the criteria by name (ranking within a group is what the filter-level criteria published; the
#: mean normaliser only matters for global pruning)
CRITERIA: dict[str, Criterion] = {
    "l1": Criterion(lambda: tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer="mean")),
    "l2": Criterion(lambda: tp.importance.MagnitudeImportance(p=2, group_reduction="first", normalizer="mean")),
    "fpgm": Criterion(tp.importance.FPGMImportance),
    "lamp": Criterion(lambda: tp.importance.LAMPImportance(p=2)),
    "taylor": Criterion(lambda: tp.importance.HessianImportance(group_reduction="mean", normalizer="mean"),
                        prepare=taylor_scores),
}
IMPORTANCES = tuple(CRITERIA)


def importance(name: str) -> Criterion:
    """The criterion called ``name``."""
    if name not in CRITERIA:
        raise MimirError(f"unknown importance '{name}'", f"choose one of {', '.join(IMPORTANCES)}")
    return CRITERIA[name]


def _record(kept: dict[str, list[int]], name: str, size: int, removed: list[int]) -> None:
    """Compose this pruning step's survivors with earlier ones (indices into the *teacher's* layer)."""
    before = kept.get(name, list(range(size)))
    gone = set(removed)
    kept[name] = [c for i, c in enumerate(before) if i not in gone]


def _size(module: nn.Module, out: bool) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels if out else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if out else module.in_features
    return module.num_features


def layer_names(model: nn.Module, names: list[str]) -> list[str]:
    """``names`` as the model spells them, each one of its modules; else the one-line error."""
    modules = [n for n, _ in model.named_modules() if n]
    return [resolve_name(model, n, modules, "the model has no layer named", "modules of the model") for n in names]


def prune_channels(model: nn.Module, ratio: float, example_input: torch.Tensor, scope: str = "inner",
                   round_to: int | None = None, importance_name: str = "l1", global_pruning: bool = False,
                   layer_ratios: dict[str, float] | None = None, images: torch.Tensor | None = None,
                   head_pruning: str = "dims") -> dict:
    """Prune ``model`` in place (see the module docstring). ``layer_ratios`` maps module names
    (``layer1``, ``blocks.3``) to their own ratio; with it, layers it does not name are kept.
    ``images``: a normalised batch of the few samples, for a criterion that scores on data (taylor).
    ``head_pruning``: how an attention loses q/k/v channels - ``dims``, every head keeps fewer
    dimensions (all heads stay), or ``heads``, whole heads are dropped.

    Returns ``{"out": {layer: kept teacher channels}, "in": {layer: kept teacher input channels}}``
    for every conv / BN / linear layer that lost channels (what FSKD and CD compare against).
    """
    if head_pruning not in HEAD_PRUNING:
        raise MimirError(f"unknown head pruning '{head_pruning}'", f"choose one of {', '.join(HEAD_PRUNING)}")
    if not (0.0 < ratio < 1.0 or layer_ratios):
        raise MimirError(f"prune ratio {ratio} is outside (0, 1)", "use e.g. --prune channels:0.5")
    graph = dependency_graph(model, example_input)
    groups = channel_groups(model, graph)
    excluded = {w for g in groups if g.reaches_head or (scope == "inner" and g.coupled) for w in g.writers}
    ignored = list(head_modules(model)) + [model.get_submodule(n) for n in excluded]
    attention = attention_modules(model)
    criterion = importance(importance_name)
    if criterion.needs_images:
        if images is None:
            raise MimirError(f"importance '{importance_name}' needs the few samples", "pass images=")
        criterion.prepare(model, images)
    ratios = {model.get_submodule(full): r for full, r in zip(layer_names(model, list(layer_ratios or {})),
                                                              (layer_ratios or {}).values())}
    heads = {m.qkv: m.num_heads for m in attention.values()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unwrapped parameters")
        pruner = _Pruner(trace_target(model), example_input, importance=criterion.make(), global_pruning=global_pruning,
                         pruning_ratio=0.0 if layer_ratios else ratio, pruning_ratio_dict=ratios or None,
                         ignored_layers=ignored, round_to=round_to, num_heads=heads,
                         prune_num_heads=head_pruning == "heads", prune_head_dims=head_pruning == "dims",
                         head_pruning_ratio=0.0 if layer_ratios else ratio,
                         head_pruning_ratio_dict={m: r for m, r in ratios.items()} or None)
    names = {m: n for n, m in model.named_modules()}
    kept: dict[str, dict[str, list[int]]] = {"out": {}, "in": {}}
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            module = dep.target.module
            if module not in names or not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                continue
            out = graph.is_out_channel_pruning_fn(dep.handler)
            _record(kept["out" if out else "in"], names[module], _size(module, out), list(idxs))
        group.prune()
    sync_heads(model, narrowed=head_pruning == "dims")   # tell each attention its heads and their width
    model.zero_grad(set_to_none=True)
    return kept

