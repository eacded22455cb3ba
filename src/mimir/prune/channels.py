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


def _trace_target(model: nn.Module) -> nn.Module:
    return model.trace_target() if hasattr(model, "trace_target") else model


def _touches(group, module: nn.Module) -> bool:
    return any(dep.target.module is module for dep, _ in group)


def _is_plain_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == 1


def prune_channels(model: nn.Module, ratio: float, example_input: torch.Tensor) -> list[str]:
    """Prune ``model`` in place; returns the names of the convs whose filters were pruned."""
    if not 0.0 < ratio < 1.0:
        raise MimirError(f"prune ratio {ratio} is outside (0, 1)", "use e.g. --prune channels:0.5")
    target = _trace_target(model)
    classifier = model.get_submodule(model.classifier_name)
    graph = tp.DependencyGraph().build_dependency(target, example_inputs=example_input, verbose=False)
    names = {m: n for n, m in model.named_modules()}
    candidates = model.prunable_convs()
    explicit = candidates is not None
    if not explicit:  # a user's model: every plain conv not coupled to the pre-pool map
        candidates = [n for n, m in model.named_modules() if _is_plain_conv(m)]
    pruned: list[str] = []
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
        done.update(dep.target.module for dep, _ in group
                    if dep.handler in (tp.prune_conv_out_channels,) and _is_plain_conv(dep.target.module))
        group.prune()
        pruned.append(names.get(conv, name))
    return pruned
