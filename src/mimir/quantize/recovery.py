"""Getting back what int8 loses, label-free, on the same few images.

Two ways, compared on the same samples in docs/QUANTIZE.md:

- ``bias`` - empirical bias correction (Nagel et al., "Data-Free Quantization Through Weight
  Equalization and Bias Correction", ICCV 2019; NNCF's BiasCorrection): rounding the weights
  shifts the mean of each output channel; the shift, measured on the calibration images as the
  difference between the fp32 model's and the int8 model's convolution outputs, is added back to
  the int8 bias. Done on the int8 file itself, layer by layer in graph order (a correction upstream
  changes what reaches the layers below it), with nothing trained.
- ``mimic`` - MiR's own idea applied to quantization: the student is trained a little further
  with fake-quantized weights (symmetric int8 per output channel, as the file stores them) and
  fake-quantized activations (uint8 per tensor at the input of every convolution and linear layer,
  ranges calibrated on the samples and then fixed) to reproduce the fp32 teacher's pre-pool
  feature map on augmented views of the few samples (straight-through estimator, BatchNorm frozen:
  a frozen BatchNorm scales each output channel, and per-channel quantization commutes with that
  scaling, so quantizing the unfolded weights is quantizing the folded ones the file holds). The
  trained fp32 weights are then quantized as usual; their rounding is the one they were trained for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import parametrize

from mimir.core import DataConfig, eval_mode
from mimir.data import UnlabeledImages
from mimir.engine import Runtime, Task, TrainConfig, TrainLog, train
from mimir.models.anatomy import body_parameters

RECOVERIES = ("none", "bias", "mimic")


# ----------------------------------------------------------------------------- bias correction
def _weight_of(node: onnx.NodeProto, producer: dict) -> str | None:
    """The name of a Conv/Gemm's fp32 weight (through its DequantizeLinear in a QDQ model)."""
    dq = producer.get(node.input[1])
    if dq is not None and dq.op_type == "DequantizeLinear":
        return dq.input[0].removesuffix("_quantized")
    return node.input[1]


def _layers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Conv and Gemm nodes by the name of their weight (the same in the fp32 and the int8 model,
    where output names are not: the quantizer gives a Conv the name of the ReLU it absorbs)."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    return {_weight_of(n, producer): n for n in proto.graph.node if n.op_type in ("Conv", "Gemm")}


def _bias_targets(proto: onnx.ModelProto) -> list[tuple[str, str, str, str]]:
    """(weight name, output, int32 bias initializer, its scale initializer) of every Conv/Gemm with a quantized bias."""
    inits = {i.name for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    targets = []
    for weight, node in _layers(proto).items():
        if len(node.input) > 2:
            dq = producer.get(node.input[2])
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits and dq.input[1] in inits:
                targets.append((weight, node.output[0], dq.input[0], dq.input[1]))
    return targets


def _channel_means(proto: onnx.ModelProto, names: list[str], images: np.ndarray, batch: int = 64) -> dict:
    """Per-channel means (axis 1) of the named tensors over ``images``, in ONNX Runtime (reference
    kernels: a QDQ model computes exactly what its int8 kernels would)."""
    probe = copy.deepcopy(proto)
    del probe.graph.output[:]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    count = 0
    for start in range(0, len(images), batch):
        outs = session.run(names, {"input": images[start:start + batch]})
        for name, out in zip(names, outs):
            axes = tuple(a for a in range(out.ndim) if a != 1)
            per = out.astype(np.float64).sum(axis=axes) / (out.size / out.shape[1])
            sums[name] = sums.get(name, 0.0) + per * len(out)
        count += len(outs[0])
    return {name: s / count for name, s in sums.items()}


def bias_correction(int8: bytes, fp32: bytes, images: np.ndarray, limit: int = 256) -> tuple[onnx.ModelProto, int]:
    """The int8 model with every quantized Conv/Gemm bias corrected (see the module docstring),
    layer by layer in graph order (each correction measured with the layers above it already
    corrected), on at most ``limit`` of the calibration images; returns the model and the number
    of layers corrected."""
    proto = onnx.load_from_string(int8)
    reference = _layers(onnx.load_from_string(fp32))
    targets = [t for t in _bias_targets(proto) if t[0] in reference]
    if not targets:
        return proto, 0
    images = images[:limit]
    means = _channel_means(onnx.load_from_string(fp32), [reference[t[0]].output[0] for t in targets], images)
    inits = {i.name: i for i in proto.graph.initializer}
    for _weight, out, bias_name, scale_name in targets:
        got = _channel_means(proto, [out], images)[out]
        bias = numpy_helper.to_array(inits[bias_name]).astype(np.int64)
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float64)
        shift = np.round((means[reference[_weight].output[0]] - got) / scale).astype(np.int64)
        fixed = np.clip(bias + shift, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        inits[bias_name].CopyFrom(numpy_helper.from_array(fixed, bias_name))
    return proto, len(targets)


# ----------------------------------------------------------------------------- fake quantization
class _SymmetricWeights(nn.Module):
    """Per-output-channel symmetric int8 fake quantization of a weight (ONNX Runtime's grid:
    ``scale = max|w| / ((qmax - qmin) / 2)``), straight-through gradient."""

    def __init__(self, bits: int = 8) -> None:
        super().__init__()
        self.qmin, self.qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        absmax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
        scale = (absmax * 2 / (self.qmax - self.qmin)).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, self.qmin, self.qmax)


def _quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@torch.no_grad()
def _input_ranges(model: nn.Module, layers: dict[str, nn.Module], images: torch.Tensor, batch: int = 128
                  ) -> dict[str, tuple[float, float]]:
    """The min and max of every layer's input over ``images`` (always including 0, as ONNX Runtime's minmax)."""
    ranges: dict[str, list[float]] = {n: [0.0, 0.0] for n in layers}

    def hook(name):
        def record(module, args):
            x = args[0]
            ranges[name][0] = min(ranges[name][0], float(x.min()))
            ranges[name][1] = max(ranges[name][1], float(x.max()))
        return record
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    try:
        with eval_mode(model):
            for start in range(0, len(images), batch):
                model(images[start:start + batch])
    finally:
        for h in handles:
            h.remove()
    return {n: (lo, hi) for n, (lo, hi) in ranges.items()}


class FakeQuantized:
    """A model with fake-quantized weights and layer inputs, until :meth:`remove` (the latent fp32
    weights stay the trained ones)."""

    def __init__(self, model: nn.Module, calibration: torch.Tensor, weight_bits: int = 8) -> None:
        self.model = model
        self.layers = _quantized_layers(model)
        self.ranges = _input_ranges(model, self.layers, calibration)
        self.handles = []
        for name, module in self.layers.items():
            lo, hi = self.ranges[name]
            scale = max(hi - lo, 1e-8) / 255.0
            zero = int(round(-lo / scale))
            self.handles.append(module.register_forward_pre_hook(
                lambda m, args, s=scale, z=zero: (torch.fake_quantize_per_tensor_affine(args[0], s, z, 0, 255),)))
            parametrize.register_parametrization(module, "weight", _SymmetricWeights(weight_bits))

    def remove(self) -> nn.Module:
        for h in self.handles:
            h.remove()
        for module in self.layers.values():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        return self.model


@dataclass
class MimicSettings:
    """The recovery run: a short, gentle continuation of the mimic training."""

    iterations: int = 200
    lr: float = 0.002
    batch_size: int = 64


@torch.no_grad()
def fake_quant_mse(model: nn.Module, teacher: nn.Module, calibration: torch.Tensor, images: torch.Tensor,
                   weight_bits: int = 8) -> float:
    """The mimic loss of ``model`` fake-quantized (ranges from ``calibration``) on normalised ``images``:
    what recovery lowers."""
    fq = FakeQuantized(copy.deepcopy(model).eval(), calibration, weight_bits)
    with eval_mode(teacher):
        loss = F.mse_loss(fq.model.forward_features(images), teacher.forward_features(images))
    fq.remove()
    return float(loss)


def mimic_recovery(model: nn.Module, teacher: nn.Module, samples: UnlabeledImages, config: DataConfig,
                   calibration: torch.Tensor, settings: MimicSettings = MimicSettings(), weight_bits: int = 8,
                   seed: int = 0, runtime: Runtime | None = None, progress: bool = False) -> tuple[nn.Module, TrainLog]:
    """A copy of ``model`` trained to mimic ``teacher``'s pre-pool map while fake-quantized (see the
    module docstring); returns it (fp32, plain) and the training log."""
    runtime = runtime or Runtime(torch.device("cpu"), channels_last=False)
    student = copy.deepcopy(model).cpu().float().eval()
    fq = FakeQuantized(student, calibration, weight_bits)   # ranges measured on the CPU, then trained anywhere
    teacher = runtime.model(copy.deepcopy(teacher).float()).eval()
    task = Task(student, forward=lambda m, x: m.forward_features(x), loss=F.mse_loss,
                target=lambda x: teacher.forward_features(x), trainable=body_parameters, train_mode=False)
    cfg = TrainConfig(iterations=settings.iterations, batch_size=settings.batch_size, lr=settings.lr,
                      schedule="cosine", cache_targets=None)
    try:
        log = train(task, samples.images, None, config, cfg, seed, runtime, progress, "recover int8")
    finally:
        fq.remove()
    # back in the plain memory format (the runtime may train channels-last): the export is then the fp32 one
    return student.cpu().to(memory_format=torch.contiguous_format).eval(), log
