"""Pruning schemes that turn a teacher into a student whose pre-pool map fits the teacher's head:
``channels:R`` and ``blocks:NAME,...`` (see :mod:`mimir.prune.schemes`)."""

from mimir.prune._arch import apply as apply_architecture
from mimir.prune._arch import describe
from mimir.prune.channels import IMPORTANCES
from mimir.prune.schemes import Scheme, parse_scheme, prune
from mimir.prune.structure import channel_groups, residual_blocks

__all__ = ["IMPORTANCES", "Scheme", "apply_architecture", "channel_groups", "describe", "parse_scheme", "prune",
           "residual_blocks"]
