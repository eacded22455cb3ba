"""Architecture as data: the per-layer shapes and dropped blocks that turn a base model into a
pruned one. Stored in checkpoints instead of pickled modules, so files load with
``torch.load(..., weights_only=True)`` and a student is rebuilt from its base model's code.
"""

from __future__ import annotations

from torch import nn

from mimir.errors import MimirError
from mimir.prune.structure import residual_blocks, resolve_name, sync_heads

_RECORDED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def layer_shape(m: nn.Module) -> list[int] | None:
    """The recorded shape of a conv ([in, out, groups]), BN ([features]) or linear ([in, out])."""
    if isinstance(m, nn.Conv2d):
        return [m.in_channels, m.out_channels, m.groups]
    if isinstance(m, nn.BatchNorm2d):
        return [m.num_features]
    if isinstance(m, nn.Linear):
        return [m.in_features, m.out_features]
    return None


def describe(model: nn.Module, dropped_blocks: list[str]) -> dict:
    """``{"dropped_blocks": [...], "dropped_attention": [...], "layers": {name: shape}}`` for every
    conv, BN and linear layer (``dropped_attention``, the blocks left without attention, only when
    there is one)."""
    layers = {name: layer_shape(m) for name, m in model.named_modules() if isinstance(m, _RECORDED)}
    arch = {"dropped_blocks": list(dropped_blocks), "layers": layers}
    no_attention = [name for name, m in model.named_modules() if isinstance(m, MlpOnly)]
    if no_attention:
        arch["dropped_attention"] = no_attention
    return arch


def drop_blocks(model: nn.Module, names: list[str]) -> list[str]:
    """Replace each named residual block by an identity; returns the names as the model spells them."""
    droppable = residual_blocks(model)
    full = [resolve_name(model, n, droppable, "droppable block", "blocks that add their input to their output")
            for n in names]
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
    blocks = [n for n in residual_blocks(model)
              if all(hasattr(model.get_submodule(n), a) for a in ("attn", "norm2", "mlp"))]
    full = [resolve_name(model, n, blocks, "transformer block", "blocks with an attention and an MLP branch")
            for n in names]
    for name in full:
        model.set_submodule(name, MlpOnly(model.get_submodule(name)))
    return full


def _resized(m: nn.Module, shape: list[int]) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        cin, cout, groups = shape
        return nn.Conv2d(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation, groups,
                         m.bias is not None, m.padding_mode)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(shape[0], m.eps, m.momentum, m.affine, m.track_running_stats)
    return nn.Linear(shape[0], shape[1], m.bias is not None)


def apply(model: nn.Module, arch: dict) -> nn.Module:
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
            model.set_submodule(name, _resized(m, list(shape)))
    sync_heads(model)
    return model
