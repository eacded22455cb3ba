"""Pruning schemes that turn a teacher into a student whose pre-pool map fits the teacher's head:
``channels:R`` and ``blocks:NAME,...`` (see :mod:`mimir.prune.schemes`)."""

from mimir.prune._arch import apply as apply_architecture
from mimir.prune._arch import describe
from mimir.prune.schemes import Scheme, parse_scheme, prune

__all__ = ["Scheme", "apply_architecture", "describe", "parse_scheme", "prune"]
