"""The Python API: everything the CLI does, in a few calls.

>>> import mimir
>>> result = mimir.compress("resnet20", data="fashion-mnist", samples=500, prune="channels:0.5")
>>> result.summary["compressed"]["accuracy"]
>>> result.save("resnet20_mir.pt")
>>> mimir.compress(recipe="resnet20_mir.pt")     # make the same model again from its recorded recipe
>>> mimir.export("resnet20_mir.pt", "resnet20_mir.onnx")             # checked against PyTorch in ONNX Runtime
>>> mimir.latency("resnet20_mir.pt")["runtimes"]["onnxruntime"]["1"]  # against its teacher, interleaved
>>> mimir.quantize("resnet20_mir.pt", "resnet20_mir.int8.onnx")   # int8, calibrated on its own few samples
>>> mimir.evaluate("resnet20_mir.int8.onnx")["accuracy"]           # in ONNX Runtime
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from mimir.core import DataConfig, atomic_write
from mimir.core.references import in_memory_name
from mimir.data import LabeledImageFiles, LabeledImages, UnlabeledImages, center_crop, normalize
from mimir.data.sources import FASHION, load_eval_data, load_samples
from mimir.engine import Checkpointing, resolve_runtime
from mimir.errors import MimirError
from mimir.evaluate import accuracy, compare_latency, count_macs_params, latency_ms, measure_model
from mimir.evaluate.accuracy import eval_batches, onnx_accuracy
from mimir.evaluate.latency import ONNX_RUNTIMES, RUNTIMES, openvino
from mimir.export.checkpoint import save_model
from mimir.export.onnx import OPSET, OnnxFile, export_onnx, mimir_metadata, read_onnx
from mimir.models import is_model, list_models
from mimir.pipeline import CompressResult, run_recipe
from mimir.quantize import QuantizeSettings, quantize_model
from mimir.recipe import Recipe, load_recipe, recipe_defaults
from mimir.recipe import settings as recipe_settings
from mimir.resolve import is_own_code, load_teacher, resolve_model
from mimir.teachers import train_teacher as _train

__all__ = ["CompressResult", "compress", "evaluate", "export", "latency", "load_eval_data", "load_samples",
           "load_teacher", "quantize", "train_teacher"]


def _recipe_fields(teacher: object, data: object, settings: dict, named: bool) -> dict:
    """The recipe fields of ``compress``'s arguments: paths as text, in-memory objects by name
    (``named`` False: objects stand in for what a given recipe names, which keeps its names)."""
    unknown = sorted(set(settings) - set(recipe_settings()))
    if unknown:
        raise MimirError(f"compress() got an unknown setting '{unknown[0]}'",
                         f"the settings are the recipe's fields: {', '.join(recipe_settings())}")
    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    for key, value in (("teacher", teacher), ("data", data), ("eval_data", settings.get("eval_data"))):
        if isinstance(value, (nn.Module, UnlabeledImages, LabeledImages, LabeledImageFiles)):
            if named:
                given[key] = in_memory_name(value)
            else:
                given.pop(key, None)
        elif value is not None:
            given[key] = str(value)
    if isinstance(given.get("options"), Mapping):
        given["options"] = dict(given["options"])
    return given


def compress(teacher: str | Path | nn.Module | None = None, data: object = None, *,
             recipe: Recipe | str | Path | None = None, progress: bool = True, out: str | Path | None = None,
             checkpoint: str | Path | None = None, checkpoint_every: int = 0, resume: bool = False,
             latency: bool = False, trust_code: bool = False, **settings) -> CompressResult:
    """Prune ``teacher`` with ``prune``, train the student with ``method`` on ``samples`` images of
    ``data`` drawn with ``seed``, and measure teacher, pruned and compressed models.

    Every setting is a keyword argument named after its :class:`~mimir.recipe.Recipe` field
    (listed below, with defaults); ``teacher`` may also be an ``nn.Module``, ``data`` an image set
    (:class:`~mimir.data.UnlabeledImages` or :class:`~mimir.data.LabeledImages`) and ``eval_data``
    a labelled one (``None``: no evaluation). ``recipe`` (a :class:`~mimir.recipe.Recipe`, a YAML
    file or a model saved by mimir) gives every setting at once; settings passed as well override
    it, and in-memory objects it names must be passed again.

    ``checkpoint_every`` N writes a resumable checkpoint every N iterations to ``checkpoint``
    (default: ``out`` + ``.ckpt``); ``resume`` continues from it. Everything is validated before any
    training starts, and ``out`` is written only at the end. ``latency`` also times teacher and
    student in ONNX Runtime (batch 1, one thread, interleaved; ``summary["latency"]``).
    ``trust_code`` lets a file of a user's own model import the ``MODULE:CALLABLE`` it names.
    """
    evaluation = settings.get("eval_data")
    eval_obj = evaluation if isinstance(evaluation, (LabeledImages, LabeledImageFiles)) else "auto"
    given = _recipe_fields(teacher, data, settings, named=recipe is None)
    if recipe is not None:
        recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, trust_code=trust_code)
        recipe = Recipe.from_dict({**recipe.to_dict(), **given}, source="compress()") if given else recipe
    else:
        recipe = Recipe.from_dict(given, source="compress()")
    ckpt = None
    if checkpoint_every or resume or checkpoint is not None:
        if checkpoint is None and out is None:
            raise MimirError("checkpoints need a file name", "pass --checkpoint FILE (or --out, which puts it beside)")
        ckpt = Checkpointing(Path(checkpoint if checkpoint is not None else f"{out}.ckpt"), checkpoint_every, resume,
                             tag=recipe.key)
    return run_recipe(recipe, teacher=teacher if isinstance(teacher, nn.Module) else None,
                      data=data if isinstance(data, (UnlabeledImages, LabeledImages)) else None, eval_data=eval_obj,
                      progress=progress, out=out, checkpoint=ckpt, latency=latency, trust_code=trust_code)


def _with_settings_in_signature(fn):
    """Show every recipe setting in ``fn``'s signature and docstring (``help(mimir.compress)``)."""
    sig = inspect.signature(fn)
    defaults = recipe_defaults()
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    taken = {p.name for p in params}
    for name, s in recipe_settings().items():
        if name not in taken:
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name]))
    fn.__signature__ = sig.replace(parameters=params)
    fn.__doc__ += "\n    Settings:\n\n" + "\n".join(
        f"    - ``{name}`` (default ``{defaults[name]!r}``): {s.help}" for name, s in recipe_settings().items()) + "\n"
    return fn


compress = _with_settings_in_signature(compress)


def evaluate(model: str | Path | nn.Module, data: str | Path | LabeledImages | LabeledImageFiles = FASHION,
             data_config: DataConfig | None = None, latency: bool = False, progress: bool = True,
             device: str = "auto", precision: str = "fp32", trust_code: bool = False) -> dict:
    """Accuracy, parameters and MACs (and optionally CPU latency) of a model reference (see
    :func:`mimir.resolve.resolve_model`: a mimir file, a registry name, an ``nn.Module``...), or of
    an ONNX file mimir wrote (an int8 model: measured in ONNX Runtime on the CPU; its parameters and
    MACs are those its metadata records, its ``size_bytes`` the file's)."""
    if _is_onnx(model):
        return _evaluate_onnx(read_onnx(model), data, progress)
    net, config = load_teacher(model, data_config=data_config, trust_code=trust_code)
    runtime = resolve_runtime(device, precision)
    runtime.model(net)
    eval_set = load_eval_data(data, config, flag="--data")
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size, device=runtime.device)
    result = measure_model(net, eval_set, config, x, runtime, progress)
    if latency:
        result["latency_ms"] = latency_ms(net.cpu(), x.cpu())
    return result


def _is_onnx(model: object) -> bool:
    return isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".onnx"


def _evaluate_onnx(f: OnnxFile, data: object, progress: bool) -> dict:
    eval_set = load_eval_data(data, f.config, flag="--data")
    acc = None if eval_set is None else onnx_accuracy(f.blob, eval_set, f.config, progress=progress)
    return {"accuracy": acc, "params": f.metadata.get("params"), "macs": f.metadata.get("macs"),
            "size_bytes": len(f.blob), "quantization": f.quantization}


def _load_shipped(model: str | Path, weights: str | Path | None = None, input_size: int | None = None,
                  trust_code: bool = False) -> tuple[nn.Module, DataConfig, dict]:
    """(model, data config, what its file records) of a model to export or time; a user's
    ``MODULE:CALLABLE`` needs its input size given (a fixed-size export of a guessed size would be
    wrong without a word)."""
    if is_own_code(str(model)) and input_size is None:
        raise MimirError(f"the input size of '{model}' is unknown", "pass --input-size N (pixels, square)")
    r = resolve_model(str(model), weights, given={"input_size": input_size}, trust_code=trust_code)
    return r.model, r.config, r.info


def _parity_inputs(config: DataConfig, info: dict, count: int = 256) -> tuple[torch.Tensor, str]:
    """Normalised images to compare ONNX Runtime with PyTorch on: the model's own evaluation data,
    else Fashion-MNIST's test set for 1-channel 28 px models, else random inputs."""
    name = (info.get("recipe") or {}).get("eval_data")
    if not (name == FASHION or (name and Path(name).is_dir())):
        name = FASHION if (config.in_chans, config.input_size) == (1, 28) else None
    if name is not None:
        try:
            data = load_eval_data(name, config)
            images, _ = next(iter(eval_batches(data, count)))
            return normalize(center_crop(images, config.input_size), config), f"{len(images)} images of {name}"
        except MimirError:
            pass  # e.g. Fashion-MNIST not installed: fall back to random inputs, and say so
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, config.in_chans, config.input_size, config.input_size, generator=generator)
    return x, "16 random inputs (no evaluation images known for this model)"


EXPORT_FORMATS = ("onnx", "safetensors", "pt")


def export(model: str | Path, out: str | Path, format: str | None = None, weights: str | Path | None = None,
           input_size: int | None = None, trust_code: bool = False) -> dict:
    """Write ``model`` (a mimir file, a registry name with its bundled teacher or ``weights``, or a
    user's ``MODULE:CALLABLE`` with ``input_size``) as ``format``: ``onnx`` (checked against PyTorch
    in ONNX Runtime; the check's figures are returned), ``safetensors`` or ``pt``. The format
    defaults to ``out``'s suffix; ``input_size`` overrides the model's own."""
    format = format or Path(out).suffix.lstrip(".")
    if format not in EXPORT_FORMATS:
        raise MimirError(f"unknown export format '{format}'", f"use --format {', '.join(EXPORT_FORMATS)}")
    if not Path(out).parent.exists():
        raise MimirError(f"output folder '{Path(out).parent}' does not exist", "create it or choose another --out")
    net, config, info = _load_shipped(model, weights, input_size, trust_code)
    result = {"model": str(model), "format": format, "out": str(out)}
    if format != "onnx":
        save_model(out, net, config, info.get("dropped_blocks", []), info=info)
        return result
    metadata = mimir_metadata(str(model), config, info.get("recipe"))
    inputs, described = _parity_inputs(config, info)
    check = export_onnx(net, config, out, inputs, described, metadata)
    return {**result, "opset": OPSET, **check.to_dict()}


def latency(model: str | Path, against: str | Path | None = None, weights: str | Path | None = None,
            runtimes: tuple[str, ...] = ("torch", "onnxruntime"), batches: tuple[int, ...] = (1, 64), threads: int = 1,
            seconds: float = 1.0, input_size: int | None = None, trust_code: bool = False) -> dict:
    """Latency of ``model`` against its teacher (``against``, default: the teacher its file records),
    timed interleaved on the CPU (see :mod:`mimir.evaluate.latency`), and the MAC ratio beside it.

    ``model`` may be an int8 ONNX file from :func:`quantize` or ``compress(quantize="int8")``: it
    is then timed in the ONNX runtimes only, against the fp32 teacher and the teacher quantized
    the same way on the same samples (``teacher_int8_ms``: what pruning adds on top of int8)."""
    for r in runtimes:
        if r not in RUNTIMES:
            raise MimirError(f"unknown runtime '{r}'", "use --runtime torch, onnxruntime, openvino or both")
    if "openvino" in runtimes:
        openvino()   # a one-line error before anything is loaded, when it is not installed
    if not batches or any(b < 1 for b in batches):
        raise MimirError(f"batch sizes must be positive (got {list(batches)})", "pass e.g. --batch 1,64")
    if threads < 1:
        raise MimirError(f"--threads must be at least 1 (got {threads})", "pass e.g. --threads 1")
    others: dict = {}
    if _is_onnx(model):
        f = read_onnx(model)
        net, config, recipe = f.blob, f.config, f.recipe
        runtimes = tuple(r for r in runtimes if r in ONNX_RUNTIMES) or ("onnxruntime",)
    else:
        net, config, info = _load_shipped(model, weights, input_size, trust_code)
        recipe = info.get("recipe") or {}
    if against is None:
        against = recipe.get("teacher")
        if against is None or str(against).startswith("<"):
            raise MimirError(f"'{model}' records no teacher to compare with", "pass --against TEACHER")
        teacher, _ = load_teacher(str(against), recipe.get("weights"), trust_code=trust_code)
    else:
        teacher, _ = load_teacher(str(against), trust_code=trust_code)
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
    teacher_macs, _ = count_macs_params(teacher, x)
    if isinstance(net, bytes):
        macs = f.metadata.get("macs")
        q = f.quantization or {}
        if q:   # the teacher quantized as the student was: same calibration, samples and seed
            try:
                few = load_samples(recipe.get("data", FASHION), q["samples"], q["seed"], config, teacher=teacher,
                                   progress=False)
            except MimirError as err:   # e.g. the folder the samples came from is gone: time what there is
                warnings.warn(f"int8 teacher not timed: its calibration samples cannot be drawn ({err.problem})")
            else:
                others["teacher_int8"] = quantize_model(teacher, config, few, seed=q["seed"],
                                                        settings=QuantizeSettings(q["calibration"])).blob
    else:
        macs, _ = count_macs_params(net, x)
    timing = compare_latency(net, teacher, config, runtimes, batches, threads, seconds, others=others)
    return {"model": str(model), "teacher": str(against), "macs": macs, "teacher_macs": teacher_macs,
            "macs_ratio": None if macs is None else round(macs / teacher_macs, 4), **timing}


def quantize(model: str | Path, out: str | Path, data: object = None, samples: int | None = None,
             seed: int | None = None, calibration: str = "minmax", recovery: str = "none",
             eval_data: object = "auto", weights: str | Path | None = None, input_size: int | None = None,
             device: str = "auto", progress: bool = True, trust_code: bool = False) -> dict:
    """Write ``model`` (a compressed mimir file, or any teacher mimir can load) as an int8 ONNX
    file ``out``, calibrated on ``samples`` unlabeled images of ``data`` (default: the data,
    sample count and seed its recipe records - the images it was trained on - else 500 of
    Fashion-MNIST), with ``calibration`` minmax, entropy or percentile and ``recovery`` none, bias
    or mimic (which mimics the teacher the file records, else the model itself in fp32). Measures
    fp32 and int8 accuracy on ``eval_data`` (auto: the recorded one, or Fashion-MNIST's test set
    when the samples are Fashion-MNIST; None: none) and both files' sizes."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise MimirError(f"--out '{out}' must end in .onnx", "e.g. --out model.int8.onnx")
    if not out.parent.exists():
        raise MimirError(f"output folder '{out.parent}' does not exist", "create it or choose another --out")
    net, config, info = _load_shipped(model, weights, input_size, trust_code)
    recipe = info.get("recipe") or {}
    data = data if data is not None else recipe.get("data", FASHION)
    samples = samples if samples is not None else recipe.get("samples", 500)
    seed = seed if seed is not None else recipe.get("seed", 0)
    if samples < 1:
        raise MimirError(f"--samples must be at least 1 (got {samples})", "pass e.g. --samples 500")
    teacher = net
    if recipe.get("teacher") and recovery == "mimic":   # a compressed file mimics its own teacher
        teacher, _ = load_teacher(recipe["teacher"], recipe.get("weights"), trust_code=trust_code)
    few = load_samples(data, samples, seed, config, teacher=net, progress=progress)
    if eval_data == "auto":
        eval_data = recipe.get("eval_data", "auto")
    if eval_data == "auto":
        eval_data = FASHION if str(data) == FASHION else None
    eval_set = load_eval_data(eval_data, config)
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
    macs, params = count_macs_params(net, x)
    metadata = mimir_metadata(str(model), config, recipe, macs=macs, params=params)
    q = quantize_model(net, config, few, settings=QuantizeSettings(calibration), recovery=recovery, teacher=teacher,
                       seed=seed, metadata=metadata, runtime=resolve_runtime(device, "fp32"), progress=progress)
    result = {"model": str(model), "out": str(out), "data": str(data), "samples": samples, "seed": seed,
              "size_bytes": q.size, "fp32_size_bytes": q.fp32_size, "macs": macs, "params": params,
              "quantization": q.info, "seconds": {k: round(v, 2) for k, v in q.seconds.items()}}
    if eval_set is not None:
        result["accuracy_fp32"] = accuracy(net, eval_set, config, progress=progress, desc="evaluate fp32",
                                           runtime=resolve_runtime("cpu", "fp32"))
        result["accuracy_int8"] = onnx_accuracy(q.blob, eval_set, config, progress=progress, desc="evaluate int8")
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(q.blob))
    return result


def train_teacher(model: str, epochs: int = 10, batch_size: int = 128, lr: float = 0.1,
                  weight_decay: float = 5e-4, seed: int = 0, out: str | Path | None = None,
                  progress: bool = True, device: str = "auto", precision: str = "fp32", optimizer: str = "sgd",
                  warmup: float = 0.0) -> dict:
    """Train registry ``model`` on Fashion-MNIST with labels; returns its info (test accuracy...).
    ``optimizer`` sgd (Nesterov) or adamw, ``warmup``: fraction of steps with a linear warm-up."""
    if not is_model(model):
        raise MimirError(f"unknown model '{model}'", f"choose one of: {', '.join(list_models())}")
    if epochs < 1:
        raise MimirError(f"--epochs must be at least 1 (got {epochs})", "pass a positive number")
    if optimizer not in ("sgd", "adamw"):
        raise MimirError(f"--optimizer must be sgd or adamw (got {optimizer!r})", "pass --optimizer sgd or adamw")
    if not 0.0 <= warmup < 1.0:
        raise MimirError(f"--warmup must be a fraction in [0, 1) (got {warmup})", "pass e.g. --warmup 0.05")
    if out is not None and not Path(out).parent.exists():
        raise MimirError(f"output folder '{Path(out).parent}' does not exist", "create it or choose another --out")
    _, info = _train(model, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                     seed=seed, out=out, progress=progress, runtime=resolve_runtime(device, precision),
                     optimizer=optimizer, warmup=warmup)
    return info
