"""Resolving what a recipe names: the teacher (registry name, weights file, mimir file, a user's
module), the few samples and the evaluation data."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mimir.data import (FASHION_MNIST, DataConfig, LabeledImageFiles, LabeledImages, UnlabeledImages,
                        index_folder, load_fashion_mnist, sample_folder, sample_indices)
from mimir.errors import MimirError
from mimir.export.checkpoint import FORMAT, load_model, load_state, model_from_payload, read_checkpoint
from mimir.models import SplitModel, build_from_factory, create_model, is_model, list_models, wrap_model
from mimir.models._registry import accepts
from mimir.teachers import bundled_teacher_path, bundled_teachers

FASHION = "fashion-mnist"
IMAGENET = DataConfig()
IN_MEMORY = "<in-memory "   # how a recipe names an object that was passed to the Python API


def in_memory_name(obj: object) -> str:
    return f"{IN_MEMORY}{type(obj).__name__}>"


def _refuse_in_memory(name: object, what: str, argument: str) -> None:
    if isinstance(name, str) and name.startswith(IN_MEMORY):
        raise MimirError(f"the recipe's {what} was {name[1:-1]} object, which a recipe cannot hold",
                         f"pass it again: mimir.compress({argument}, recipe=...)")


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
    _refuse_in_memory(teacher, "teacher", "your_module")
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
        if state.get("format") == FORMAT:
            model, config, _ = model_from_payload(state, weights)
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
    if Path(teacher).suffix in (".pt", ".pth", ".safetensors") or Path(teacher).exists():
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
    _refuse_in_memory(data, "data", "teacher, data=your_images")
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


