"""Helpers for the layer-wise methods (FSKD, CD): which convs were pruned, in what order, with
which BatchNorm, and what goes in and out of them on the few samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mimir.core import DataConfig, eval_mode, model_device
from mimir.data.transforms import center_crop, normalize
from mimir.errors import MimirError
from mimir.prune.structure import dependency_graph


@dataclass(frozen=True)
class PrunedConv:
    conv: str              # dotted name of the conv (same in teacher and student)
    bn: str | None         # the BatchNorm that directly follows it, if any
    kept_out: list[int]    # teacher output channels the student kept
    kept_in: list[int]     # teacher input channels the student kept


def pruned_convs(teacher: nn.Module, student: nn.Module, arch: dict, example: torch.Tensor, method: str) -> list[PrunedConv]:
    """Every plain conv whose input or output channels were pruned, in execution order, with the
    BatchNorm that consumes its output alone (read off Torch-Pruning's traced graph)."""
    kept = arch.get("kept_channels", {"out": {}, "in": {}})
    names = {m: n for n, m in student.named_modules()}
    order: list[str] = []
    handles = [m.register_forward_hook(lambda mod, a, o: order.append(names[mod]))
               for m in student.modules() if isinstance(m, nn.Conv2d)]
    example = example.to(model_device(student))
    try:
        with eval_mode(student):
            with torch.no_grad():
                student(example)
            for h in handles:
                h.remove()
            graph = dependency_graph(student, example)
    finally:
        for h in handles:
            h.remove()
    follows: dict[str, str] = {}
    for module, node in graph.module2node.items():
        if isinstance(module, nn.Conv2d) and module in names and len(node.outputs) == 1 \
                and isinstance(node.outputs[0].module, nn.BatchNorm2d) and node.outputs[0].module in names:
            follows[names[module]] = names[node.outputs[0].module]
    t_mods = dict(teacher.named_modules())
    layers = []
    for name in dict.fromkeys(order):
        if name not in kept["out"] and name not in kept["in"]:
            continue
        conv = t_mods[name]
        if conv.groups != 1:
            continue
        layers.append(PrunedConv(name, follows.get(name), kept["out"].get(name, list(range(conv.out_channels))),
                                 kept["in"].get(name, list(range(conv.in_channels)))))
    if not layers:
        raise MimirError(f"method '{method}' refits pruned conv layers, and this pruning scheme pruned none",
                         "use --prune channels:R")
    return layers


def capture(model: nn.Module, layer: str, images: torch.Tensor, config: DataConfig, batch_size: int = 250,
            want: str = "output") -> torch.Tensor:
    """The input or output of ``layer`` on all ``images`` (eval mode, no augmentation, no grad)."""
    module = model.get_submodule(layer)
    parts: list[torch.Tensor] = []

    def hook(mod, args, output):
        parts.append((args[0] if want == "input" else output).detach())

    handle = module.register_forward_hook(hook)
    device = model_device(model)
    try:
        with eval_mode(model), torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = center_crop(images[start:start + batch_size], config.input_size).to(device)
                model(normalize(batch, config))
    finally:
        handle.remove()
    return torch.cat(parts)
