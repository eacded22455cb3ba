"""Resolving what a recipe names: the teacher (registry name, weights file, mimir file, a user's
module), the few samples and the evaluation data."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from mimir.data import (DataConfig, LabeledImageFiles, LabeledImages, UnlabeledImages,
                        index_folder, load_fashion_mnist, load_image_folder, sample_folder, sample_indices)
from mimir.data.synthetic import parse_synthetic, synthetic_images
from mimir.errors import MimirError
from mimir.export.checkpoint import FORMAT, load_model, load_state, model_from_payload, read_checkpoint
from mimir.models import (SplitModel, TimmModel, build_from_factory, create_model, is_model, list_models, timm_name,
                          wrap_model)
from mimir.models._base import trace_target
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
    """A state dict, also when saved inside a training checkpoint (``{"state_dict": ...}``, timm's
    ``state_dict_ema`` / ``model`` keys) or by DataParallel/DDP (a ``module.`` prefix on every key)."""
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if payload and all(k.startswith("module.") for k in payload):
        payload = {k[len("module."):]: v for k, v in payload.items()}
    return payload


def _first_conv(state: dict) -> torch.Tensor | None:
    return next((v for k, v in state.items() if k.endswith("weight") and v.dim() == 4), None)


def _infer_kwargs(name: str, state: dict, input_size: int | None) -> dict:
    """num_classes / in_chans read off a state dict; small_input for torchvision models (from the
    stem for ResNets, from the input size for MobileNetV2, whose two variants have the same
    weights); patch and image size for a timm ViT."""
    model = create_model(name)
    classifier = f"{model.classifier_name.removeprefix('model.') if timm_name(name) else model.classifier_name}.weight"
    first_conv = _first_conv(state)
    if first_conv is None or classifier not in state:
        raise MimirError(f"the weights do not look like a {name} (no '{classifier}' entry)",
                         "use the model name the weights were trained for")
    kwargs = {"num_classes": int(state[classifier].shape[0]), "in_chans": int(first_conv.shape[1])}
    if accepts(name, "small_input"):
        if name.startswith("resnet"):  # the small-input stem is a 3x3 conv instead of 7x7
            kwargs["small_input"] = first_conv.shape[-1] == 3
        else:
            kwargs["small_input"] = input_size is not None and input_size <= 64
    if timm_name(name) and "pos_embed" in state and "patch_embed.proj.weight" in state:
        vit = model.model
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        tokens = int(state["pos_embed"].shape[1]) - (0 if getattr(vit, "no_embed_class", False)
                                                     else getattr(vit, "num_prefix_tokens", 0))
        grid = round(tokens ** 0.5)
        if grid * grid == tokens and (patch, grid * patch) != (vit.patch_embed.patch_size[0], vit.patch_embed.img_size[0]):
            kwargs.update(patch_size=patch, img_size=grid * patch)
    return kwargs


def assumed_config(in_chans: int, num_classes: int, given: dict, what: str) -> DataConfig:
    """The input settings of a model nothing describes: ``given`` ones, and for the rest announced
    assumptions (28 px for one channel, else 224; ImageNet statistics for RGB, else 0.5 / 0.5)."""
    rgb = in_chans == 3
    config = DataConfig(in_chans=in_chans, input_size=28 if in_chans == 1 else 224,
                        mean=IMAGENET.mean if rgb else (0.5,) * in_chans, std=IMAGENET.std if rgb else (0.5,) * in_chans,
                        num_classes=num_classes)
    assumed = [f"{k} {getattr(config, k)}".replace("input_size", "input size") for k in ("input_size", "mean", "std",
                                                                                          "interpolation")
               if k not in given]
    if assumed:
        flags = "/".join(f"--{k.split()[0].replace('input', 'input-size')}" for k in assumed)
        warnings.warn(f"{what} carries no input settings; assumed {', '.join(assumed)} (pass {flags} to set them)",
                      stacklevel=2)
    return replace(config, **given)


def load_teacher(teacher: str | nn.Module, weights: str | Path | None = None,
                 feature_layer: str | None = None, data_config: DataConfig | None = None,
                 given: dict | None = None) -> tuple[SplitModel, DataConfig]:
    """Resolve a teacher: a registry name (the bundled trained teacher, or ``weights``), ``timm:NAME``
    with ``weights``, a mimir file, or a user's ``nn.Module`` (split at ``feature_layer``, or detected
    automatically). The data config comes from ``data_config`` (complete), else from the mimir file
    or timm's config, with ``given`` settings (``input_size``, ``mean``, ``std``, ``interpolation``)
    on top; a model nothing describes gets announced assumptions (:func:`assumed_config`)."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if isinstance(teacher, nn.Module):
        if data_config is None and isinstance(teacher, SplitModel):   # loaded by mimir, or a timm model
            data_config = getattr(teacher, "data_config", None) or (
                teacher.default_data_config() if isinstance(teacher, TimmModel) else None)
        config = _given(data_config, given) if data_config is not None else _config_of(teacher, given)
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
                                 f"pass --weights FILE, or train one with 'mimir train-teacher {teacher}'"
                                 if not timm_name(teacher) else "pass --weights FILE (nothing is downloaded)")
            model, config, _ = load_model(path)
            return _with_feature_layer(model, feature_layer), _given(data_config or config, given)
        state = read_checkpoint(weights)
        if state.get("format") == FORMAT:
            model, config, _ = model_from_payload(state, weights)
            return _with_feature_layer(model, feature_layer), _given(data_config or config, given)
        state = _plain_state(state)
        kwargs = _infer_kwargs(teacher, state, given.get("input_size") or (data_config and data_config.input_size))
        model = create_model(teacher, **kwargs)
        load_state(trace_target(model), state, f"weights file '{weights}'")
        if data_config is not None:
            config = _given(data_config, given)
        elif isinstance(model, TimmModel):
            config = _given(model.default_data_config(), given)
        else:
            config = assumed_config(kwargs["in_chans"], kwargs["num_classes"], given, f"weights file '{weights}'")
        return _with_feature_layer(model.eval(), feature_layer), config
    if ":" in teacher and not Path(teacher).exists():  # MODULE:CALLABLE, a user's own model
        net = build_from_factory(teacher)
        if weights is not None:
            load_state(net, _plain_state(read_checkpoint(weights)), f"weights file '{weights}'")
        config = _given(data_config, given) if data_config is not None else _config_of(net, given, f"'{teacher}'")
        return load_teacher(net, None, feature_layer, config)
    if Path(teacher).suffix in (".pt", ".pth", ".safetensors") or Path(teacher).exists():
        model, config, _ = load_model(teacher)
        return _with_feature_layer(model, feature_layer), _given(data_config or config, given)
    raise MimirError(f"unknown model '{teacher}'",
                     f"choose one of: {', '.join(list_models())}, timm:NAME, or give a checkpoint file")


def _given(config: DataConfig, given: dict) -> DataConfig:
    return replace(config, **given) if given else config


def _config_of(net: nn.Module, given: dict, what: str = "the model") -> DataConfig:
    """Channels from the first conv, classes from the last linear layer; the rest given or assumed."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not convs or not linears:
        raise MimirError("the model has no convolution or no linear layer", "mimir compresses CNN classifiers")
    return assumed_config(convs[0].in_channels, linears[-1].out_features, given, what)


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
                 balanced: bool = False, teacher: nn.Module | None = None,
                 progress: bool = True) -> LabeledImages | UnlabeledImages:
    """The few samples: ``samples`` images drawn from ``data`` with ``seed``.

    Labels are kept when the source has them (Fashion-MNIST, or a folder whose images all sit in
    class subfolders): they drive the paper's random-class-then-image draw, and the caller strips
    them before a label-free method sees the images. A folder is drawn from by file name and only
    the chosen files are decoded, so an ImageNet training folder costs a directory listing.
    ``synthetic:N`` synthesises N images from ``teacher`` (seeded by ``seed``) and draws from them."""
    _refuse_in_memory(data, "data", "teacher, data=your_images")
    synthetic = parse_synthetic(data)
    if isinstance(data, (LabeledImages, UnlabeledImages)):
        pool = data
    elif synthetic is not None:
        if samples > synthetic:
            raise MimirError(f"--samples {samples} is more than the {synthetic} images of --data {data}",
                             f"pass --samples {synthetic} or fewer, or synthesise more")
        _check_balanced(balanced, None, data)
        pool = synthetic_images(teacher, config, synthetic, seed, progress=progress)
    elif str(data) == FASHION:
        _check_fashion_fits(config)
        pool = load_fashion_mnist("train")
    else:
        index = index_folder(data)
        _check_balanced(balanced, index.labels, data)
        return sample_folder(index, samples, seed, config.in_chans, config.input_size, balanced=balanced,
                             interpolation=config.interpolation, crop_pct=config.crop_pct)
    labels = pool.labels if isinstance(pool, LabeledImages) else None
    _check_balanced(balanced, labels, data)
    idx = sample_indices(len(pool), samples, seed, labels=labels, balanced=balanced)
    return pool.subset(idx) if isinstance(pool, LabeledImages) else UnlabeledImages(pool.images[idx], pool.source)


def load_extra_data(extra: str | Path, config: DataConfig, teacher: nn.Module | None = None, seed: int = 0,
                    progress: bool = True) -> UnlabeledImages:
    """``--extra-data``, never with labels: every readable image under a folder (e.g. out-of-domain
    images) at the teacher's input settings, or ``synthetic:N`` images synthesised from ``teacher``."""
    count = parse_synthetic(extra)
    if count is not None:
        return synthetic_images(teacher, config, count, seed, progress=progress)
    return load_image_folder(extra, config.in_chans, config.input_size, config.interpolation, config.crop_pct,
                             flag="--extra-data")


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
    return LabeledImageFiles(eval_data, config.in_chans, config.input_size, flag=flag,
                             interpolation=config.interpolation, crop_pct=config.crop_pct)


