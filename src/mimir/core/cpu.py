"""What the CPU a model will run on can do fast: its vector width and its int8 instructions.

ONNX Runtime (MLAS) and OpenVINO pick their convolution kernels by these: fp32 convolutions work
on blocks of 8 channels with AVX2 and 16 with AVX-512, and the int8 path multiplies unsigned
activations by signed weights with one instruction where the CPU has VNNI (AVX512-VNNI or
AVX-VNNI); without it the AVX2 int8 instruction (``vpmaddubsw``) adds pairs of products in 16 bits
and can saturate, which is why ONNX Runtime's quantizer offers ``reduce_range`` (7-bit weights).
The flags are read from ``/proc/cpuinfo`` (Linux) and can be overridden with the environment
variable ``MIMIR_CPU_FLAGS`` (comma-separated, e.g. ``avx2`` to prepare a model for an older CPU).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    """The model name and the instruction-set flags that matter for inference kernels."""

    name: str
    flags: frozenset[str]

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def vnni(self) -> bool:
        """Whether int8 dot products run in one instruction without saturation (VNNI or AMX)."""
        return any(f in self.flags for f in _VNNI)

    @property
    def conv_block(self) -> int:
        """The channel block fp32 convolution kernels work in: 16 (AVX-512), 8 (AVX2), else 4 (SSE/NEON)."""
        return 16 if self.avx512 else 8 if self.avx2 else 4

    def describe(self) -> str:
        isa = "AVX-512" if self.avx512 else "AVX2" if self.avx2 else platform.machine() or "unknown ISA"
        return f"{self.name} ({isa}{', VNNI' if self.vnni else ''})"


def _read_cpuinfo() -> tuple[str, set[str]]:
    name, flags = platform.processor() or platform.machine() or "unknown CPU", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name, flags


@lru_cache(maxsize=1)
def _detected() -> CpuInfo:
    name, flags = _read_cpuinfo()
    return CpuInfo(name, frozenset(flags))


def cpu_info() -> CpuInfo:
    """This machine's CPU (``MIMIR_CPU_FLAGS`` replaces the detected flags when set)."""
    detected = _detected()
    override = os.environ.get("MIMIR_CPU_FLAGS")
    if override is None:
        return detected
    return CpuInfo(detected.name, frozenset(f.strip().lower() for f in override.split(",") if f.strip()))
