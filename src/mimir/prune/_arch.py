"""Architecture as data: the per-layer shapes and dropped blocks that turn a base model into a
pruned one. Stored in checkpoints instead of pickled modules, so files load with
``torch.load(..., weights_only=True)`` and a student is rebuilt from its base model's code.
"""

from __future__ import annotations

from torch import nn

from mimir.errors import MimirError

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
    """``{"dropped_blocks": [...], "layers": {name: shape}}`` for every conv, BN and linear layer."""
    layers = {name: layer_shape(m) for name, m in model.named_modules() if isinstance(m, _RECORDED)}
    return {"dropped_blocks": list(dropped_blocks), "layers": layers}


def drop_blocks(model: nn.Module, names: list[str]) -> None:
    """Replace each named residual block by an identity (after checking it may be dropped)."""
    droppable = model.droppable_blocks() if hasattr(model, "droppable_blocks") else []
    for name in names:
        if name not in droppable:
            hint = ", ".join(droppable) if droppable else "this model has none"
            raise MimirError(f"unknown or non-droppable block '{name}'",
                             f"choose blocks whose input and output shapes agree: {hint}")
        model.set_submodule(name, nn.Identity())


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
    current = dict(model.named_modules())
    for name, shape in arch.get("layers", {}).items():
        m = current.get(name)
        if not isinstance(m, _RECORDED):
            raise MimirError(f"checkpoint describes a layer '{name}' the base model does not have",
                             "load it with the base model it was compressed from")
        if layer_shape(m) != list(shape):
            model.set_submodule(name, _resized(m, list(shape)))
    return model
