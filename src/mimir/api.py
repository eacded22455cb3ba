"""The Python API: everything the CLI does, in a few calls.

>>> import mimir
>>> result = mimir.compress("resnet20", data="fashion-mnist", samples=500, prune="channels:0.5")
>>> result.summary["compressed"]["accuracy"]
>>> result.save("resnet20_mir.pt")
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from mimir.data import (FASHION_MNIST, DataConfig, LabeledImageFiles, LabeledImages, UnlabeledImages,
                        index_folder, load_fashion_mnist, sample_folder, sample_indices)
from mimir.errors import MimirError
from mimir.evaluate import accuracy, count_macs_params, feature_mse
from mimir.export.checkpoint import load_model, load_state, read_checkpoint, save_model
from mimir.methods import MethodInput, TrainConfig, get_method
from mimir.models import SplitModel, build_from_factory, create_model, is_model, list_models, wrap_model
from mimir.models._registry import accepts
from mimir.prune import parse_scheme, prune as prune_model
from mimir.teachers import bundled_teacher_path, bundled_teachers

FASHION = "fashion-mnist"
IMAGENET = DataConfig()


# ----------------------------------------------------------------------------- teachers
def _plain_state(payload: dict) -> dict:
    """A state dict, also when saved as ``{"state_dict": ...}`` (a common training-script habit)."""
    return payload["state_dict"] if isinstance(payload.get("state_dict"), dict) else payload


def _infer_kwargs(name: str, state: dict, data_config: DataConfig | None) -> dict:
    """num_classes / in_chans (and small_input for torchvision models) read off a state dict."""
    model = create_model(name)
    first_conv = next((k for k, v in state.items() if k.endswith("weight") and v.dim() == 4), None)
    classifier = f"{model.classifier_name}.weight"
    if first_conv is None or classifier not in state:
        raise MimirError(f"the weights do not look like a {name} (no '{classifier}' entry)",
                         "use the model name the weights were trained for")
    kwargs = {"num_classes": int(state[classifier].shape[0]), "in_chans": int(state[first_conv].shape[1])}
    if accepts(name, "small_input"):
        if name.startswith("resnet"):  # the small-input stem is a 3x3 conv instead of 7x7
            kwargs["small_input"] = state[first_conv].shape[-1] == 3
        else:
            kwargs["small_input"] = data_config is not None and data_config.input_size <= 64
    return kwargs


def load_teacher(teacher: str | nn.Module, weights: str | Path | None = None,
                 feature_layer: str | None = None, data_config: DataConfig | None = None) -> tuple[SplitModel, DataConfig]:
    """Resolve a teacher: a registry name (the bundled trained teacher, or ``weights``), a mimir
    file, or a user's ``nn.Module`` (split at ``feature_layer``, or detected automatically)."""
    if isinstance(teacher, nn.Module):
        config = data_config or IMAGENET
        model = teacher if isinstance(teacher, SplitModel) and feature_layer is None else \
            wrap_model(teacher, config.in_chans, config.input_size, feature_layer)
        return model.eval(), config
    if is_model(teacher):
        if weights is None:
            path = bundled_teacher_path(teacher)
            if path is None:
                raise MimirError(f"no trained teacher is bundled for '{teacher}' (bundled: "
                                 f"{', '.join(bundled_teachers()) or 'none'})",
                                 f"pass --weights FILE, or train one with 'mimir train-teacher {teacher}'")
            model, config, _ = load_model(path)
            return _with_feature_layer(model, feature_layer), data_config or config
        state = read_checkpoint(weights)
        if state.get("format") == "mimir/1":
            model, config, _ = load_model(weights)
            return _with_feature_layer(model, feature_layer), data_config or config
        state = _plain_state(state)
        kwargs = _infer_kwargs(teacher, state, data_config)
        model = load_state(create_model(teacher, **kwargs), state, f"weights file '{weights}'")
        config = data_config or (FASHION_MNIST if kwargs["in_chans"] == 1 and kwargs["num_classes"] == 10
                                 else DataConfig(in_chans=kwargs["in_chans"], num_classes=kwargs["num_classes"]))
        return _with_feature_layer(model.eval(), feature_layer), config
    if ":" in teacher and not Path(teacher).exists():  # MODULE:CALLABLE, a user's own model
        net = build_from_factory(teacher)
        if weights is not None:
            load_state(net, _plain_state(read_checkpoint(weights)), f"weights file '{weights}'")
        return load_teacher(net, None, feature_layer, data_config or _guess_config(net))
    if Path(teacher).suffix in (".pt", ".pth") or Path(teacher).exists():
        model, config, _ = load_model(teacher)
        return _with_feature_layer(model, feature_layer), data_config or config
    raise MimirError(f"unknown model '{teacher}'",
                     f"choose one of: {', '.join(list_models())}, or give a checkpoint file")


def _guess_config(net: nn.Module, input_size: int | None = None) -> DataConfig:
    """Channels from the first conv, classes from the last linear layer; 28 px for 1 channel, else 224."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not convs or not linears:
        raise MimirError("the model has no convolution or no linear layer", "mimir compresses CNN classifiers")
    in_chans, classes = convs[0].in_channels, linears[-1].out_features
    if in_chans == 1:
        return DataConfig(1, input_size or 28, FASHION_MNIST.mean, FASHION_MNIST.std, classes)
    return DataConfig(in_chans=in_chans, input_size=input_size or 224, num_classes=classes)


def _with_feature_layer(model: SplitModel, feature_layer: str | None) -> SplitModel:
    if feature_layer is None:
        return model
    names = dict(model.named_modules())
    if feature_layer not in names:
        raise MimirError(f"the model has no layer named '{feature_layer}'",
                         "leave --feature-layer out for registry models (their split is built in)")
    raise MimirError(f"--feature-layer is only for a user's own model; '{model.model_name}' already has "
                     "its pre-pool split", "leave --feature-layer out")


# ----------------------------------------------------------------------------- data
def _check_fashion_fits(config: DataConfig) -> None:
    if (config.in_chans, config.input_size, config.num_classes) != (1, 28, 10):
        raise MimirError("Fashion-MNIST (1 channel, 28 px, 10 classes) does not fit this teacher "
                         f"({config.in_chans} channels, {config.input_size} px, {config.num_classes} classes)",
                         "pass --data / --eval-data folders with images for this teacher")


def load_samples(data: str | Path | UnlabeledImages | LabeledImages, samples: int, seed: int, config: DataConfig,
                 balanced: bool = False) -> LabeledImages | UnlabeledImages:
    """The few samples: ``samples`` images drawn from ``data`` with ``seed``.

    Labels are kept when the source has them (Fashion-MNIST, or a folder whose images all sit in
    class subfolders): they drive the paper's random-class-then-image draw, and the caller strips
    them before a label-free method sees the images. A folder is drawn from by file name and only
    the chosen files are decoded, so an ImageNet training folder costs a directory listing."""
    if isinstance(data, (LabeledImages, UnlabeledImages)):
        pool = data
    elif str(data) == FASHION:
        _check_fashion_fits(config)
        pool = load_fashion_mnist("train")
    else:
        index = index_folder(data)
        _check_balanced(balanced, index.labels, data)
        return sample_folder(index, samples, seed, config.in_chans, config.input_size, balanced=balanced)
    labels = pool.labels if isinstance(pool, LabeledImages) else None
    _check_balanced(balanced, labels, data)
    idx = sample_indices(len(pool), samples, seed, labels=labels, balanced=balanced)
    return pool.subset(idx) if isinstance(pool, LabeledImages) else UnlabeledImages(pool.images[idx], pool.source)


def _check_balanced(balanced: bool, labels: torch.Tensor | None, data: object) -> None:
    if balanced and labels is None:
        raise MimirError(f"--balanced needs class labels to balance, and '{data}' has none", "drop --balanced")


def load_eval_data(eval_data: str | Path | LabeledImages | LabeledImageFiles | None, config: DataConfig,
                   flag: str = "--eval-data") -> LabeledImages | LabeledImageFiles | None:
    """Fashion-MNIST's test set in memory, or an ImageNet-style folder read lazily at evaluation."""
    if eval_data is None or isinstance(eval_data, (LabeledImages, LabeledImageFiles)):
        return eval_data
    if str(eval_data) == FASHION:
        _check_fashion_fits(config)
        return load_fashion_mnist("test")
    return LabeledImageFiles(eval_data, config.in_chans, config.input_size, flag=flag)


# ----------------------------------------------------------------------------- compress
@dataclass
class CompressResult:
    """The compressed model, the teacher it came from, and the measured summary."""

    model: SplitModel
    teacher: SplitModel
    data_config: DataConfig
    dropped_blocks: list[str]
    summary: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write a mimir file (architecture as data + weights; ``weights_only=True`` loadable)."""
        return save_model(path, self.model, self.data_config, self.dropped_blocks, info=self.summary)


_ACCURACY_MEMO: dict[tuple, float] = {}


def _fingerprint(model: nn.Module) -> str:
    """A hash of everything that decides a model's eval-mode outputs: its module tree and every
    parameter and buffer (names, shapes, dtypes, values)."""
    digest = hashlib.sha1(repr(model).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _accuracy(model: nn.Module, eval_set: LabeledImages | LabeledImageFiles, config: DataConfig,
              eval_key: str | None, progress: bool, desc: str) -> float:
    """Top-1 accuracy, computed once per process for identical weights on the same named evaluation
    set (``eval_key``): a grid evaluates the same teacher and the same pruned student in many cells."""
    if eval_key is None:
        return accuracy(model, eval_set, config, progress=progress, desc=desc)
    key = (_fingerprint(model), eval_key, len(eval_set), config.input_size, config.mean, config.std)
    if key not in _ACCURACY_MEMO:
        _ACCURACY_MEMO[key] = accuracy(model, eval_set, config, progress=progress, desc=desc)
    return _ACCURACY_MEMO[key]


def _measure(model: nn.Module, eval_set: LabeledImages | LabeledImageFiles | None, config: DataConfig, x: torch.Tensor,
             progress: bool, desc: str, eval_key: str | None = None) -> dict:
    macs, params = count_macs_params(model, x)
    acc = _accuracy(model, eval_set, config, eval_key, progress, desc) if eval_set is not None else None
    return {"accuracy": acc, "params": params, "macs": macs}


def compress(
    teacher: str | nn.Module = "resnet20",
    data: str | Path | UnlabeledImages | LabeledImages = FASHION,
    samples: int = 500,
    seed: int = 0,
    prune: str = "channels:0.5",
    method: str = "mir",
    iterations: int = 2000,
    batch_size: int = 64,
    lr: float | None = None,
    balanced: bool = False,
    weights: str | Path | None = None,
    feature_layer: str | None = None,
    data_config: DataConfig | None = None,
    input_size: int | None = None,
    options: dict | None = None,
    eval_data: str | Path | LabeledImages | LabeledImageFiles | None = "auto",
    progress: bool = True,
    out: str | Path | None = None,
) -> CompressResult:
    """Prune ``teacher`` with ``prune``, train the student with ``method`` on ``samples`` images of
    ``data`` drawn with ``seed``, and measure teacher, pruned and compressed models.

    ``options`` are method settings (e.g. ``{"temperature": 4}`` for KD, ``{"mu": 0.6}`` for CD; see each
    method's docstring). ``eval_data`` (labelled: ``"fashion-mnist"`` or an ImageNet-style folder) gives accuracies;
    ``"auto"`` means the Fashion-MNIST test set when ``data`` is Fashion-MNIST, otherwise none.
    Everything is validated before any training starts, and ``out`` is written only at the end.
    """
    started = time.perf_counter()
    scheme = parse_scheme(prune)
    chosen = get_method(method)
    if chosen.selects_blocks != bool(scheme.auto_k):
        raise MimirError(f"--method {method} does not fit --prune {scheme}",
                         "PRACTISE chooses the blocks itself: use --method practise with --prune blocks:auto:K, "
                         "and other methods with channels:R or blocks:NAME,...")
    if samples < 1:
        raise MimirError(f"--samples must be at least 1 (got {samples})", "pass a positive number of images")
    if iterations < 1 and chosen.iterative:
        raise MimirError(f"--iterations must be at least 1 (got {iterations})", "pass a positive number")
    if out is not None and not Path(out).parent.exists():
        raise MimirError(f"output folder '{Path(out).parent}' does not exist", "create it or choose another --out")
    teacher_model, config = load_teacher(teacher, weights, feature_layer, data_config)
    if input_size is not None and input_size != config.input_size:
        config = replace(config, input_size=input_size)
    few = load_samples(data, samples, seed, config, balanced)
    if eval_data == "auto":
        eval_data = FASHION if str(data) == FASHION else None
    eval_set = load_eval_data(eval_data, config)
    eval_key = str(eval_data) if isinstance(eval_data, (str, Path)) else None  # named sets only (see _accuracy)
    if chosen.needs_labels and not isinstance(few, LabeledImages):
        raise MimirError(f"method '{method}' needs labels, but '{data}' has none",
                         "use a label-free method such as mir, or labelled data")
    unlabeled = few.without_labels() if isinstance(few, LabeledImages) else few
    given = few if chosen.needs_labels else unlabeled
    train_cfg = TrainConfig(iterations=iterations, batch_size=batch_size, extra=dict(options or {}))
    if lr is not None:
        train_cfg = train_cfg.with_(lr=lr)

    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
    summary: dict = {
        "teacher_name": teacher if isinstance(teacher, str) else type(teacher).__name__,
        "method": method, "prune": str(scheme), "samples": samples, "seed": seed, "balanced": balanced,
        "iterations": iterations if chosen.iterative else 0, "batch_size": batch_size, "options": dict(options or {}),
        "used_labels": chosen.needs_labels, "data": str(data) if isinstance(data, (str, Path)) else few.source,
    }
    select_seconds = 0.0
    if scheme.auto_k:  # PRACTISE: rank the blocks on the (unlabeled) few samples, drop the K best
        from mimir.methods.practise import select_blocks

        select_started = time.perf_counter()
        names, ranking = select_blocks(teacher_model, unlabeled, config, scheme.auto_k, train_cfg, seed, progress)
        scheme = parse_scheme("blocks:" + ",".join(names))
        summary["ranking"] = ranking
        select_seconds = time.perf_counter() - select_started
    student, arch = prune_model(teacher_model, scheme, x)
    summary["dropped_blocks"] = arch["dropped_blocks"]
    summary["teacher"] = _measure(teacher_model, eval_set, config, x, progress, "evaluate teacher", eval_key)
    summary["pruned"] = _measure(student, eval_set, config, x, progress, "evaluate pruned", eval_key)
    summary["pruned"]["feature_mse"] = feature_mse(student, teacher_model, few, config)

    train_started = time.perf_counter()
    model = chosen(MethodInput(teacher_model, student, given, config, train_cfg, seed, progress, arch))
    # the method's whole cost: PRACTISE's block selection counts too
    summary["train_seconds"] = round(time.perf_counter() - train_started + select_seconds, 2)
    summary["compressed"] = _measure(model, eval_set, config, x, progress, "evaluate compressed")
    summary["compressed"]["feature_mse"] = feature_mse(model, teacher_model, few, config)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    summary["torch"] = str(torch.__version__)
    result = CompressResult(model, teacher_model, config, arch["dropped_blocks"], summary)
    if out is not None:
        result.save(out)
        summary["out"] = str(out)
    return result


def evaluate(model: str | Path | nn.Module, data: str | Path | LabeledImages | LabeledImageFiles = FASHION,
             data_config: DataConfig | None = None, latency: bool = False, progress: bool = True) -> dict:
    """Accuracy, parameters and MACs (and optionally CPU latency) of a model or mimir file."""
    from mimir.evaluate import latency_ms

    if isinstance(model, nn.Module):
        net, config = model.eval(), data_config or IMAGENET
    else:
        net, config = load_teacher(str(model))
    eval_set = load_eval_data(data, config, flag="--data")
    x = torch.zeros(1, config.in_chans, config.input_size, config.input_size)
    result = _measure(net, eval_set, config, x, progress, "evaluate")
    if latency:
        result["latency_ms"] = latency_ms(net, x)
    return result


def train_teacher(model: str, epochs: int = 10, batch_size: int = 128, lr: float = 0.1,
                  weight_decay: float = 5e-4, seed: int = 0, out: str | Path | None = None,
                  progress: bool = True) -> dict:
    """Train registry ``model`` on Fashion-MNIST with labels; returns its info (test accuracy...)."""
    from mimir.teachers import train_teacher as _train

    if not is_model(model):
        raise MimirError(f"unknown model '{model}'", f"choose one of: {', '.join(list_models())}")
    if epochs < 1:
        raise MimirError(f"--epochs must be at least 1 (got {epochs})", "pass a positive number")
    if out is not None and not Path(out).parent.exists():
        raise MimirError(f"output folder '{Path(out).parent}' does not exist", "create it or choose another --out")
    _, info = _train(model, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                     seed=seed, out=out, progress=progress)
    return info
