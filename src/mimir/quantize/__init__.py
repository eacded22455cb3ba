"""int8 post-training quantization: ONNX Runtime's static quantizer calibrated on the few samples,
and two label-free ways to recover what it loses (bias correction, fake-quantized mimicking)."""

from mimir.quantize.calibration import CALIBRATIONS, calibration_views
from mimir.quantize.model import QUANTIZE, Quantized, quantize_model
from mimir.quantize.recovery import RECOVERIES, MimicSettings, bias_correction, fake_quant_mse, mimic_recovery
from mimir.quantize.static import FP32_OPS, QuantizeSettings, operator_precision, quantize_onnx

__all__ = ["CALIBRATIONS", "FP32_OPS", "QUANTIZE", "RECOVERIES", "MimicSettings", "QuantizeSettings", "Quantized",
           "bias_correction", "calibration_views", "fake_quant_mse", "mimic_recovery", "operator_precision",
           "quantize_model", "quantize_onnx"]
