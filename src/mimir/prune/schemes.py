"""Pruning schemes that turn a teacher into a student whose pre-pool map fits the teacher's head.

Schemes are strings: ``channels:R`` (L1 filter pruning of inner channels at ratio R),
``channels-all:R`` (also the channels residual additions tie together, but not the pre-pool map's)
and ``blocks:NAME,NAME`` (drop residual blocks). :func:`prune` returns the student and a
description of its architecture (see :mod:`mimir.prune._arch`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mimir.errors import MimirError
from mimir.prune._arch import describe, drop_blocks
from mimir.prune.channels import prune_channels


@dataclass(frozen=True)
class Scheme:
    kind: str  # "channels", "channels-all" or "blocks"
    ratio: float = 0.0
    blocks: tuple[str, ...] = ()
    auto_k: int = 0  # blocks:auto:K - the blocks are chosen by a method (PRACTISE)

    def __str__(self) -> str:
        if self.kind in ("channels", "channels-all"):
            return f"{self.kind}:{self.ratio:g}"
        return f"blocks:auto:{self.auto_k}" if self.auto_k else "blocks:" + ",".join(self.blocks)


def parse_scheme(text: str) -> Scheme:
    """Parse ``channels:0.5``, ``channels-all:0.5``, ``blocks:layer1.1,layer2.2`` or ``blocks:auto:K``."""
    kind, _, arg = text.partition(":")
    if kind in ("channels", "channels-all"):
        try:
            ratio = float(arg)
        except ValueError:
            raise MimirError(f"prune ratio '{arg}' is not a number", f"use e.g. --prune {kind}:0.5") from None
        if not 0.0 < ratio < 1.0:
            raise MimirError(f"prune ratio {ratio:g} is outside (0, 1)", f"use e.g. --prune {kind}:0.5")
        return Scheme(kind, ratio=ratio)
    if kind == "blocks" and arg.startswith("auto"):
        k = arg.partition(":")[2]
        if not k.isdigit() or int(k) < 1:
            raise MimirError(f"'blocks:{arg}' needs a positive number of blocks", "use e.g. --prune blocks:auto:3")
        return Scheme("blocks", auto_k=int(k))
    if kind == "blocks":
        names = tuple(n.strip() for n in arg.split(",") if n.strip())
        if not names:
            raise MimirError("no block names after 'blocks:'", "use e.g. --prune blocks:layer1.1,layer2.2")
        return Scheme("blocks", blocks=names)
    raise MimirError(f"unknown pruning scheme '{text}'",
                     "use channels:R or channels-all:R (0 < R < 1), blocks:NAME,NAME or blocks:auto:K")


def prune(teacher: nn.Module, scheme: Scheme | str, example_input: torch.Tensor,
          round_to: int | None = None) -> tuple[nn.Module, dict]:
    """A pruned deep copy of ``teacher`` (kept teacher weights) and its architecture description
    (plus ``arch["kept_channels"]``: the teacher channels each pruned layer kept). ``round_to`` K
    keeps a multiple of K channels in every channel-pruned layer.

    Asserts that the student's pre-pool feature map has exactly the teacher's shape.
    """
    scheme = parse_scheme(scheme) if isinstance(scheme, str) else scheme
    if scheme.auto_k:
        raise MimirError(f"'{scheme}' leaves the choice of blocks to a method", "use it with --method practise")
    student = copy.deepcopy(teacher).eval()
    dropped: list[str] = []
    kept: dict = {"out": {}, "in": {}}
    if scheme.kind in ("channels", "channels-all"):
        scope = "inner" if scheme.kind == "channels" else "all"
        kept = prune_channels(student, scheme.ratio, example_input, scope=scope, round_to=round_to)
    else:
        drop_blocks(student, list(scheme.blocks))
        dropped = list(scheme.blocks)
    with torch.no_grad():
        t_shape = teacher.eval().forward_features(example_input).shape
        s_shape = student.forward_features(example_input).shape
    if t_shape != s_shape:
        raise RuntimeError(f"pruning changed the pre-pool feature map from {tuple(t_shape)} to {tuple(s_shape)}")
    arch = describe(student, dropped)
    arch["kept_channels"] = kept  # not saved: which teacher channels each pruned layer kept
    return student, arch

