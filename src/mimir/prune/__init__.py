"""Pruning schemes that turn a teacher into a student whose pre-pool map fits the teacher's head:
``channels:R`` and ``blocks:NAME,...`` (see :mod:`mimir.prune.schemes`)."""

from mimir.prune.channels import HEAD_PRUNING, IMPORTANCES, importance
from mimir.prune.rounding import auto_round_to, resolve_round_to
from mimir.prune.schemes import Scheme, check_names, parse_scheme, prune
from mimir.prune.structure import channel_groups

__all__ = ["HEAD_PRUNING", "IMPORTANCES", "Scheme", "auto_round_to", "channel_groups", "check_names", "importance",
           "parse_scheme", "prune", "resolve_round_to"]
