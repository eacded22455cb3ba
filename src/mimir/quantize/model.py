"""Quantize a model: export it, calibrate on the few samples, recover what int8 loses, check it."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import onnx
import torch
from torch import nn

from mimir.core import DataConfig
from mimir.data import LabeledImages, UnlabeledImages
from mimir.engine import Runtime
from mimir.engine.views import is_small
from mimir.errors import MimirError
from mimir.export.onnx import onnx_bytes, with_metadata
from mimir.quantize.calibration import calibration_views, unlabeled
from mimir.quantize.recovery import RECOVERIES, MimicSettings, bias_correction, mimic_recovery
from mimir.quantize.static import QuantizeSettings, operator_precision, quantize_onnx

QUANTIZE = ("int8",)
#: most calibration images for inputs above 64 px: ONNX Runtime's entropy and percentile calibrators
#: keep every activation of every image in memory (tens of MB per image for a ResNet-50)
LARGE_INPUT_LIMIT = {"minmax": 512, "entropy": 128, "percentile": 128}


@dataclass
class Quantized:
    """An int8 ONNX model and how it was made."""

    blob: bytes
    settings: QuantizeSettings
    recovery: str
    fp32_size: int                                 # the fp32 ONNX file's size, for comparison
    info: dict = field(default_factory=dict)      # how it was quantized (the file's "quantization" metadata)
    seconds: dict = field(default_factory=dict)   # calibrate (incl. export), recover

    @property
    def size(self) -> int:
        return len(self.blob)


def quantize_model(model: nn.Module, config: DataConfig, samples: UnlabeledImages | LabeledImages, *,
                   settings: QuantizeSettings = QuantizeSettings(), recovery: str = "none",
                   teacher: nn.Module | None = None, seed: int = 0, metadata: dict | None = None,
                   mimic: MimicSettings = MimicSettings(), runtime: Runtime | None = None,
                   progress: bool = False) -> Quantized:
    """``model`` as an int8 QDQ ONNX model calibrated on ``samples`` (their images only), with
    ``recovery`` none, bias or mimic (which mimics ``teacher``'s pre-pool map; default: the
    model's own fp32 map). ``metadata`` goes into the file with how it was quantized."""
    if recovery not in RECOVERIES:
        raise MimirError(f"unknown quantization recovery '{recovery}'", f"use one of: {', '.join(RECOVERIES)}")
    settings = settings.resolved()
    images = unlabeled(samples)
    net = copy.deepcopy(model).cpu().float().eval()   # the caller's model stays where and as it was
    calibration = calibration_views(images, config, seed,   # evaluation views first: those are kept
                                    limit=None if is_small(config) else LARGE_INPUT_LIMIT[settings.calibration])
    seconds: dict = {}
    details: dict = {}
    if recovery == "mimic":
        started = time.perf_counter()
        net, log = mimic_recovery(net, teacher if teacher is not None else net, images, config, calibration,
                                  mimic, 7 if settings.reduce_range else 8, seed, runtime, progress)
        seconds["recover"] = time.perf_counter() - started
        details = {"iterations": mimic.iterations, "lr": mimic.lr, "final_loss": log.losses[-1] if log.losses else None}
    started = time.perf_counter()
    fp32 = onnx_bytes(net, config)
    with torch.no_grad():
        blob = quantize_onnx(fp32, calibration, settings)
    seconds["calibrate"] = time.perf_counter() - started
    proto = onnx.load_from_string(blob)
    if recovery == "bias":
        started = time.perf_counter()
        proto, layers = bias_correction(blob, fp32, calibration.numpy())
        seconds["recover"] = time.perf_counter() - started
        details = {"layers_corrected": layers}
    record = {**(metadata or {}), "quantization": {
        **settings.to_dict(), "recovery": recovery, **({"recovery_details": details} if details else {}),
        "calibration_images": len(calibration), "samples": len(images), "seed": seed,
        **operator_precision(blob)}}
    return Quantized(with_metadata(proto, record), settings, recovery, len(fp32), record["quantization"], seconds)
