"""Parameters and multiply-accumulates.

MACs (multiply-accumulates, what fvcore/thop call "FLOPs") are counted by operator, not by module
type: PyTorch's :class:`~torch.utils.flop_counter.FlopCounterMode` sees every convolution, matrix
product and attention the forward pass runs, whether a ``nn.Conv2d``, a subclass of it with its own
``forward`` (timm's and third-party "same padding" convolutions), or ``F.conv2d``, ``F.linear``,
``torch.matmul`` and ``F.scaled_dot_product_attention`` called in a ``forward``. It counts FLOPs, two
per multiply-accumulate; elementwise work (BatchNorm, activations, additions, pooling) is not a
multiply-accumulate and is not counted.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mimir.core import eval_mode, trace_target


@torch.no_grad()
def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(MACs for one image, number of parameters)."""
    target = trace_target(model)
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        target(example_input[:1])
    params = sum(p.numel() for p in target.parameters())
    return int(counter.get_total_flops()) // 2, int(params)
