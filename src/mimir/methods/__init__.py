"""Compression methods, chosen by name: ``get_method("mir")``. One small module each."""

from mimir.engine import TrainConfig
from mimir.methods import bp, cd, fskd, kd, mir, none, practise  # noqa: F401  (registration)
from mimir.methods._base import Method, MethodInput, check_options, get_method, list_methods, register_method

__all__ = ["Method", "MethodInput", "TrainConfig", "check_options", "get_method", "list_methods", "register_method"]
