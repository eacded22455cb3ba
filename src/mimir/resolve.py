"""The one way to turn a model reference into a split model with its data config.

A reference is any of: a registry name (``resnet20``: its bundled trained teacher, or ``weights``),
``timm:NAME`` (with ``weights``), a mimir file (``.pt`` / ``.safetensors``), a user's
``MODULE:CALLABLE`` (optionally with plain ``weights``), or an ``nn.Module``. Compress, evaluate,
export, latency, the benchmark and the report all load models through :func:`resolve_model`.

The data config comes from ``data_config`` (complete) when given, else from the mimir file or
timm's config; ``given`` settings (``input_size``, ``mean``, ``std``, ``interpolation``) go on top;
a model nothing describes gets announced assumptions (:func:`assumed_config`).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from mimir.core import IMAGENET, DataConfig, trace_target
from mimir.core.references import refuse_in_memory
from mimir.errors import MimirError
from mimir.export.checkpoint import FORMAT, load_state, model_from_payload, read_checkpoint
from mimir.models import (
    SplitModel,
    TimmModel,
    accepts,
    build_from_factory,
    create_model,
    is_model,
    list_models,
    timm_name,
    wrap_model,
)
from mimir.models.anatomy import model_family
from mimir.teachers.bundled import bundled_teacher_path, bundled_teachers


@dataclass
class Resolved:
    """A loaded model (eval mode), its data config and what its file records (recipe, accuracies;
    empty for a model that is not a mimir file)."""

    model: SplitModel
    config: DataConfig
    info: dict = field(default_factory=dict)


def is_own_code(reference: object) -> bool:
    """Whether ``reference`` names a user's ``MODULE:CALLABLE`` (not a registry name or a file)."""
    return isinstance(reference, str) and ":" in reference and not is_model(reference) \
        and timm_name(reference) is None and not Path(reference).exists()


def resolve_model(reference: str | Path | nn.Module, weights: str | Path | None = None, *,
                  feature_layer: str | None = None, data_config: DataConfig | None = None,
                  given: dict | None = None, trust_code: bool = False) -> Resolved:
    """Load what ``reference`` names (see the module docstring). ``feature_layer`` splits a user's
    own model at that module; ``trust_code`` lets a mimir file of a user's own model import the
    ``MODULE:CALLABLE`` it names."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if isinstance(reference, nn.Module):
        return _from_module(reference, feature_layer, data_config, given)
    reference = str(reference)
    refuse_in_memory(reference, "teacher", "your_module")
    if feature_layer is not None and not is_own_code(reference):
        raise MimirError(f"--feature-layer is only for a user's own model; '{reference}' already has its "
                         "pre-pool split", "leave --feature-layer out")
    if is_model(reference) or timm_name(reference) is not None:   # a timm name timm lacks: its own error
        resolved = _from_registry(reference, weights, data_config, given)
    elif is_own_code(reference):
        net = build_from_factory(reference)
        if weights is not None:
            load_state(net, _plain_state(read_checkpoint(weights)), f"weights file '{weights}'")
        config = _given(data_config, given) if data_config is not None else _config_of(net, given, f"'{reference}'")
        return _from_module(net, feature_layer, config, {})
    elif Path(reference).suffix in (".pt", ".pth", ".safetensors") or Path(reference).exists():
        resolved = _from_file(reference, trust_code)
    else:
        raise MimirError(f"unknown model '{reference}'",
                         f"choose one of: {', '.join(list_models())}, timm:NAME, or give a checkpoint file")
    resolved.config = _given(data_config or resolved.config, given)
    return resolved


def load_teacher(teacher: str | nn.Module, weights: str | Path | None = None, feature_layer: str | None = None,
                 data_config: DataConfig | None = None, given: dict | None = None,
                 trust_code: bool = False) -> tuple[SplitModel, DataConfig]:
    """``(model, data config)`` of :func:`resolve_model`."""
    r = resolve_model(teacher, weights, feature_layer=feature_layer, data_config=data_config, given=given,
                      trust_code=trust_code)
    return r.model, r.config


@functools.lru_cache(maxsize=8)
def architecture(reference: str) -> nn.Module:
    """The model ``reference`` names, for what its architecture alone tells (its family, the names
    of its blocks and layers): a registry or timm name is built with random weights (no weights file
    is read, none is needed), a mimir file or a ``MODULE:CALLABLE`` is loaded. Built once per
    reference; what a benchmark grid checks and keys its cells by before any cell runs."""
    if is_model(reference):
        return create_model(reference).eval()
    if is_own_code(reference):
        return build_from_factory(reference).eval()
    return resolve_model(reference).model


def architecture_family(reference: str) -> str:
    """The family (:func:`~mimir.models.anatomy.model_family`) of the model ``reference`` names:
    what a benchmark cell's method options resolve to before the cell runs (:mod:`mimir.bench.cells`)."""
    return model_family(architecture(reference))


# ----------------------------------------------------------------------------- the kinds of reference
def _from_module(net: nn.Module, feature_layer: str | None, data_config: DataConfig | None,
                 given: dict) -> Resolved:
    if data_config is None and isinstance(net, SplitModel):   # loaded by mimir, or a timm model
        data_config = getattr(net, "data_config", None) or (
            net.default_data_config() if isinstance(net, TimmModel) else None)
    config = _given(data_config, given) if data_config is not None else _config_of(net, given)
    model = net if isinstance(net, SplitModel) and feature_layer is None else \
        wrap_model(net, config.in_chans, config.input_size, feature_layer)
    return Resolved(model.eval(), config)


def _from_file(path: str | Path, trust_code: bool) -> Resolved:
    model, config, info = model_from_payload(read_checkpoint(path), path, trust_code=trust_code)
    return Resolved(model, config, info)


def _from_registry(name: str, weights: str | Path | None, data_config: DataConfig | None,
                   given: dict) -> Resolved:
    if not is_model(name):
        create_model(name)   # a timm name timm does not have: its one-line error, naming close ones
    if weights is None:
        path = bundled_teacher_path(name)
        if path is None:
            raise MimirError(f"no trained teacher is bundled for '{name}' (bundled: "
                             f"{', '.join(bundled_teachers()) or 'none'})",
                             f"pass --weights FILE, or train one with 'mimir train-teacher {name}'"
                             if not timm_name(name) else "pass --weights FILE (nothing is downloaded)")
        return _from_file(path, trust_code=False)
    state = read_checkpoint(weights)
    if state.get("format") == FORMAT:   # a mimir file given as weights
        return Resolved(*model_from_payload(state, weights))
    state = _plain_state(state)
    kwargs = _infer_kwargs(name, state, given.get("input_size") or (data_config and data_config.input_size))
    model = create_model(name, **kwargs)
    load_state(trace_target(model), state, f"weights file '{weights}'")
    if data_config is not None:
        config = data_config
    elif isinstance(model, TimmModel):
        config = model.default_data_config()
    else:
        config = assumed_config(kwargs["in_chans"], kwargs["num_classes"], given, f"weights file '{weights}'")
    return Resolved(model.eval(), config)


# ----------------------------------------------------------------------------- reading a weights file
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


def first_conv_name(model: nn.Module) -> str | None:
    """The name, in the model's own state dict, of the convolution that reads the input: the one
    timm's ``pretrained_cfg`` names as ``first_conv``, else the first ``nn.Conv2d`` the model
    defines. (Never the first 4-D tensor of a file: safetensors sorts its keys, so a depthwise
    conv of a block can come before the stem.)"""
    target = trace_target(model)
    first = (getattr(target, "pretrained_cfg", None) or {}).get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) and first else first
    modules = dict(target.named_modules())
    if isinstance(first, str) and isinstance(modules.get(first), nn.Conv2d):
        return first
    return next((n for n, m in modules.items() if isinstance(m, nn.Conv2d)), None)


def _infer_kwargs(name: str, state: dict, input_size: int | None) -> dict:
    """num_classes / in_chans read off a state dict; small_input for torchvision models (from the
    stem for ResNets, from the input size for MobileNetV2, whose two variants have the same
    weights); patch and image size for a plain timm ViT."""
    model = create_model(name)
    classifier = f"{model.classifier_name.removeprefix('model.') if timm_name(name) else model.classifier_name}.weight"
    conv = first_conv_name(model)
    first_conv = state.get(f"{conv}.weight") if conv is not None else None
    if first_conv is None or first_conv.dim() != 4 or classifier not in state:
        missing = classifier if classifier not in state else f"{conv}.weight"
        raise MimirError(f"the weights do not look like a {name} (no '{missing}' entry)",
                         "use the model name the weights were trained for")
    kwargs = {"num_classes": int(state[classifier].shape[0]), "in_chans": int(first_conv.shape[1])}
    if accepts(name, "small_input"):
        if name.startswith("resnet"):  # the small-input stem is a 3x3 conv instead of 7x7
            kwargs["small_input"] = first_conv.shape[-1] == 3
        else:
            kwargs["small_input"] = input_size is not None and input_size <= 64
    vit = model.model if timm_name(name) else None
    if vit is not None and "pos_embed" in state and "patch_embed.proj.weight" in state \
            and not hasattr(vit.patch_embed, "backbone"):   # a hybrid's patches are of its CNN's map, not pixels
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        tokens = int(state["pos_embed"].shape[1]) - (0 if getattr(vit, "no_embed_class", False)
                                                     else getattr(vit, "num_prefix_tokens", 0))
        grid = round(tokens ** 0.5)
        if grid * grid == tokens and (patch, grid * patch) != (vit.patch_embed.patch_size[0], vit.patch_embed.img_size[0]):
            kwargs.update(patch_size=patch, img_size=grid * patch)
    return kwargs


# ----------------------------------------------------------------------------- input settings
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
                      stacklevel=3)
    return replace(config, **given)


def _given(config: DataConfig, given: dict) -> DataConfig:
    return replace(config, **given) if given else config


def _config_of(net: nn.Module, given: dict, what: str = "the model") -> DataConfig:
    """Channels from the first conv, classes from the last linear layer; the rest given or assumed."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not convs or not linears:
        raise MimirError("the model has no convolution or no linear layer", "mimir compresses CNN classifiers")
    return assumed_config(convs[0].in_channels, linears[-1].out_features, given, what)


__all__ = ["Resolved", "architecture", "architecture_family", "assumed_config", "first_conv_name", "is_own_code", "load_teacher", "resolve_model"]
