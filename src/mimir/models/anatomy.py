"""What a model is made of, read off its modules and traced forwards - never off where the model
came from, so the same layers give the same answer for a registry model, a timm model or a user's
own module: its residual blocks, transformer blocks, attention and head modules.

*Residual blocks* come from torch.fx: a module whose traced forward adds its own input (through
identity-like modules only) to something it computed, so removing it leaves a valid network.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from mimir.errors import MimirError

_PASS_THROUGH = (nn.Identity, nn.Dropout)   # and timm's DropPath, matched by name (see _is_pass_through)
_LEAVES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.LayerNorm, nn.ReLU, nn.GELU, nn.Identity, nn.Dropout)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Multi-head attention modules with a fused q/k/v projection (timm's ``Attention`` and alikes)."""
    return {n: m for n, m in model.named_modules()
            if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "num_heads", None), int)
            and isinstance(getattr(m, "head_dim", None), int)}


def model_family(model: nn.Module) -> str:
    """``transformer`` for a model with multi-head attention, else ``convolutional``: the families
    whose students train best with different recipes (``mir-plus``'s defaults)."""
    return "transformer" if attention_modules(model) else "convolutional"


def head_modules(model: nn.Module) -> set[nn.Module]:
    names = model.head_module_names() if hasattr(model, "head_module_names") else []
    return {sub for n in names for sub in model.get_submodule(n).modules()}


def body_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter outside the head (what mimicking trains)."""
    head = {id(p) for name in model.head_module_names() for p in model.get_submodule(name).parameters()}
    return [p for p in model.parameters() if id(p) not in head]


def layer_groups(model: nn.Module, decay: float) -> list[dict]:
    """The body's parameters as optimiser groups with a learning-rate scale that decays with depth
    (layer-wise learning-rate decay, as in BEiT). The body is cut, in parameter order, into units:
    each outermost residual block, and each stretch of parameters between them (the stem or patch
    embedding, a downsampling block, the final norm); the last unit gets scale 1, the one before
    ``decay``, the one before that ``decay ** 2``, and so on."""
    found = residual_blocks(model)
    blocks = [n for n in found if not any(n.startswith(o + ".") for o in found)]
    body = {id(p) for p in body_parameters(model)}
    units: dict[str, list[nn.Parameter]] = {}
    last = ""
    for name, p in model.named_parameters():
        if id(p) not in body:
            continue
        block = next((b for b in blocks if name.startswith(b + ".")), None)
        if block is not None:
            last = block
        units.setdefault(block if block is not None else f"after:{last}", []).append(p)
    top = len(units) - 1
    return [{"params": ps, "lr_scale": decay ** (top - i)} for i, ps in enumerate(units.values())]


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


def sync_heads(model: nn.Module, narrowed: bool = False) -> None:
    """After pruning a q/k/v projection, tell each attention its geometry: whole heads removed (the
    default: the head count from the projection's size), or every head ``narrowed`` (the width of a
    head from it). A narrowed head's scale is 1/sqrt(its new width), as PyTorch's fused attention
    computes it, so that the fused and the unfused path agree."""
    for m in attention_modules(model).values():
        if narrowed:
            set_head_geometry(m, m.num_heads, m.qkv.out_features // (3 * m.num_heads))
        else:
            set_head_geometry(m, m.qkv.out_features // (3 * m.head_dim), m.head_dim)


def set_head_geometry(attention: nn.Module, num_heads: int, head_dim: int) -> None:
    changed = head_dim != attention.head_dim
    attention.num_heads, attention.head_dim = num_heads, head_dim
    if hasattr(attention, "attn_dim"):
        attention.attn_dim = num_heads * head_dim
    if changed and hasattr(attention, "scale"):
        attention.scale = head_dim ** -0.5


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
