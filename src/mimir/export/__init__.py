"""Shipping a model: safe checkpoints (and, later, ONNX)."""

from mimir.export.checkpoint import atomic_save, load_model, read_checkpoint, save_model

__all__ = ["atomic_save", "load_model", "read_checkpoint", "save_model"]
