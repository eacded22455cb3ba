"""Parameters, multiply-accumulates and CPU latency.

MACs (multiply-accumulates, what fvcore/thop call "FLOPs") are counted by Torch-Pruning's
``count_ops_and_params``; latency is the median of timed runs (see :mod:`mimir.evaluate.latency`,
which also times a student against its teacher).
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


def latency_ms(model: nn.Module, example_input: torch.Tensor, seconds: float = 1.0, threads: int = 1) -> float:
    """Median wall time of one eval-mode forward pass on ``example_input`` (CPU, PyTorch eager,
    ``threads`` threads), in milliseconds."""
    from mimir.evaluate.latency import _torch_call, time_interleaved, torch_threads

    with eval_mode(model), torch_threads(threads):
        return time_interleaved({"model": _torch_call(model, example_input)}, seconds=seconds)["model"].median_ms
