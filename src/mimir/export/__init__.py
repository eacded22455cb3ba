"""Shipping a model: its architecture as data, safe checkpoints (torch.save or safetensors) and ONNX."""

from mimir.export.architecture import apply_architecture, describe
from mimir.export.checkpoint import load, load_model, read_checkpoint, save_model

__all__ = ["apply_architecture", "describe", "load", "load_model", "read_checkpoint", "save_model"]
