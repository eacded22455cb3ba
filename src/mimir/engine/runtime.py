"""Where and how tensors are computed: device, precision, memory format, compilation.

One :class:`Runtime` describes it for a whole run, so the same code serves CPU and GPU: models and
batches go through :meth:`Runtime.model` / :meth:`Runtime.batch`, forward passes run under
:meth:`Runtime.autocast`, and fp16 training gets a gradient scaler from :meth:`Runtime.scaler`.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

import torch
from torch import nn

from mimir.errors import MimirError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Device, autocast precision, channels-last memory format and ``torch.compile`` for one run."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False

    @property
    def dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for forward passes (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 (disabled, a pass-through, otherwise)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def _channels_last_for(self, module: nn.Module) -> bool:
        return self.channels_last and any(isinstance(m, nn.Conv2d) for m in module.modules())

    def model(self, module: nn.Module) -> nn.Module:
        """Move ``module`` to the device (in place), channels-last when it is a CNN."""
        module.to(self.device)
        if self._channels_last_for(module):
            module.to(memory_format=torch.channels_last)
        return module

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch to the device without waiting (pinned source memory makes it asynchronous)."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        """e.g. ``cpu (AMD EPYC, 2 threads), fp32`` or ``cuda:0 (NVIDIA H100), bf16``."""
        if self.device.type == "cuda":
            what = torch.cuda.get_device_name(self.device)
        else:
            what = f"{_cpu_name()}, {torch.get_num_threads()} threads"
        return f"{self.device} ({what}), {self.precision}" + (", compiled" if self.compile else "")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def local_rank() -> int:
    """This process's GPU index under torchrun (``LOCAL_RANK``), 0 otherwise."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun ``auto`` and
    ``cuda`` mean this process's own GPU (``cuda:LOCAL_RANK``)."""
    spec = (spec or "auto").strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise MimirError(f"unknown device '{spec}'", "use --device auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise MimirError(f"--device {spec} needs a CUDA GPU, and none is available to torch",
                         "use --device cpu (or auto, which picks a GPU when there is one)")
    n = int(index) if index else local_rank()
    if n >= torch.cuda.device_count():
        raise MimirError(f"--device {spec}: there is no GPU {n} (this machine has {torch.cuda.device_count()})",
                         f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", n)


def resolve_runtime(device: str = "auto", precision: str = "fp32", compile: bool = False,
                    channels_last: bool = True) -> Runtime:
    """Validate the user's device and precision and build the :class:`Runtime`."""
    if precision not in PRECISIONS:
        raise MimirError(f"unknown precision '{precision}'", f"use --precision {' or '.join(PRECISIONS)}")
    dev = resolve_device(device)
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise MimirError(f"{torch.cuda.get_device_name(dev)} does not support bf16", "use --precision fp16 or fp32")
    return Runtime(dev, precision, channels_last, compile)
