"""Saving and loading models without pickled modules.

A mimir file is a plain dict, readable with ``torch.load(path, weights_only=True)``::

    {"format": "mimir/1", "model": "resnet20", "model_kwargs": {...}, "data_config": {...},
     "architecture": {"dropped_blocks": [...], "layers": {name: shape}}, "state_dict": {...},
     "info": {...}}

or, for a path ending in ``.safetensors``, the same as a safetensors file: the state dict as its
tensors and every other entry as JSON text in its metadata (readable without PyTorch's pickle
format at all). Loading rebuilds the base model from the registry (or from the module the caller
passes for a user's own model; a file of a user's model records the ``MODULE:CALLABLE`` that built
it, which is imported only when the user trusts the file: ``trust_code=True`` / ``--trust-code``),
reshapes it with the architecture, then loads the weights strictly. No code is stored in a file,
none is run on the file's word alone, and nothing is unpickled. Writes are atomic: a file is either complete or absent.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from mimir.core import DataConfig, atomic_save, atomic_write
from mimir.errors import MimirError, first_line
from mimir.export.architecture import apply_architecture, describe
from mimir.models import build_from_factory, create_model, wrap_model

FORMAT = "mimir/1"


SAFETENSORS = ".safetensors"
_JSON_ENTRIES = ("model_kwargs", "data_config", "architecture", "info")


def save_model(path: str | Path, model: nn.Module, data_config: DataConfig, dropped_blocks: list[str] | None = None,
               info: dict | None = None) -> Path:
    """Write ``model`` (a registry model, possibly pruned) as a mimir file: a ``torch.save`` dict,
    or a safetensors file when ``path`` ends in ``.safetensors``."""
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
    if str(path).endswith(SAFETENSORS):
        return _save_safetensors(payload, path)
    return atomic_save(payload, path)


def _save_safetensors(payload: dict, path: str | Path) -> Path:
    metadata = {"format": payload["format"], "model": payload["model"]}
    metadata.update({k: json.dumps(payload[k]) for k in _JSON_ENTRIES})
    blob = safetensors_bytes(payload["state_dict"], metadata=metadata)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))


def _kind(path: Path) -> str:
    """"safetensors" (an 8-byte header length, then the JSON header), "torch" (a torch.save zip
    archive or legacy pickle) or "other"."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    return "torch" if head[:2] == b"PK" or head[:1] == b"\x80" else "other"


def _read_safetensors(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise MimirError(f"'{path}' is not a readable safetensors file ({first_line(err)})",
                         "the file is damaged or incomplete: write it again") from None
    if "format" not in metadata:  # a plain safetensors state dict (e.g. from timm or Hugging Face)
        return tensors
    payload = {"format": metadata["format"], "model": metadata.get("model"), "state_dict": tensors}
    for key in _JSON_ENTRIES:
        try:
            payload[key] = json.loads(metadata[key])
        except (KeyError, ValueError):
            raise MimirError(f"'{path}' has no valid '{key}' entry in its metadata",
                             "the file was changed after mimir wrote it: write it again") from None
    return payload


def read_checkpoint(path: str | Path) -> dict:
    """The raw payload of a mimir file or of a plain state dict, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise MimirError(f"checkpoint '{path}' does not exist", "check the path, or give a model name")
    kind = _kind(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "other":
        raise MimirError(f"'{path}' is neither a PyTorch (torch.save) nor a safetensors file",
                         "pass a file written by mimir or torch.save(model.state_dict())")
    try:
        # timm's train.py stores its argparse.Namespace beside the weights: plain data, allowed
        with torch.serialization.safe_globals([argparse.Namespace]):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err).lower() and "unsupported global" not in str(err).lower():
            raise MimirError(f"'{path}' is not a readable weights file (damaged pickle data)",
                             "the file is damaged or incomplete: write it again") from None
        raise MimirError(f"'{path}' holds pickled Python objects (e.g. a whole nn.Module), which mimir never "
                         "unpickles", "save model.state_dict() instead (or a file written by mimir)") from None
    except Exception as err:  # noqa: BLE001 - torch.load fails in many ways on a bad file; all mean "unreadable"
        raise MimirError(f"'{path}' is not a readable weights file ({first_line(err)})",
                         "the file is damaged or incomplete: write it again, or pass a file written by mimir "
                         "or torch.save(model.state_dict())") from None
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


def _rebuild_base(payload: dict, path: str | Path, trust_code: bool) -> nn.Module:
    kwargs = payload["model_kwargs"]
    if payload["model"] != "custom":
        return create_model(payload["model"], **kwargs)
    factory = kwargs.get("factory")
    if not factory:
        raise MimirError(f"'{path}' holds a user's own model", "load it with load_model(path, base=wrap_model(...))")
    if not trust_code:   # the file names code to import and call: only the user may decide to run it
        raise MimirError(f"'{path}' holds a user's own model built by '{factory}', code the file names but "
                         "does not contain", f"to import and run that code, pass --trust-code (trust_code=True), "
                         f"or name it yourself: --teacher {factory} (base=wrap_model(...))")
    config = DataConfig.from_dict(payload["data_config"])
    return wrap_model(build_from_factory(factory), config.in_chans, config.input_size, kwargs["feature_layer"])


def load_model(path: str | Path, base: nn.Module | None = None, trust_code: bool = False
               ) -> tuple[nn.Module, DataConfig, dict]:
    """Load a mimir file: (model in eval mode, its data config, its info dict).

    A user's own model (not in the registry) is rebuilt from ``base``, the same freshly built,
    wrapped model that was compressed; without it, the ``MODULE:CALLABLE`` the file names is
    imported and called only when ``trust_code`` (a file is data: it never runs code on its own).
    """
    return model_from_payload(read_checkpoint(path), path, base, trust_code)


def model_from_payload(payload: dict, path: str | Path, base: nn.Module | None = None, trust_code: bool = False
                       ) -> tuple[nn.Module, DataConfig, dict]:
    """:func:`load_model` of a payload :func:`read_checkpoint` already read from ``path`` (so that
    a caller who had to look inside the file does not read it twice)."""
    if payload.get("format") != FORMAT:
        raise MimirError(f"'{path}' is not a mimir model file",
                         "for plain weights give the model name too (--teacher NAME --weights FILE)")
    try:
        config = DataConfig.from_dict(payload["data_config"])
        if base is None:
            base = _rebuild_base(payload, path, trust_code)
        model = apply_architecture(base, payload["architecture"])
        info = dict(payload.get("info", {}))
    except MimirError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise MimirError(f"'{path}' describes a model that cannot be built ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:120] if str(err) else ''})",
                         "the file was changed after mimir wrote it: write it again") from None
    load_state(model, payload["state_dict"], f"checkpoint '{path}'")
    return model.eval(), config, info


def load(path: str | Path, base: nn.Module | None = None, trust_code: bool = False) -> nn.Module:
    """A saved mimir model (``.pt`` or ``.safetensors``), ready to use: in eval mode, with its data
    configuration (input size, mean, std) as ``model.data_config`` and what the file records about
    it (recipe, accuracies) as ``model.mimir_info`` (``base`` / ``trust_code``: see :func:`load_model`)."""
    model, config, info = load_model(path, base, trust_code)
    model.data_config = config
    model.mimir_info = info
    return model
