"""Saving and loading models without pickled modules.

A mimir file is a plain dict, readable with ``torch.load(path, weights_only=True)``::

    {"format": "mimir/1", "model": "resnet20", "model_kwargs": {...}, "data_config": {...},
     "architecture": {"dropped_blocks": [...], "layers": {name: shape}}, "state_dict": {...},
     "info": {...}}

Loading rebuilds the base model from the registry (or from the module the caller passes for a
user's own model), reshapes it with the architecture, then loads the weights strictly.
Writes are atomic: a file is either complete or absent.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from mimir.data.transforms import DataConfig
from mimir.errors import MimirError
from mimir.models import build_from_factory, create_model, wrap_model
from mimir.prune._arch import apply as apply_architecture
from mimir.prune._arch import describe

FORMAT = "mimir/1"


def atomic_save(obj: object, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise MimirError(f"output folder '{path.parent}' does not exist", "create it or choose another --out")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_model(path: str | Path, model: nn.Module, data_config: DataConfig, dropped_blocks: list[str] | None = None,
               info: dict | None = None) -> Path:
    """Write ``model`` (a registry model, possibly pruned) as a mimir file."""
    payload = {
        "format": FORMAT,
        "model": getattr(model, "model_name", "custom"),
        "model_kwargs": dict(getattr(model, "model_kwargs", {})),
        "data_config": data_config.to_dict(),
        "architecture": describe(model, dropped_blocks or []),
        "state_dict": {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
                       for k, v in model.state_dict().items()},
        "info": json.loads(json.dumps(info or {}, default=str)),  # plain types only: weights_only-safe
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | Path) -> dict:
    """The raw payload of a mimir file or of a plain state dict, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise MimirError(f"checkpoint '{path}' does not exist", "check the path, or give a model name")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a bad file; all mean "unreadable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MimirError(f"'{path}' is not a readable weights file ({first[:120]})",
                         "pass a file written by mimir or torch.save(model.state_dict())") from None
    if not isinstance(payload, dict):
        raise MimirError(f"'{path}' does not hold a state dict", "save weights with torch.save(model.state_dict())")
    return payload


def load_state(model: nn.Module, state_dict: dict, what: str) -> nn.Module:
    """``load_state_dict(strict=True)`` with a one-line error when shapes or names disagree."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise MimirError(f"{what} does not match the architecture ({detail[:160]})",
                         "use the model name the weights were trained for") from None
    return model


def _rebuild_base(payload: dict, path: str | Path) -> nn.Module:
    kwargs = payload["model_kwargs"]
    if payload["model"] != "custom":
        return create_model(payload["model"], **kwargs)
    if not kwargs.get("factory"):
        raise MimirError(f"'{path}' holds a user's own model", "load it with load_model(path, base=wrap_model(...))")
    config = DataConfig.from_dict(payload["data_config"])
    return wrap_model(build_from_factory(kwargs["factory"]), config.in_chans, config.input_size,
                      kwargs["feature_layer"])


def load_model(path: str | Path, base: nn.Module | None = None) -> tuple[nn.Module, DataConfig, dict]:
    """Load a mimir file: (model in eval mode, its data config, its info dict).

    ``base`` is needed only for a user's own model (not in the registry): pass the same freshly
    built, wrapped model that was compressed, and it is reshaped and loaded.
    """
    payload = read_checkpoint(path)
    if payload.get("format") != FORMAT:
        raise MimirError(f"'{path}' is not a mimir model file",
                         "for plain weights give the model name too (--teacher NAME --weights FILE)")
    if base is None:
        base = _rebuild_base(payload, path)
    model = apply_architecture(base, payload["architecture"])
    load_state(model, payload["state_dict"], f"checkpoint '{path}'")
    return model.eval(), DataConfig.from_dict(payload["data_config"]), dict(payload.get("info", {}))
