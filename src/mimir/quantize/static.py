"""Static post-training int8 quantization with ONNX Runtime's quantizer, for the CPU it runs on.

The fp32 ONNX file (:func:`mimir.export.onnx.onnx_bytes`: BatchNorm folded) gets QuantizeLinear /
DequantizeLinear pairs (the QDQ format every runtime reads: ONNX Runtime fuses them into int8
kernels, OpenVINO into its own): weights symmetric int8 per output channel, activations uint8
per tensor with ranges calibrated on the few samples (minmax, entropy or percentile). Unsigned
activations times signed weights is the x86 int8 fast path (signed activations ran 1.5x slower
than fp32 here); on a CPU without VNNI the AVX2 int8 instruction can saturate, so weights are then
quantized to 7 bits (``reduce_range``) - detected, not asked. LayerNorm, Softmax, GELU and the
reductions stay in fp32 (ONNX Runtime has no int8 kernel that keeps them accurate); the file
records which operators run in int8 and which do not.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.registry import QLinearOpsRegistry

from mimir.core import cpu_info
from mimir.errors import MimirError, first_line
from mimir.export.onnx import ort_session, with_metadata
from mimir.quantize.calibration import CALIBRATIONS, ImageReader

#: operators left in fp32 however the quantizer could treat them
FP32_OPS = ("LayerNormalization", "Softmax", "EmbedLayerNormalization")
QUANTIZED_OPS = tuple(sorted(op for op in QLinearOpsRegistry if op not in FP32_OPS))
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class QuantizeSettings:
    """How to quantize: the calibration method and the int8 choices (None: chosen for this CPU)."""

    calibration: str = "minmax"
    per_channel: bool = True
    reduce_range: bool | None = None
    percentile: float = 99.999

    def resolved(self) -> "QuantizeSettings":
        if self.calibration not in CALIBRATIONS:
            raise MimirError(f"unknown calibration method '{self.calibration}'",
                             f"use --calibration {', '.join(CALIBRATIONS)}")
        if self.reduce_range is not None:
            return self
        return QuantizeSettings(self.calibration, self.per_channel, not cpu_info().vnni, self.percentile)

    def to_dict(self) -> dict:
        return {"type": "int8", "format": "QDQ", "calibration": self.calibration, "weights": "int8 symmetric",
                "weight_granularity": "per channel" if self.per_channel else "per tensor",
                "activations": "uint8 per tensor", "reduce_range": self.reduce_range, "cpu": cpu_info().describe()}


def operator_precision(blob: bytes) -> dict[str, dict[str, int]]:
    """Operators of a QDQ model by precision: ``int8`` (one the quantizer handles whose inputs
    come from DequantizeLinear: the runtime fuses it into an int8 kernel) and ``fp32`` (the rest,
    e.g. LayerNorm and Softmax reading dequantized values; the Q/DQ nodes themselves not counted)."""
    proto = onnx.load_from_string(blob)
    from_dq = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    int8, fp32 = collections.Counter(), collections.Counter()
    for node in proto.graph.node:
        if node.op_type in _QDQ:
            continue
        quantized = node.op_type in QUANTIZED_OPS and any(i in from_dq for i in node.input)
        (int8 if quantized else fp32)[node.op_type] += 1
    return {"int8": dict(int8), "fp32": dict(fp32)}


def _unsupported_op(message: str, proto: onnx.ModelProto) -> str | None:
    """The operator a runtime or quantizer error names, if any."""
    ops = {n.op_type for n in proto.graph.node}
    for op in sorted(ops, key=len, reverse=True):
        if re.search(rf"\b{re.escape(op)}\b", message):
            return op
    return None


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer logs advice on the root logger and prints; neither helps a user here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize_onnx(fp32: bytes, calibration: np.ndarray | object, settings: QuantizeSettings = QuantizeSettings(),
                  metadata: dict | None = None) -> bytes:
    """The int8 QDQ version of the fp32 ONNX model ``fp32``, calibrated on ``calibration``
    (normalised images, a torch tensor or array), with ``metadata`` (the fp32 file's, plus how it
    was quantized). Checked to load and run in ONNX Runtime; an operator it cannot quantize or run
    is named in a one-line error."""
    s = settings.resolved()
    source = onnx.load_from_string(fp32)
    extra = {"CalibPercentile": s.percentile}
    with tempfile.TemporaryDirectory(prefix="mimir-quantize-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        try:
            with _quiet():
                quantize_static(src, dst, ImageReader(_tensor(calibration)), quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=s.per_channel,
                                reduce_range=s.reduce_range, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CALIBRATIONS[s.calibration],
                                extra_options=extra)
        except Exception as err:  # noqa: BLE001 - the quantizer raises many types for "cannot do this"
            raise _refusal(err, source, "ONNX Runtime's quantizer cannot quantize") from None
        proto = onnx.load(dst)
    blob = with_metadata(proto, {**(metadata or {}), "quantization": {**s.to_dict(), **operator_precision(
        proto.SerializeToString())}})
    try:
        session = ort_session(blob)
        session.run(None, {"input": _tensor(calibration)[:2]})
    except Exception as err:  # noqa: BLE001
        raise _refusal(err, source, "ONNX Runtime cannot run the int8 model of") from None
    return blob


def _tensor(images: object) -> np.ndarray:
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    return array.astype(np.float32, copy=False)


def _refusal(err: Exception, proto: onnx.ModelProto, what: str) -> MimirError:
    op = _unsupported_op(str(err), proto)
    named = f"its operator {op}" if op else "this model"
    return MimirError(f"{what} {named} ({type(err).__name__}: {first_line(err, 140)})",
                      "ship the fp32 model (mimir export), or replace the operator in the model")
