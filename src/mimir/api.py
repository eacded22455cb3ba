"""The Python API: everything the CLI does, in a few calls.

>>> import mimir
>>> result = mimir.compress("resnet20", data="fashion-mnist", samples=500, prune="channels:0.5")
>>> result.summary["compressed"]["accuracy"]
>>> result.save("resnet20_mir.pt")
>>> mimir.compress(recipe="resnet20_mir.pt")     # make the same model again from its recorded recipe
>>> mimir.export("resnet20_mir.pt", "resnet20_mir.onnx")             # checked against PyTorch in ONNX Runtime
>>> mimir.latency("resnet20_mir.pt")["runtimes"]["onnxruntime"]["1"]  # against its teacher, interleaved
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mimir.data import DataConfig, LabeledImageFiles, LabeledImages, UnlabeledImages
from mimir.engine import Checkpointing, resolve_runtime
from mimir.errors import MimirError
from mimir.evaluate import compare_latency, count_macs_params, latency_ms
from mimir.evaluate.latency import RUNTIMES
from mimir.export.checkpoint import FORMAT, model_from_payload, read_checkpoint, save_model
from mimir.models import is_model, list_models
from mimir.pipeline import CompressResult, measure_model, run_recipe
from mimir.recipe import Recipe, load_recipe
from mimir.resolve import FASHION, IMAGENET, in_memory_name, load_eval_data, load_samples, load_teacher

__all__ = ["CompressResult", "compress", "evaluate", "export", "latency", "load_eval_data", "load_samples",
           "load_teacher", "train_teacher"]


def _name_of(obj: object) -> str:
    return str(obj) if isinstance(obj, (str, Path)) else in_memory_name(obj)


def compress(
    teacher: str | nn.Module = "resnet20",
    data: str | Path | UnlabeledImages | LabeledImages = FASHION,
    samples: int = 500,
    extra_data: str | Path | None = None,
    seed: int = 0,
    prune: str = "channels:0.5",
    method: str = "mir",
    round_to: int | None = None,
    importance: str = "l1",
    global_pruning: bool = False,
    iterations: int = 2000,
    batch_size: int = 64,
    lr: float | None = None,
    balanced: bool = False,
    weights: str | Path | None = None,
    feature_layer: str | None = None,
    data_config: DataConfig | None = None,
    input_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    interpolation: str | None = None,
    options: dict | None = None,
    eval_data: str | Path | LabeledImages | LabeledImageFiles | None = "auto",
    device: str = "auto",
    precision: str = "fp32",
    compile: bool = False,
    progress: bool = True,
    out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    recipe: Recipe | str | Path | None = None,
    latency: bool = False,
) -> CompressResult:
    """Prune ``teacher`` with ``prune``, train the student with ``method`` on ``samples`` images of
    ``data`` drawn with ``seed``, and measure teacher, pruned and compressed models.

    ``data`` may also be ``"synthetic:N"``: N images synthesised from the teacher alone.
    ``extra_data`` adds unlabeled images to the samples: a folder (e.g. out of domain) or ``"synthetic:N"``.
    ``prune`` is a scheme (see :mod:`mimir.prune.schemes`); channel schemes also take ``round_to``,
    ``importance`` (l1, l2, fpgm, lamp, taylor) and ``global_pruning``. ``input_size``, ``mean``,
    ``std`` and ``interpolation`` override the teacher's own input settings (a model nothing
    describes gets announced assumptions). ``options`` are method settings (e.g. ``{"temperature": 4}`` for KD, ``{"mu": 0.6}`` for CD; see each
    method's docstring); an unknown one is an error. ``eval_data`` (labelled: ``"fashion-mnist"`` or an
    ImageNet-style folder) gives accuracies; ``"auto"`` means the Fashion-MNIST test set when ``data`` is
    Fashion-MNIST, otherwise none. ``device`` is ``auto`` (CUDA when available), ``cpu``, ``cuda`` or
    ``cuda:N``; ``precision`` ``fp32``, ``bf16`` or ``fp16`` (autocast; fp16 with a gradient scaler).

    ``recipe`` (a :class:`~mimir.recipe.Recipe`, a YAML file or a model saved by mimir) replaces all the
    settings above (``teacher`` / ``data`` may still pass in-memory objects it refers to).
    ``checkpoint_every`` N writes a resumable checkpoint every N iterations to ``checkpoint`` (default:
    ``out`` + ``.ckpt``); ``resume`` continues from it. Everything is validated before any training
    starts, and ``out`` is written only at the end. ``latency`` also times teacher and student in
    ONNX Runtime (batch 1, one thread, interleaved; ``summary["latency"]``).
    """
    module = teacher if isinstance(teacher, nn.Module) else None
    data_obj = data if isinstance(data, (UnlabeledImages, LabeledImages)) else None
    eval_obj = eval_data if isinstance(eval_data, (LabeledImages, LabeledImageFiles)) else "auto"
    if recipe is not None:
        recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    else:
        recipe = Recipe(
            teacher=_name_of(teacher), weights=str(weights) if weights is not None else None,
            feature_layer=feature_layer, data=_name_of(data),
            extra_data=str(extra_data) if extra_data is not None else None,
            eval_data=None if eval_data is None else (str(eval_data) if eval_obj == "auto" else _name_of(eval_data)),
            samples=samples, seed=seed, balanced=balanced, prune=prune, method=method, options=dict(options or {}),
            round_to=round_to, importance=importance, global_pruning=global_pruning,
            iterations=iterations, batch_size=batch_size, lr=lr, input_size=input_size, data_config=data_config,
            mean=mean, std=std, interpolation=interpolation,
            device=device, precision=precision, compile=compile)
    ckpt = None
    if checkpoint_every or resume or checkpoint is not None:
        if checkpoint is None and out is None:
            raise MimirError("checkpoints need a file name", "pass --checkpoint FILE (or --out, which puts it beside)")
        ckpt = Checkpointing(Path(checkpoint if checkpoint is not None else f"{out}.ckpt"), checkpoint_every, resume,
                             tag=recipe.key)
    return run_recipe(recipe, teacher=module, data=data_obj, eval_data=eval_obj, progress=progress, out=out,
                      checkpoint=ckpt, latency=latency)


def evaluate(model: str | Path | nn.Module, data: str | Path | LabeledImages | LabeledImageFiles = FASHION,
             data_config: DataConfig | None = None, latency: bool = False, progress: bool = True,
             device: str = "auto", precision: str = "fp32") -> dict:
    """Accuracy, parameters and MACs (and optionally CPU latency) of a model or mimir file."""
    if isinstance(model, nn.Module):
        net, config = model.eval(), data_config or IMAGENET
    else:
        net, config = load_teacher(str(model))
    runtime = resolve_runtime(device, precision)
    runtime.model(net)
    eval_set = load_eval_data(data, config, flag="--data")
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size, device=runtime.device)
    result = measure_model(net, eval_set, config, x, runtime, progress)
    if latency:
        result["latency_ms"] = latency_ms(net.cpu(), x.cpu())
    return result


def _load_shipped(model: str | Path, weights: str | Path | None = None,
                  input_size: int | None = None) -> tuple[nn.Module, DataConfig, dict]:
    """(model, data config, what its file records) for a mimir file, a registry name with its
    bundled teacher or a weights file, or a user's ``MODULE:CALLABLE`` (whose input size must be
    given: a fixed-size export of a guessed size would be wrong without a word)."""
    path = Path(str(model))
    payload = read_checkpoint(path) if weights is None and path.is_file() else {}
    if payload.get("format") == FORMAT:
        net, config, info = model_from_payload(payload, path)
    else:
        own = not is_model(str(model)) and ":" in str(model) and not path.exists()
        if own and input_size is None:
            raise MimirError(f"the input size of '{model}' is unknown", "pass --input-size N (pixels, square)")
        net, config = load_teacher(str(model), weights, given={"input_size": input_size})
        info = {}
    if input_size is not None:
        config = replace(config, input_size=input_size)
    return net, config, info


def _parity_inputs(config: DataConfig, info: dict, count: int = 256) -> tuple[torch.Tensor, str]:
    """Normalised images to compare ONNX Runtime with PyTorch on: the model's own evaluation data,
    else Fashion-MNIST's test set for 1-channel 28 px models, else random inputs."""
    from mimir.data.transforms import center_crop, normalize
    from mimir.evaluate.accuracy import _batches

    name = (info.get("recipe") or {}).get("eval_data")
    if not (name == FASHION or (name and Path(name).is_dir())):
        name = FASHION if (config.in_chans, config.input_size) == (1, 28) else None
    if name is not None:
        try:
            data = load_eval_data(name, config)
            images, _ = next(iter(_batches(data, count)))
            return normalize(center_crop(images, config.input_size), config), f"{len(images)} images of {name}"
        except MimirError:
            pass  # e.g. Fashion-MNIST not installed: fall back to random inputs, and say so
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, config.in_chans, config.input_size, config.input_size, generator=generator)
    return x, "16 random inputs (no evaluation images known for this model)"


EXPORT_FORMATS = ("onnx", "safetensors", "pt")


def export(model: str | Path, out: str | Path, format: str | None = None, weights: str | Path | None = None,
           input_size: int | None = None) -> dict:
    """Write ``model`` (a mimir file, a registry name with its bundled teacher or ``weights``, or a
    user's ``MODULE:CALLABLE`` with ``input_size``) as ``format``: ``onnx`` (checked against PyTorch
    in ONNX Runtime; the check's figures are returned), ``safetensors`` or ``pt``. The format
    defaults to ``out``'s suffix; ``input_size`` overrides the model's own."""
    from mimir import __version__
    from mimir.export.onnx import OPSET, export_onnx

    format = format or Path(out).suffix.lstrip(".")
    if format not in EXPORT_FORMATS:
        raise MimirError(f"unknown export format '{format}'", f"use --format {', '.join(EXPORT_FORMATS)}")
    if not Path(out).parent.exists():
        raise MimirError(f"output folder '{Path(out).parent}' does not exist", "create it or choose another --out")
    net, config, info = _load_shipped(model, weights, input_size)
    result = {"model": str(model), "format": format, "out": str(out)}
    if format != "onnx":
        save_model(out, net, config, info.get("dropped_blocks", []), info=info)
        return result
    recipe = info.get("recipe") or {}
    metadata = {"mimir_version": __version__, "format": FORMAT, "model": str(model),
                "teacher": recipe.get("teacher", str(model)), "method": recipe.get("method", "none"),
                "recipe": recipe, "data_config": config.to_dict()}
    inputs, described = _parity_inputs(config, info)
    check = export_onnx(net, config, out, inputs, described, metadata)
    return {**result, "opset": OPSET, **check.to_dict()}


def latency(model: str | Path, against: str | Path | None = None, weights: str | Path | None = None,
            runtimes: tuple[str, ...] = RUNTIMES, batches: tuple[int, ...] = (1, 64), threads: int = 1,
            seconds: float = 1.0, input_size: int | None = None) -> dict:
    """Latency of ``model`` against its teacher (``against``, default: the teacher its file records),
    timed interleaved on the CPU (see :mod:`mimir.evaluate.latency`), and the MAC ratio beside it."""
    for r in runtimes:
        if r not in RUNTIMES:
            raise MimirError(f"unknown runtime '{r}'", "use --runtime torch, onnxruntime or both")
    if not batches or any(b < 1 for b in batches):
        raise MimirError(f"batch sizes must be positive (got {list(batches)})", "pass e.g. --batch 1,64")
    if threads < 1:
        raise MimirError(f"--threads must be at least 1 (got {threads})", "pass e.g. --threads 1")
    net, config, info = _load_shipped(model, weights, input_size)
    recipe = info.get("recipe") or {}
    if against is None:
        against = recipe.get("teacher")
        if against is None or str(against).startswith("<"):
            raise MimirError(f"'{model}' records no teacher to compare with", "pass --against TEACHER")
        teacher, _ = load_teacher(str(against), recipe.get("weights"))
    else:
        teacher, _ = load_teacher(str(against))
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
    macs, _ = count_macs_params(net, x)
    teacher_macs, _ = count_macs_params(teacher, x)
    timing = compare_latency(net, teacher, config, runtimes, batches, threads, seconds)
    return {"model": str(model), "teacher": str(against), "macs": macs, "teacher_macs": teacher_macs,
            "macs_ratio": round(macs / teacher_macs, 4), **timing}


def train_teacher(model: str, epochs: int = 10, batch_size: int = 128, lr: float = 0.1,
                  weight_decay: float = 5e-4, seed: int = 0, out: str | Path | None = None,
                  progress: bool = True, device: str = "auto", precision: str = "fp32", optimizer: str = "sgd",
                  warmup: float = 0.0) -> dict:
    """Train registry ``model`` on Fashion-MNIST with labels; returns its info (test accuracy...).
    ``optimizer`` sgd (Nesterov) or adamw, ``warmup``: fraction of steps with a linear warm-up."""
    from mimir.teachers import train_teacher as _train

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
