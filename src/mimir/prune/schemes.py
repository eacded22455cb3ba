"""Pruning schemes that turn a teacher into a student whose pre-pool map fits the teacher's head.

Schemes are strings:

- ``channels:R`` - prune ratio R of the channels no residual addition or head ties together
  (see :mod:`mimir.prune.channels`); ``channels:layer1=0.3,layer2=0.5`` gives named modules
  their own ratio and keeps the rest;
- ``channels-all:R`` - also the channels residual additions tie together, but not the head's;
- ``macs:F`` / ``macs-all:F`` - the channels (or channels-all) scheme at the ratio that leaves the
  student at most F of the teacher's MACs (a budget instead of a ratio);
- ``blocks:NAME,NAME`` - drop residual blocks (``blocks:auto:K``: PRACTISE chooses K);
- ``attention:NAME,NAME`` - drop the attention of transformer blocks, keeping their MLPs
  (DC-ViT style).

:func:`prune` returns the student and a description of its architecture (see :mod:`mimir.export.architecture`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mimir.errors import MimirError
from mimir.evaluate.cost import count_macs_params
from mimir.export.architecture import attention_blocks, describe, drop_attention, drop_blocks, droppable_blocks
from mimir.prune.channels import IMPORTANCES, layer_names, prune_channels

_CHANNEL_KINDS = ("channels", "channels-all", "macs", "macs-all")
_USAGE = ("use channels:R or channels-all:R (0 < R < 1), channels:LAYER=R,..., macs:F, blocks:NAME,NAME, "
          "blocks:auto:K or attention:NAME,NAME")


@dataclass(frozen=True)
class Scheme:
    kind: str  # "channels", "channels-all", "macs", "macs-all", "blocks" or "attention"
    ratio: float = 0.0                               # channel ratio, or the MAC fraction for macs
    layer_ratios: tuple[tuple[str, float], ...] = ()  # channels:LAYER=R,...
    blocks: tuple[str, ...] = ()
    auto_k: int = 0  # blocks:auto:K - the blocks are chosen by a method (PRACTISE)

    @property
    def prunes_channels(self) -> bool:
        return self.kind in _CHANNEL_KINDS

    @property
    def scope(self) -> str:
        return "all" if self.kind.endswith("-all") else "inner"

    def __str__(self) -> str:
        if self.layer_ratios:
            return f"{self.kind}:" + ",".join(f"{n}={r:g}" for n, r in self.layer_ratios)
        if self.prunes_channels:
            return f"{self.kind}:{self.ratio:g}"
        if self.auto_k:
            return f"blocks:auto:{self.auto_k}"
        return f"{self.kind}:" + ",".join(self.blocks)


def _fraction(text: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MimirError(f"prune ratio '{text}' is not a number", f"use e.g. --prune {example}") from None
    if not 0.0 < value < 1.0:
        raise MimirError(f"prune ratio {value:g} is outside (0, 1)", f"use e.g. --prune {example}")
    return value


def parse_scheme(text: str) -> Scheme:
    """Parse a scheme string (see the module docstring)."""
    kind, _, arg = text.partition(":")
    if kind in ("channels", "channels-all") and "=" in arg:
        pairs = []
        for item in (i.strip() for i in arg.split(",") if i.strip()):
            name, _, value = item.partition("=")
            if not name or not value:
                raise MimirError(f"'{item}' is not LAYER=R", f"use e.g. --prune {kind}:layer1=0.3,layer2=0.5")
            pairs.append((name.strip(), _fraction(value.strip(), f"{kind}:layer1=0.3")))
        return Scheme(kind, layer_ratios=tuple(pairs))
    if kind in _CHANNEL_KINDS:
        return Scheme(kind, ratio=_fraction(arg, f"{kind}:0.5"))
    if kind == "blocks" and arg.startswith("auto"):
        k = arg.partition(":")[2]
        if not k.isdigit() or int(k) < 1:
            raise MimirError(f"'blocks:{arg}' needs a positive number of blocks", "use e.g. --prune blocks:auto:3")
        return Scheme("blocks", auto_k=int(k))
    if kind in ("blocks", "attention"):
        names = tuple(n.strip() for n in arg.split(",") if n.strip())
        if not names:
            raise MimirError(f"no block names after '{kind}:'", f"use e.g. --prune {kind}:layer1.1,layer2.2")
        return Scheme(kind, blocks=names)
    raise MimirError(f"unknown pruning scheme '{text}'", _USAGE)


def _macs(model: nn.Module, example: torch.Tensor) -> int:
    return count_macs_params(model, example)[0]


def _prune_to_budget(teacher: nn.Module, scheme: Scheme, example: torch.Tensor, **options) -> tuple[nn.Module, dict]:
    """The least-pruned student within the MAC budget (the ratio bisected 7 times in (0, 0.9]:
    higher ratios would leave a 16-channel layer no channel, and Torch-Pruning then skips it)."""
    full = _macs(teacher, example)
    budget = scheme.ratio * full
    lo, hi = 0.0, 0.9
    student = copy.deepcopy(teacher).eval()
    kept = prune_channels(student, hi, example, scope=scheme.scope, **options)
    if _macs(student, example) > budget:
        floor = _macs(student, example) / full
        raise MimirError(f"--prune {scheme} cannot be met: pruning 90 % of the prunable channels still leaves "
                         f"{floor:.2f} of the teacher's MACs",
                         f"use a budget above {floor:.2f}" + (" or macs-all:F" if scheme.scope == "inner" else ""))
    best = (student, kept, hi)
    for _ in range(7):
        mid = (lo + hi) / 2
        student = copy.deepcopy(teacher).eval()
        kept = prune_channels(student, mid, example, scope=scheme.scope, **options)
        if _macs(student, example) <= budget:
            best, hi = (student, kept, mid), mid
        else:
            lo = mid
    student, kept, ratio = best
    return student, {"kept": kept, "ratio": ratio}


def check_names(model: nn.Module, scheme: Scheme | str) -> None:
    """That every block or layer ``scheme`` names is one of ``model``'s, with the one-line error
    :func:`prune` would give, without pruning anything (a grid checks each of its schemes so)."""
    scheme = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    if scheme.kind == "blocks" and not scheme.auto_k:
        droppable_blocks(model, list(scheme.blocks))
    elif scheme.kind == "attention":
        attention_blocks(model, list(scheme.blocks))
    layer_names(model, [name for name, _ in scheme.layer_ratios])


def prune(teacher: nn.Module, scheme: Scheme | str, example_input: torch.Tensor, round_to: int | None = None,
          importance: str = "l1", global_pruning: bool = False, images: torch.Tensor | None = None,
          head_pruning: str = "dims") -> tuple[nn.Module, dict]:
    """A pruned deep copy of ``teacher`` (kept teacher weights) and its architecture description
    (plus ``arch["kept_channels"]``: the teacher channels each pruned layer kept). Channel
    schemes take ``round_to`` K (keep a multiple of K channels per layer), ``importance``
    (one of :data:`~mimir.prune.channels.IMPORTANCES`), ``global_pruning`` and ``images`` (a
    normalised batch of the few samples, for a criterion that scores on data) and ``head_pruning``
    (``dims``: every attention head narrowed, ``heads``: whole heads dropped).

    Asserts that the student's pre-pool feature map has exactly the teacher's shape.
    """
    scheme = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    if scheme.auto_k:
        raise MimirError(f"'{scheme}' leaves the choice of blocks to a method", "use it with --method practise")
    if importance not in IMPORTANCES:
        raise MimirError(f"unknown importance '{importance}'", f"choose one of {', '.join(IMPORTANCES)}")
    options = {"round_to": round_to, "importance_name": importance, "global_pruning": global_pruning,
               "images": images, "head_pruning": head_pruning}
    teacher = teacher.eval()
    dropped: list[str] = []
    kept: dict = {"out": {}, "in": {}}
    if scheme.kind in ("macs", "macs-all"):
        student, found = _prune_to_budget(teacher, scheme, example_input, **options)
        kept = found["kept"]
    else:
        student = copy.deepcopy(teacher).eval()
        if scheme.prunes_channels:
            kept = prune_channels(student, scheme.ratio, example_input, scope=scheme.scope,
                                  layer_ratios=dict(scheme.layer_ratios) or None, **options)
        elif scheme.kind == "attention":
            drop_attention(student, list(scheme.blocks))
        else:
            dropped = drop_blocks(student, list(scheme.blocks))
    with torch.no_grad():
        t_shape = teacher.forward_features(example_input).shape
        s_shape = student.forward_features(example_input).shape
    if t_shape != s_shape:
        raise RuntimeError(f"pruning changed the pre-pool feature map from {tuple(t_shape)} to {tuple(s_shape)}")
    arch = describe(student, dropped)
    arch["kept_channels"] = kept  # not saved: which teacher channels each pruned layer kept
    return student, arch
