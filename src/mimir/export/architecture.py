"""Architecture as data: the per-layer shapes and dropped blocks that turn a base model into a
pruned one. Stored in checkpoints instead of pickled modules, so files load with
``torch.load(..., weights_only=True)`` and a student is rebuilt from its base model's code.
"""

from __future__ import annotations

import torch
from torch import nn

from mimir.errors import MimirError
from mimir.models.anatomy import (
    attention_modules,
    residual_blocks,
    resolve_name,
    set_head_geometry,
    sync_heads,
    transformer_blocks,
)

_RECORDED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.LayerNorm, nn.GroupNorm)


def layer_shape(m: nn.Module) -> list[int] | None:
    """The recorded shape of a conv ([in, out, groups]), BN ([features]), linear ([in, out]),
    LayerNorm ([normalized shape]) or GroupNorm ([groups, channels])."""
    if isinstance(m, nn.Conv2d):
        return [m.in_channels, m.out_channels, m.groups]
    if isinstance(m, nn.BatchNorm2d):
        return [m.num_features]
    if isinstance(m, nn.Linear):
        return [m.in_features, m.out_features]
    if isinstance(m, nn.LayerNorm):
        return list(m.normalized_shape)
    if isinstance(m, nn.GroupNorm):
        return [m.num_groups, m.num_channels]
    return None


def describe(model: nn.Module, dropped_blocks: list[str]) -> dict:
    """``{"dropped_blocks": [...], "dropped_attention": [...], "layers": {name: shape}, "attention":
    {name: [heads, head width]}}`` for every conv, BN and linear layer (``dropped_attention``, the
    blocks left without attention, only when there is one; ``attention`` only for a transformer)."""
    layers = {name: layer_shape(m) for name, m in model.named_modules() if isinstance(m, _RECORDED)}
    arch = {"dropped_blocks": list(dropped_blocks), "layers": layers, "tensors": _loose_tensors(model)}
    no_attention = [name for name, m in model.named_modules() if isinstance(m, MlpOnly)]
    if no_attention:
        arch["dropped_attention"] = no_attention
    attention = attention_modules(model)
    if attention:   # heads and their width: pruning may have narrowed every head instead of dropping some
        arch["attention"] = {name: [m.num_heads, m.head_dim] for name, m in attention.items()}
    return arch


def _loose_tensors(model: nn.Module) -> dict[str, list[int]]:
    """Shapes of the parameters and buffers held by modules other than the recorded layers (a
    ConvNeXt block's layer scale, a ViT's position embedding): pruning can shrink them too."""
    shapes = {}
    for name, m in model.named_modules():
        if not isinstance(m, _RECORDED):
            for key, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
                if t is not None and t.dim() > 0:
                    shapes[f"{name}.{key}" if name else key] = list(t.shape)
    return shapes


def droppable_blocks(model: nn.Module, names: list[str]) -> list[str]:
    """``names`` as the model spells them, each a residual block; else the one-line error."""
    if not names:   # nothing to find: loading a file traces no modules
        return []
    droppable = residual_blocks(model)
    return [resolve_name(model, n, droppable, "unknown or non-droppable block",
                         "blocks that add their input to their output") for n in names]


def drop_blocks(model: nn.Module, names: list[str]) -> list[str]:
    """Replace each named residual block by an identity; returns the names as the model spells them."""
    full = droppable_blocks(model, names)
    for name in full:
        model.set_submodule(name, nn.Identity())
    return full


class MlpOnly(nn.Module):
    """A transformer block without its attention: ``x + MLP(norm2(x))`` (with the block's own
    layer scale and drop path); parameter names stay the block's."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.norm2, self.mlp = block.norm2, block.mlp
        self.ls2 = getattr(block, "ls2", nn.Identity())
        self.drop_path2 = getattr(block, "drop_path2", nn.Identity())

    def forward(self, x):
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def drop_attention(model: nn.Module, names: list[str]) -> list[str]:
    """Remove the attention branch of each named transformer block (pre-norm blocks with
    ``attn``, ``norm2`` and ``mlp``, like timm's), keeping its MLP branch."""
    full = attention_blocks(model, names)
    for name in full:
        model.set_submodule(name, MlpOnly(model.get_submodule(name)))
    return full


def attention_blocks(model: nn.Module, names: list[str]) -> list[str]:
    """``names`` as the model spells them, each a transformer block; else the one-line error."""
    if not names:
        return []
    blocks = transformer_blocks(model)
    return [resolve_name(model, n, blocks, "unknown or non-transformer block",
                         "blocks with an attention and an MLP branch") for n in names]


def _reshape(m: nn.Module, shape: list[int]) -> None:
    """Give layer ``m`` the recorded ``shape`` in place (uninitialised tensors, filled by the state
    dict). In place, so the layer keeps its class: a timm ``BatchNormAct2d`` keeps its activation."""
    def resize(name: str, *size: int) -> None:
        tensor = getattr(m, name)
        if tensor is not None:
            new = torch.empty(size, dtype=tensor.dtype, device=tensor.device)
            setattr(m, name, nn.Parameter(new, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else new)

    if isinstance(m, nn.Conv2d):
        m.in_channels, m.out_channels, m.groups = shape
        resize("weight", m.out_channels, m.in_channels // m.groups, *m.kernel_size)
        resize("bias", m.out_channels)
    elif isinstance(m, nn.BatchNorm2d):
        m.num_features = shape[0]
        for name in ("weight", "bias", "running_mean", "running_var"):
            resize(name, shape[0])
    elif isinstance(m, nn.LayerNorm):
        m.normalized_shape = tuple(shape)
        resize("weight", *shape)
        resize("bias", *shape)
    elif isinstance(m, nn.GroupNorm):
        m.num_groups, m.num_channels = shape
        resize("weight", m.num_channels)
        resize("bias", m.num_channels)
    else:
        m.in_features, m.out_features = shape
        resize("weight", m.out_features, m.in_features)
        resize("bias", m.out_features)


def apply_architecture(model: nn.Module, arch: dict) -> nn.Module:
    """Reshape a freshly built base ``model`` in place to the architecture ``arch`` describes."""
    drop_blocks(model, arch.get("dropped_blocks", []))
    drop_attention(model, arch.get("dropped_attention", []))
    current = dict(model.named_modules())
    for name, shape in arch.get("layers", {}).items():
        m = current.get(name)
        if not isinstance(m, _RECORDED):
            raise MimirError(f"checkpoint describes a layer '{name}' the base model does not have",
                             "load it with the base model it was compressed from")
        if layer_shape(m) != list(shape):
            _reshape(m, list(shape))
    for name, shape in arch.get("tensors", {}).items():
        owner_name, _, key = name.rpartition(".")
        owner = current.get(owner_name)
        tensor = getattr(owner, key, None) if owner is not None else None
        if not isinstance(tensor, torch.Tensor):
            raise MimirError(f"checkpoint describes a tensor '{name}' the base model does not have",
                             "load it with the base model it was compressed from")
        if list(tensor.shape) != list(shape):
            new = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
            setattr(owner, key, nn.Parameter(new, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else new)
    geometry = arch.get("attention")
    if geometry is None:   # a file from before head geometry was recorded: whole heads were dropped
        sync_heads(model)
    else:
        attention = attention_modules(model)
        for name, (num_heads, head_dim) in geometry.items():
            if name not in attention:
                raise MimirError(f"checkpoint describes an attention '{name}' the base model does not have",
                                 "load it with the base model it was compressed from")
            set_head_geometry(attention[name], num_heads, head_dim)
    return model
