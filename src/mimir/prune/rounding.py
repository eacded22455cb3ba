"""How many channels a pruned layer keeps once rounded for the CPU it will run on.

ONNX Runtime (MLAS) runs fp32 convolutions in blocks of channels - 16 with AVX-512, 8 with AVX2
(:attr:`mimir.core.cpu.CpuInfo.conv_block`) - and a layer whose width is not a multiple of its
CPU's block leaves that fast path: an EfficientNet-Lite pruned by ``channels:0.3`` without
rounding keeps 0.67 of its teacher's MACs but runs 1.8x *slower* than the teacher in ONNX Runtime
on an AVX-512 CPU (depthwise layers of odd widths), and 0.70 of its latency rounded to 16
(``docs/DEPLOY.md``).

So a layer keeps the nearest multiple of K (``round_to``, at least K); a layer that keeps fewer
than K channels keeps the nearest multiple of 8 instead (at least 8, at most its width; K below 8
rounds to K), and a layer so narrow that rounding would keep all of it keeps the unrounded width
(a user's 8-channel layer pruned by half keeps 4: the pruning asked for is never undone). Rounding such a layer up to a whole block of 16 cost time on AVX-512 in the
measurement: ResNet-20 ``channels:0.5`` ran at 0.72 of its teacher's ONNX Runtime latency with its
8-channel layers and at 0.79 with them rounded to 16, while the 8-wide layers' MACs are half of
16's. ``round_to`` 1 turns rounding off.

The default (a recipe's ``round_to`` left unset) is :func:`auto_round_to`: this CPU's block, or the
one ``MIMIR_CPU_FLAGS`` names (``avx2``: prepare a model for an AVX2 CPU on an AVX-512 one). A run
records the value it resolved, so its saved recipe makes the same architecture on any CPU.
"""

from __future__ import annotations

from mimir.core import CpuInfo, cpu_info

#: the block a layer that keeps fewer than ``round_to`` channels is rounded to (AVX2's)
SMALL_BLOCK = 8


def auto_round_to(cpu: CpuInfo | None = None) -> int:
    """The default ``round_to``: the channel block fp32 convolutions run in on ``cpu`` (default: this
    machine's, or ``MIMIR_CPU_FLAGS``'): 16 with AVX-512, 8 with AVX2, 4 otherwise."""
    return (cpu or cpu_info()).conv_block


def resolve_round_to(round_to: int | None, cpu: CpuInfo | None = None) -> int:
    """``round_to`` as given, or :func:`auto_round_to` when it is None (the recipe's default)."""
    return auto_round_to(cpu) if round_to is None else round_to


def rounded(keep: int, channels: int, round_to: int | None) -> int:
    """``keep`` of a layer's ``channels`` rounded as the module docstring says (None or 1: ``keep``)."""
    if not round_to or round_to == 1:
        return keep
    step = round_to if keep >= round_to else min(round_to, SMALL_BLOCK)
    result = min(channels, max(step, step * round(keep / step)))
    # a layer too narrow to round without undoing its pruning (8 channels halved: 4, rounded back to 8)
    # keeps what was asked: rounding may cost a few channels of the cut, never the whole of it
    return keep if result >= channels > keep else result
