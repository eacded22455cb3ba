"""Parameters, multiply-accumulates and CPU latency.

MACs (multiply-accumulates, what fvcore/thop call "FLOPs") are counted by Torch-Pruning's
``count_ops_and_params``; latency is the median of ``torch.utils.benchmark``'s timed runs.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from mimir.models._base import trace_target


@torch.no_grad()
def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(MACs for one image, number of parameters)."""
    was_training = model.training
    model.eval()
    macs, params = tp.utils.count_ops_and_params(trace_target(model), example_input[:1])
    model.train(was_training)
    return int(macs), int(params)


@torch.no_grad()
def latency_ms(model: nn.Module, example_input: torch.Tensor, min_run_time: float = 1.0,
               threads: int | None = None) -> float:
    """Median wall time of one forward pass on ``example_input``, in milliseconds."""
    from torch.utils import benchmark  # imported here: it drags in cpp_extension, which warns at import

    was_training = model.training
    model.eval()
    timer = benchmark.Timer("model(x)", globals={"model": model, "x": example_input},
                            num_threads=threads or torch.get_num_threads())
    model(example_input)  # warm-up
    ms = timer.blocked_autorange(min_run_time=min_run_time).median * 1e3
    model.train(was_training)
    return ms
