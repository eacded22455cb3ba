"""One model's measurements as a run reports them: accuracy (memoised for named evaluation sets),
parameters and MACs, and teacher-against-student latency in ONNX Runtime."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from mimir.core import DataConfig, Memo, cpu_info, fingerprint
from mimir.data import LabeledImageFiles, LabeledImages
from mimir.engine import Runtime
from mimir.errors import MimirError
from mimir.evaluate.accuracy import accuracy
from mimir.evaluate.cost import count_macs_params
from mimir.evaluate.latency import compare_latency

#: accuracies of named evaluation sets by model weights: a grid evaluates the same teacher and
#: pruned student in many cells of one process (bounded: a long grid does not grow it without end)
ACCURACY_MEMO: Memo[float] = Memo(64)


def _accuracy(model: nn.Module, eval_set: LabeledImages | LabeledImageFiles, config: DataConfig, runtime: Runtime,
              progress: bool, desc: str, eval_key: str | None) -> float:
    """Top-1 accuracy; with ``eval_key`` (a named evaluation set) computed once per process for
    identical weights (a grid evaluates the same teacher and pruned student in many cells)."""
    compute = lambda: accuracy(model, eval_set, config, progress=progress, desc=desc, runtime=runtime)  # noqa: E731
    if eval_key is None:
        return compute()
    key = (fingerprint(model), eval_key, len(eval_set), config.input_size, config.mean, config.std,
           str(runtime.device), runtime.precision)
    return ACCURACY_MEMO.get(key, compute)


def measure_model(model: nn.Module, eval_set: LabeledImages | LabeledImageFiles | None, config: DataConfig,
                  example: torch.Tensor, runtime: Runtime, progress: bool, desc: str = "evaluate",
                  eval_key: str | None = None) -> dict:
    """Accuracy (when there is labelled data), parameters and MACs of one model."""
    macs, params = count_macs_params(model, example)
    acc = None if eval_set is None else _accuracy(model, eval_set, config, runtime, progress, desc, eval_key)
    return {"accuracy": acc, "params": params, "macs": macs}


LATENCY = {"runtime": "onnxruntime", "batch": 1, "threads": 1}


def measure_latency(model: nn.Module, teacher: nn.Module, config: DataConfig,
                    others: dict[str, bytes] | None = None) -> dict | None:
    """Teacher and student latency in ONNX Runtime (batch 1, one thread, interleaved; ``others``:
    ONNX files timed in the same turns, e.g. the int8 models), or None with a warning when the
    model cannot be exported (the trained model is not lost for that)."""
    try:
        timing = compare_latency(model, teacher, config, (LATENCY["runtime"],), (LATENCY["batch"],),
                                 LATENCY["threads"], others=others)
    except MimirError as err:
        warnings.warn(f"latency not measured: {err}")
        return None
    return {**LATENCY, **timing["runtimes"][LATENCY["runtime"]][str(LATENCY["batch"])]}


#: a student whose latency is at least this share of its teacher's is not faster: the run says so
NOT_FASTER = 1.0


def warn_if_not_faster(summary: dict) -> str | None:
    """Warn in one line when the run's measured latency (``summary["latency"]``: ONNX Runtime, batch
    1, one thread) shows a student no faster than its teacher, naming the fix (a channel scheme not
    rounded to this CPU's channel block: ``--round-to`` that block; else pruning whole layers), and
    return the message (None: nothing to say, or nothing measured)."""
    latency = summary.get("latency")
    if not latency or latency["latency_ratio"] < NOT_FASTER:
        return None
    recipe = summary.get("recipe") or {}
    scheme, round_to, block = str(recipe.get("prune", "")), recipe.get("round_to"), cpu_info().conv_block
    if scheme.startswith(("channels", "macs")) and (not round_to or round_to % block):
        fix = (f"pass --round-to {block} (ONNX Runtime runs convolutions in blocks of {block} channels on this CPU; "
               f"this run kept multiples of {round_to or 1})")
    else:
        fix = "prune whole layers (--prune blocks:NAME,...) or the residual widths too (--prune channels-all:R)"
    macs = summary["compressed"]["macs"] / summary["teacher"]["macs"]
    message = (f"the compressed student is not faster than its teacher: {latency['latency_ratio']:.2f}x its "
               f"{latency.get('runtime', 'onnxruntime')} latency (batch {latency.get('batch', 1)}, "
               f"{latency.get('threads', 1)} thread) with {macs:.2f} of its MACs; {fix}")
    warnings.warn(message, stacklevel=2)
    return message
