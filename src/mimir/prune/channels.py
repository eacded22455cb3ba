"""``channels:R`` - L1-norm filter pruning (Li et al. 2017) through Torch-Pruning's DepGraph.

For each prunable conv (the inner convs of residual blocks, every conv but the last for VGG, or,
for a user's model, every conv not coupled to the pre-pool map), the ``round(R * C)`` filters with
the smallest L1 norm are removed together with everything coupled to them (BN, the next conv's
input channels, depthwise partners). Surviving weights are the teacher's. A group that would reach
the classifier's input is refused, so the head always fits unchanged.

``scope="all"`` (``channels-all:R``) also prunes the channels that residual additions tie together
(a ResNet stage's stem/shortcut/block-output width: the additions and activations shrink too),
except the group that reaches the pre-pool map. ``round_to=K`` keeps a multiple of K channels in
every pruned layer (the nearest one, at least K): CPU convolution kernels work on blocks of 8 or
16 channels, so widths off those multiples cost time the MACs do not show.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from mimir.errors import MimirError
from mimir.models._base import trace_target


def _touches(group, module: nn.Module) -> bool:
    return any(dep.target.module is module for dep, _ in group)


def _is_plain_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == 1


def _record(kept: dict[str, list[int]], name: str, size: int, removed: list[int]) -> None:
    """Compose this pruning step's survivors with earlier ones (indices into the *teacher's* layer)."""
    before = kept.get(name, list(range(size)))
    gone = set(removed)
    kept[name] = [c for i, c in enumerate(before) if i not in gone]


def kept_channels(channels: int, ratio: float, round_to: int | None = None) -> int:
    """How many of ``channels`` survive pruning at ``ratio`` (at least one; with ``round_to`` K,
    the nearest multiple of K, at least K and at most ``channels``). Like Torch-Pruning's
    ``round_to``, which rounds down, but never to zero."""
    keep = max(1, channels - round(ratio * channels))
    if round_to:
        keep = min(channels, max(round_to, round_to * round(keep / round_to)))
    return keep


def prune_channels(model: nn.Module, ratio: float, example_input: torch.Tensor, scope: str = "inner",
                   round_to: int | None = None) -> dict:
    """Prune ``model`` in place (``scope``: ``"inner"`` channels only, or ``"all"`` but those of the
    pre-pool map; ``round_to``: see :func:`kept_channels`).

    Returns ``{"out": {layer: kept teacher channels}, "in": {layer: kept teacher input channels}}``
    for every conv / BN / linear layer that lost channels (what FSKD and CD compare against).
    """
    if not 0.0 < ratio < 1.0:
        raise MimirError(f"prune ratio {ratio} is outside (0, 1)", "use e.g. --prune channels:0.5")
    target = trace_target(model)
    classifier = model.get_submodule(model.classifier_name)
    graph = tp.DependencyGraph().build_dependency(target, example_inputs=example_input, verbose=False)
    names = {m: n for n, m in model.named_modules()}
    candidates = model.prunable_convs() if scope == "inner" else None
    explicit = candidates is not None
    if not explicit:  # a user's model, or scope "all": every plain conv not coupled to the pre-pool map
        candidates = [n for n, m in model.named_modules() if _is_plain_conv(m)]
    kept: dict[str, dict[str, list[int]]] = {"out": {}, "in": {}}
    done: set[nn.Module] = set()
    for name in candidates:
        conv = model.get_submodule(name)
        if conv in done:
            continue
        channels = conv.out_channels
        n_prune = channels - kept_channels(channels, ratio, round_to)
        if n_prune == 0:
            continue
        l1 = conv.weight.detach().abs().flatten(1).sum(1)
        idxs = torch.argsort(l1)[:n_prune].tolist()
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=idxs)
        if _touches(group, classifier):
            if explicit:
                raise RuntimeError(f"{name} is coupled to the pre-pool feature map; it must not be prunable")
            continue
        for dep, dep_idxs in group:
            module, handler = dep.target.module, dep.handler
            if module not in names:
                continue
            if handler in (tp.prune_conv_out_channels, tp.prune_batchnorm_out_channels,
                           tp.prune_linear_out_channels):
                size = module.out_channels if isinstance(module, nn.Conv2d) else (
                    module.num_features if isinstance(module, nn.BatchNorm2d) else module.out_features)
                _record(kept["out"], names[module], size, list(dep_idxs))
                if _is_plain_conv(module):
                    done.add(module)
            elif handler in (tp.prune_conv_in_channels, tp.prune_linear_in_channels):
                size = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
                _record(kept["in"], names[module], size, list(dep_idxs))
        group.prune()
    return kept
