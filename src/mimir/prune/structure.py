"""What a model's structure allows to prune, read off traced graphs - never off where the model
came from, so the same layers give the same answer as a registry model, a timm model or a user's
own module.

*Channel groups* come from Torch-Pruning's DependencyGraph: the out-channels of one conv or
linear layer together with everything that must shrink with them. A group is **coupled** when
the out-channels of two or more layers that compute from their whole input (plain convs,
linears) are tied in it through an addition of two tensors (a residual connection); depthwise and
grouped convs only pass channels through and do not count, and a squeeze-excite product or an
``x + 3`` does not couple. A group
**reaches the head** when the classifier (or another head module) consumes it: that is the
pre-pool map, whose width the teacher's head needs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from mimir.core import trace_target
from mimir.models.anatomy import attention_modules, head_modules


@dataclass(frozen=True)
class ChannelGroup:
    root: str                   # the layer whose out-channels define the group (dotted name in the model)
    writers: tuple[str, ...]    # plain conv / linear layers whose out-channels are in the group
    coupled: bool
    reaches_head: bool
    attention: bool             # the q/k/v projection of a multi-head attention (pruned head by head)


def is_writer(m: nn.Module) -> bool:
    """A layer that computes each output channel from its whole input (a plain conv or a linear)."""
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with warnings.catch_warnings():  # ViT class tokens / position embeddings: never pruned (they reach the head)
        warnings.filterwarnings("ignore", message="Unwrapped parameters")
        return tp.DependencyGraph().build_dependency(trace_target(model), example_inputs=example, verbose=False)


def channel_groups(model: nn.Module, graph: tp.DependencyGraph) -> list[ChannelGroup]:
    """Every channel group rooted at a conv or linear layer outside the head, in module order."""
    names = {m: n for n, m in model.named_modules()}
    head = head_modules(model)
    qkv = {m.qkv for m in attention_modules(model).values()}
    groups, seen = [], set()
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)) or m in head or m in seen or m not in graph.module2node:
            continue
        group = graph.get_pruning_group(m, tp.prune_conv_out_channels if isinstance(m, nn.Conv2d)
                                        else tp.prune_linear_out_channels, idxs=[0])
        members = [dep.target.module for dep, _ in group]
        outs = [dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
        writers = [t for t in dict.fromkeys(outs) if is_writer(t) and t in names]
        seen.update(outs)
        groups.append(ChannelGroup(
            root=name, writers=tuple(names[w] for w in writers),
            coupled=len(writers) > 1 and any(_is_addition(dep.target) for dep, _ in group),
            reaches_head=any(t in head for t in members), attention=m in qkv))
    return groups


def _is_addition(node) -> bool:
    """A node of the dependency graph that adds two tensors (a residual addition; ``x + 3`` has one input)."""
    return node.type == tp.ops.OPTYPE.ELEMENTWISE and type(node.grad_fn).__name__.startswith("AddBackward") \
        and len(node.inputs) >= 2
