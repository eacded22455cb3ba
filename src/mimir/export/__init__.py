"""Shipping a model: safe checkpoints (torch.save or safetensors) and ONNX."""

from mimir.export.checkpoint import atomic_save, load, load_model, read_checkpoint, save_model

__all__ = ["atomic_save", "load", "load_model", "read_checkpoint", "save_model"]
