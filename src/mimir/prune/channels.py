"""``channels:R`` - L1-norm filter pruning (Li et al. 2017) through Torch-Pruning's DepGraph.

For each prunable conv (the inner convs of residual blocks, every conv but the last for VGG, or,
for a user's model, every conv not coupled to the pre-pool map), the ``round(R * C)`` filters with
the smallest L1 norm are removed together with everything coupled to them (BN, the next conv's
input channels, depthwise partners). Surviving weights are the teacher's. A group that would reach
the classifier's input is refused, so the head always fits unchanged.
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


def prune_channels(model: nn.Module, ratio: float, example_input: torch.Tensor) -> dict:
    """Prune ``model`` in place.

    Returns ``{"out": {layer: kept teacher channels}, "in": {layer: kept teacher input channels}}``
    for every conv / BN / linear layer that lost channels (what FSKD and CD compare against).
    """
    if not 0.0 < ratio < 1.0:
        raise MimirError(f"prune ratio {ratio} is outside (0, 1)", "use e.g. --prune channels:0.5")
    target = trace_target(model)
    classifier = model.get_submodule(model.classifier_name)
    graph = tp.DependencyGraph().build_dependency(target, example_inputs=example_input, verbose=False)
    names = {m: n for n, m in model.named_modules()}
    candidates = model.prunable_convs()
    explicit = candidates is not None
    if not explicit:  # a user's model: every plain conv not coupled to the pre-pool map
        candidates = [n for n, m in model.named_modules() if _is_plain_conv(m)]
    kept: dict[str, dict[str, list[int]]] = {"out": {}, "in": {}}
    done: set[nn.Module] = set()
    for name in candidates:
        conv = model.get_submodule(name)
        if conv in done:
            continue
        channels = conv.out_channels
        n_prune = min(channels - 1, round(ratio * channels))
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
