"""ONNX export, checked against PyTorch in ONNX Runtime.

The model is exported in eval mode with torch's own exporter (``torch.onnx.export(dynamo=True)``,
the default since PyTorch 2.9) with a dynamic batch dimension; the exporter's graph optimiser folds
every BatchNorm into the convolution before it (checked: the file must have no BatchNormalization
node left where the model's BatchNorms follow convolutions); the exporter's notes on every node (its
stack trace, with the paths of the machine that exported it) are left out. The file passes the onnx checker and is
then run in ONNX Runtime on real images against PyTorch: the largest logit difference, relative to
the logits' scale, must stay below ``1e-4``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from mimir._version import __version__
from mimir.core import DataConfig, atomic_write
from mimir.errors import MimirError, first_line
from mimir.export.checkpoint import FORMAT

OPSET = 18              # what current ONNX Runtime (>= 1.16) runs with every optimisation
PARITY_TOLERANCE = 1e-4  # max |logit difference| / max |logit|


@dataclass
class OnnxCheck:
    """How the exported file compares with PyTorch on the same inputs."""

    inputs: str               # what the inputs were ("42 Fashion-MNIST test images", "random inputs")
    max_abs_diff: float
    relative_diff: float      # max_abs_diff / max |PyTorch logit|
    top1_agreement: float     # % of inputs with the same predicted class
    batchnorm_left: int       # BatchNormalization nodes in the file

    def to_dict(self) -> dict:
        return {"inputs": self.inputs, "max_abs_diff": self.max_abs_diff, "relative_diff": self.relative_diff,
                "top1_agreement": self.top1_agreement, "batchnorm_left": self.batchnorm_left}


DIGEST_KEY = "mimir_graph_sha256"   # of the serialised graph: a damaged or edited file does not match


@dataclass
class OnnxFile:
    """An ONNX file mimir wrote: its bytes and the metadata it carries."""

    blob: bytes
    metadata: dict

    @property
    def config(self) -> DataConfig:
        return DataConfig.from_dict(self.metadata["data_config"])

    @property
    def quantization(self) -> dict | None:
        """How the file was quantized (None: an fp32 file)."""
        return self.metadata.get("quantization")

    @property
    def recipe(self) -> dict:
        return self.metadata.get("recipe") or {}


def mimir_metadata(model: str, config: DataConfig, recipe: dict | None = None, **extra) -> dict:
    """What every ONNX file mimir writes records: mimir's version and format, the model it was made
    from, its teacher, the method that compressed it (none named for a model no method made, e.g. a
    teacher) and its recipe, and its data configuration."""
    recipe = recipe or {}
    method = {"method": recipe["method"]} if recipe.get("method") else {}
    return {"mimir_version": __version__, "format": FORMAT, "model": model, "teacher": recipe.get("teacher", model),
            **method, "recipe": recipe, "data_config": config.to_dict(), **extra}


def with_metadata(proto: onnx.ModelProto, metadata: dict) -> bytes:
    """``proto`` serialised with ``metadata`` (JSON values) as its only metadata_props, and the
    digest of its graph beside them."""
    del proto.metadata_props[:]
    entries = {**metadata, DIGEST_KEY: hashlib.sha256(proto.graph.SerializeToString()).hexdigest()}
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value, default=str)
    return proto.SerializeToString()


def read_onnx(path: str | Path) -> OnnxFile:
    """An ONNX file written by mimir (``mimir export``, ``mimir quantize``), refused in one line when
    it is damaged or edited (its graph does not match the digest it carries) or was not written by mimir."""
    path = Path(path)
    if not path.is_file():
        raise MimirError(f"ONNX file '{path}' does not exist", "check the path")
    blob = path.read_bytes()
    try:
        proto = onnx.load_from_string(blob)
    except Exception:  # noqa: BLE001 - protobuf raises several types for bytes that are not a model
        proto = None
    if proto is None or not proto.graph.node:
        raise MimirError(f"'{path}' is not a readable ONNX model (damaged or truncated)",
                         "export or quantize the model again")
    raw = {p.key: p.value for p in proto.metadata_props}
    if raw.get("format") != FORMAT or "data_config" not in raw:
        raise MimirError(f"'{path}' was not written by mimir (it has no mimir metadata)",
                         "give a file from 'mimir export' or 'mimir quantize', or the model it was made from")
    if raw.get(DIGEST_KEY) != hashlib.sha256(proto.graph.SerializeToString()).hexdigest():
        raise MimirError(f"'{path}' is damaged or was edited (its graph does not match the digest mimir wrote)",
                         "export or quantize the model again")
    metadata = {}
    for key, value in raw.items():
        if key == DIGEST_KEY:
            continue
        try:
            metadata[key] = json.loads(value)
        except ValueError:
            metadata[key] = value
    return OnnxFile(blob, metadata)


def onnx_bytes(model: nn.Module, config: DataConfig, metadata: dict | None = None) -> bytes:
    """``model`` (eval mode, CPU, fp32) as a serialised ONNX model with input ``input``
    ``(batch, C, H, W)`` and output ``logits``; ``metadata`` goes to its metadata_props."""
    net = copy.deepcopy(model).cpu().float().eval()
    x = torch.zeros(2, config.in_chans, config.input_size, config.input_size)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=OPSET,
                                        verbose=False)
    except Exception as err:  # noqa: BLE001 - the exporter raises many types for "cannot express this"
        raise MimirError(f"the model cannot be exported to ONNX ({type(err).__name__}: {first_line(err, 160)})",
                         "replace the unsupported operation in the model, or deploy the .pt/.safetensors file") from None
    proto = program.model_proto
    for node in proto.graph.node:   # the exporter's per-node notes: stack traces with local paths, a sixth of the file
        del node.metadata_props[:]
    return with_metadata(proto, metadata or {})


def ort_session(blob: bytes | str | Path, threads: int = 1):
    """An ONNX Runtime CPU session with every graph optimisation, ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(blob if isinstance(blob, bytes) else str(blob), options,
                                providers=["CPUExecutionProvider"])


def check_onnx(blob: bytes, model: nn.Module, inputs: torch.Tensor, described: str) -> OnnxCheck:
    """Run the exported file and the PyTorch model on ``inputs``; refuse the export when they disagree."""
    proto = onnx.load_from_string(blob)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise MimirError(f"the exported ONNX file is invalid ({first_line(err, 160)})",
                         "report this with the model; deploy the .pt/.safetensors file meanwhile") from None
    session = ort_session(blob)
    with torch.inference_mode():
        expected = model.cpu().float().eval()(inputs.float()).numpy()
    got = np.concatenate([session.run(None, {"input": chunk.numpy()})[0] for chunk in inputs.float().split(64)])
    diff = float(np.abs(got - expected).max())
    scale = float(np.abs(expected).max()) or 1.0
    check = OnnxCheck(described, diff, diff / scale, float((got.argmax(1) == expected.argmax(1)).mean() * 100),
                      sum(node.op_type == "BatchNormalization" for node in proto.graph.node))
    if check.relative_diff > PARITY_TOLERANCE:
        raise MimirError(f"ONNX Runtime's logits differ from PyTorch's by {diff:.3g} ({check.relative_diff:.2e} of "
                         f"their scale, limit {PARITY_TOLERANCE:g}) on {described}",
                         "the export is not faithful; deploy the .pt/.safetensors file and report the model")
    return check


def export_onnx(model: nn.Module, config: DataConfig, path: str | Path, inputs: torch.Tensor, described: str,
                metadata: dict | None = None) -> OnnxCheck:
    """Export, check against PyTorch on ``inputs`` (normalised images), then write ``path`` atomically
    (nothing is written when a check fails)."""
    blob = onnx_bytes(model, config, metadata)
    check = check_onnx(blob, model, inputs, described)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return check
