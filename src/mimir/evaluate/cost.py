"""Parameters and multiply-accumulates.

MACs (multiply-accumulates, what fvcore/thop call "FLOPs") are counted by Torch-Pruning's
``count_ops_and_params``.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from mimir.core import eval_mode, trace_target


@torch.no_grad()
def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(MACs for one image, number of parameters)."""
    with eval_mode(model):
        macs, params = tp.utils.count_ops_and_params(trace_target(model), example_input[:1])
    return int(macs), int(params)
