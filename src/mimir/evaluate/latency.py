"""Latency of a student against its teacher, in PyTorch and in ONNX Runtime.

A shared machine makes single latency figures swing 2-3x between calls, but it slows two models
timed *in turns* alike. So teacher and student are timed interleaved in one process (rounds of
teacher, student, student, teacher, ...), after a warm-up, until both have at least ``rounds``
samples and ``seconds`` of timing; each sample averages enough calls to last a few milliseconds.
The median of the samples is the latency, the interquartile range its spread, and the ratio of the
two medians is what compression bought. ONNX Runtime is called with its input and output bound
beforehand (IOBinding), so that Python's per-call overhead, the same for both models, does not
water the ratio down.

A model is an ``nn.Module`` or the bytes of an ONNX file (an int8 model from
:mod:`mimir.quantize`, which only the ONNX runtimes run). OpenVINO (``pip install
'mimir[openvino]'``) runs the same ONNX files, int8 QDQ included, through its own CPU plugin
(one inference request, ``LATENCY`` hint, fp32 inference precision, ``threads`` threads).
"""

from __future__ import annotations

import copy
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from mimir.core import DataConfig, eval_mode
from mimir.errors import MimirError
from mimir.export.onnx import onnx_bytes, ort_session

RUNTIMES = ("torch", "onnxruntime", "openvino")
ONNX_RUNTIMES = ("onnxruntime", "openvino")   # those that run an ONNX file (an int8 model too)
Model = nn.Module | bytes                     # a PyTorch model, or an ONNX file's bytes


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median and quartiles of the timed samples."""

    median_ms: float
    q1_ms: float
    q3_ms: float

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @classmethod
    def of(cls, samples: list[float]) -> "Timing":
        q1, median, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
        return cls(median, q1, q3)


@contextmanager
def torch_threads(threads: int):
    """``torch.set_num_threads(threads)`` for the block, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_interleaved(calls: dict[str, Callable[[], object]], rounds: int = 15, seconds: float = 1.0,
                     sample_ms: float = 5.0) -> dict[str, Timing]:
    """Time every call in turns (the order alternates each round); see the module docstring."""
    repeats = {}
    for name, call in calls.items():
        call()                                   # warm-up (first-run allocations, ORT's lazy set-up)
        started = time.perf_counter()
        call()
        once = max(time.perf_counter() - started, 1e-6)
        repeats[name] = max(1, round(sample_ms / 1e3 / once))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    started = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - started < seconds:
        for name in (names if done % 2 == 0 else names[::-1]):
            call, n = calls[name], repeats[name]
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            samples[name].append((time.perf_counter() - t0) / n * 1e3)
        done += 1
    return {name: Timing.of(s) for name, s in samples.items()}


def _example(config: DataConfig, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, config.in_chans, config.input_size, config.input_size, generator=generator)


def _torch_call(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call():
        with torch.inference_mode():
            return model(x)
    return call


def _ort_call(session, x: torch.Tensor) -> Callable[[], object]:
    """One run with the input and output bound once beforehand (as a serving loop does), so that
    what is timed is the model, not Python's conversion of the input."""
    binding = session.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(x.numpy())
    binding.bind_ortvalue_input("input", value)
    binding.bind_output("logits")
    return lambda: session.run_with_iobinding(binding)


def openvino():
    """The ``openvino`` module, or a one-line error saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise MimirError("OpenVINO is not installed", "pip install 'mimir[openvino]' (or openvino), or use "
                                                      "--runtime onnxruntime") from None
    return openvino


def _openvino_call(blob: bytes, x: torch.Tensor, threads: int) -> Callable[[], object]:
    """One synchronous OpenVINO inference with the input set once beforehand."""
    ov = openvino()
    core = ov.Core()
    model = core.read_model(blob, ov.Tensor(np.empty(0, dtype=np.uint8)))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x.numpy()))
    return request.infer


def time_models(models: dict[str, Model], config: DataConfig, runtime: str, batch: int, threads: int = 1,
                seconds: float = 1.0, sessions: dict | None = None) -> dict[str, Timing]:
    """Every model timed in turns on one random batch, on the CPU: PyTorch eager (eval mode, fp32,
    contiguous memory), ONNX Runtime or OpenVINO (the files :func:`mimir.export.onnx.onnx_bytes`
    writes: BatchNorm folded, every graph optimisation; or the given ONNX bytes). ONNX models are
    left out of a PyTorch timing. ``sessions`` caches the ONNX files and ONNX Runtime sessions
    across calls."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}")
    x = _example(config, batch)
    sessions = {} if sessions is None else sessions
    if runtime == "torch":
        calls = {k: _torch_call(m, x) for k, m in models.items() if isinstance(m, nn.Module)}
    else:
        for k, m in models.items():
            if ("onnx", k) not in sessions:
                sessions[("onnx", k)] = m if isinstance(m, bytes) else onnx_bytes(m, config)
        if runtime == "onnxruntime":
            for k in models:
                if (k, threads) not in sessions:
                    sessions[(k, threads)] = ort_session(sessions[("onnx", k)], threads)
            calls = {k: _ort_call(sessions[(k, threads)], x) for k in models}
        else:
            calls = {k: _openvino_call(sessions[("onnx", k)], x, threads) for k in models}
    with torch_threads(threads):
        return time_interleaved(calls, seconds=seconds)


def _cpu_copy(model: Model) -> Model:
    return model if isinstance(model, bytes) else copy.deepcopy(model).cpu().float().eval()


def compare_latency(student: Model, teacher: Model, config: DataConfig,
                    runtimes: Iterable[str] = ("torch", "onnxruntime"), batches: Iterable[int] = (1, 64),
                    threads: int = 1, seconds: float = 1.0, others: dict[str, Model] | None = None) -> dict:
    """Teacher and student latency, interleaved, for every runtime and batch size (see
    :func:`time_models`); ``others`` (e.g. ``{"student_int8": bytes, "teacher_int8": bytes}``) are
    timed in the same turns. A runtime that cannot run the student (PyTorch, an ONNX student) is
    left out.

    Returns ``{"threads": N, "runtimes": {runtime: {str(batch): {"teacher_ms", "student_ms",
    "teacher_iqr_ms", "student_iqr_ms", "latency_ratio", and per other model NAME: "NAME_ms",
    "NAME_iqr_ms", "NAME_ratio" (against the teacher)}}}}``."""
    models = {"teacher": _cpu_copy(teacher), "student": _cpu_copy(student),
              **{k: _cpu_copy(m) for k, m in (others or {}).items()}}
    out: dict = {"threads": threads, "runtimes": {}}
    sessions: dict = {}
    for runtime in runtimes:
        if runtime == "torch" and isinstance(models["student"], bytes):
            continue
        per_batch = {}
        for batch in batches:
            timing = time_models(models, config, runtime, batch, threads, seconds, sessions)
            t = timing["teacher"]
            row = {}
            for name, m in timing.items():
                row[f"{name}_ms"] = round(m.median_ms, 4)
                row[f"{name}_iqr_ms"] = round(m.iqr_ms, 4)
                if name not in ("teacher", "student"):
                    row[f"{name}_ratio"] = round(m.median_ms / t.median_ms, 4)
            row["latency_ratio"] = round(timing["student"].median_ms / t.median_ms, 4)
            per_batch[str(batch)] = row
        out["runtimes"][runtime] = per_batch
    return out


def latency_ms(model: nn.Module, example_input: torch.Tensor, seconds: float = 1.0, threads: int = 1) -> float:
    """Median wall time of one eval-mode forward pass on ``example_input`` (CPU, PyTorch eager,
    ``threads`` threads), in milliseconds."""
    with eval_mode(model), torch_threads(threads):
        return time_interleaved({"model": _torch_call(model, example_input)}, seconds=seconds)["model"].median_ms
