"""How a training step runs: the shared loop, device and precision, data parallelism, checkpoints.

Methods (:mod:`mimir.methods`) say *what* they optimise as a :class:`Task`; this package runs it.
"""

from mimir.engine.checkpoint import Checkpointing
from mimir.engine.loop import Task, TrainConfig, TrainingInterrupted, TrainLog, lr_factor, train
from mimir.engine.runtime import Runtime, resolve_device, resolve_runtime

__all__ = ["Checkpointing", "Runtime", "Task", "TrainConfig", "TrainingInterrupted", "TrainLog", "lr_factor", "resolve_device",
           "resolve_runtime", "train"]
