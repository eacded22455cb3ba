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

*Residual blocks* come from torch.fx: a module whose traced forward adds its own input (through
identity-like modules only) to something it computed, so removing it leaves a valid network.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import fx, nn

from mimir.errors import MimirError
from mimir.models._base import trace_target

_PASS_THROUGH = (nn.Identity, nn.Dropout)   # and timm's DropPath, matched by name (see _is_pass_through)
_LEAVES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm, nn.ReLU, nn.GELU, nn.Identity, nn.Dropout)


@dataclass(frozen=True)
class ChannelGroup:
    root: str                   # the layer whose out-channels define the group (dotted name in the model)
    writers: tuple[str, ...]    # plain conv / linear layers whose out-channels are in the group
    coupled: bool
    reaches_head: bool
    attention: bool             # the q/k/v projection of a multi-head attention (pruned by whole heads)


def is_writer(m: nn.Module) -> bool:
    """A layer that computes each output channel from its whole input (a plain conv or a linear)."""
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with warnings.catch_warnings():  # ViT class tokens / position embeddings: never pruned (they reach the head)
        warnings.filterwarnings("ignore", message="Unwrapped parameters")
        return tp.DependencyGraph().build_dependency(trace_target(model), example_inputs=example, verbose=False)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Multi-head attention modules with a fused q/k/v projection (timm's ``Attention`` and alikes)."""
    return {n: m for n, m in model.named_modules()
            if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)
            and isinstance(getattr(m, "head_dim", None), int)}


def head_modules(model: nn.Module) -> set[nn.Module]:
    names = model.head_module_names() if hasattr(model, "head_module_names") else []
    return {sub for n in names for sub in model.get_submodule(n).modules()}


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


# ----------------------------------------------------------------------------- residual blocks
def _is_pass_through(m: nn.Module) -> bool:
    return isinstance(m, _PASS_THROUGH) or type(m).__name__ == "DropPath"


class _ChildrenAsLeaves(fx.Tracer):
    """Traces one module's own forward, each submodule a single call (a stage of blocks is not
    mistaken for a block because its first block adds the stage's input)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def _adds_its_input(module: nn.Module) -> bool:
    """Whether ``module``'s traced forward adds its (identity-passed) first input to another value."""
    try:
        graph = _ChildrenAsLeaves().trace(module)
    except Exception:  # noqa: BLE001 - anything fx cannot trace is simply not a block we can drop
        return False
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if not inputs:
        return False
    passed = {inputs[0]}
    for node in graph.nodes:
        if node.op == "call_module" and node.args and node.args[0] in passed and \
                _is_pass_through(module.get_submodule(node.target)):
            passed.add(node)
        elif node.op in ("call_function", "call_method") and node.target in (
                operator.add, operator.iadd, torch.add, "add", "add_"):
            operands = [a for a in node.args if isinstance(a, fx.Node)]
            if len(operands) == 2 and sum(a in passed for a in operands) == 1:
                return True
    return False


def residual_blocks(model: nn.Module) -> list[str]:
    """Modules that add their own input to what they compute - the blocks ``blocks:NAME`` may
    drop - in module order."""
    return [n for n, m in model.named_modules() if n and not isinstance(m, _LEAVES) and _adds_its_input(m)]


def transformer_blocks(model: nn.Module, blocks: list[str] | None = None) -> list[str]:
    """The residual blocks (``blocks``, else all of them) that are pre-norm transformer blocks with
    ``attn``, ``norm2`` and ``mlp`` (timm's ``Block``): those whose attention ``attention:`` drops."""
    return [n for n in (residual_blocks(model) if blocks is None else blocks)
            if all(hasattr(model.get_submodule(n), a) for a in ("attn", "norm2", "mlp"))]


def sync_heads(model: nn.Module) -> None:
    """After whole heads were pruned from (or restored to) q/k/v projections, set each attention's
    head count and width from its projection's size."""
    for m in attention_modules(model).values():
        m.num_heads = m.qkv.out_features // (3 * m.head_dim)
        if hasattr(m, "attn_dim"):
            m.attn_dim = m.num_heads * m.head_dim


def resolve_name(model: nn.Module, name: str, allowed: list[str], what: str, example: str) -> str:
    """``name`` as the model names it - also without the ``model.`` prefix of a wrapped timm or user
    model (``layer1.0`` for ``model.layer1.0``) - checked against ``allowed``; else the error
    "``what`` 'name'"."""
    for candidate in (name, f"model.{name}"):
        if candidate in allowed:
            return candidate
    shown = [a.removeprefix("model.") for a in allowed]
    hint = ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "") if shown else "this model has none"
    raise MimirError(f"{what} '{name}'", f"choose {example}: {hint}")
