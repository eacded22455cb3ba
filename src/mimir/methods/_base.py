"""What every compression method is given and must return, and the registry that names them.

A method receives the teacher, the pruned student and the few samples. The sample type is the
guarantee that label-free methods never see labels: a method whose ``needs_labels`` is False is
handed :class:`~mimir.data.UnlabeledImages`, which has no labels attribute at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

import torch
from torch import nn

from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.transforms import Augment, DataConfig
from mimir.errors import MimirError
from mimir.methods._loop import TrainConfig, batch_stream, prepare, run_loop


@dataclass
class MethodInput:
    """Everything a method works from; ``samples`` carries labels only for ``needs_labels`` methods."""

    teacher: nn.Module
    student: nn.Module
    samples: UnlabeledImages | LabeledImages
    data_config: DataConfig
    train: TrainConfig
    seed: int = 0
    progress: bool = True
    arch: dict = field(default_factory=dict)  # prune()'s description, with "kept_channels"


class Method:
    """Base class: subclasses set ``name`` and implement :meth:`run` (returning the student)."""

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False
    iterative: ClassVar[bool] = True
    selects_blocks: ClassVar[bool] = False  # chooses the blocks to drop itself (--prune blocks:auto:K)

    def run(self, inp: MethodInput) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, inp: MethodInput) -> nn.Module:
        if not self.needs_labels and not isinstance(inp.samples, UnlabeledImages):
            raise TypeError(f"method '{self.name}' is label-free and must be given UnlabeledImages")
        return self.run(inp)


_METHODS: dict[str, Callable[[], Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise MimirError(f"unknown method '{name}'", f"choose one of: {', '.join(list_methods())}")
    return _METHODS[name]()


def copy_head(student: nn.Module, teacher: nn.Module) -> None:
    """The *replace* step: give the student an exact copy of the teacher's head weights."""
    for name in teacher.head_module_names():
        student.get_submodule(name).load_state_dict(teacher.get_submodule(name).state_dict())


def head_parameters(model: nn.Module) -> set[int]:
    return {id(p) for name in model.head_module_names() for p in model.get_submodule(name).parameters()}


def seeded(seed: int) -> torch.Generator:
    """Seed torch's global RNG (augmentation draws) and return a generator for batch order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit(inp: MethodInput, loss_fn: Callable[..., torch.Tensor], params: Iterable[nn.Parameter],
        desc: str) -> list[float]:
    """The shared loop on the few samples: seeded batches, fresh augmentation, ``inp.train`` settings.

    ``loss_fn(x)`` gets the augmented, normalised images; for samples with labels (methods that
    declare ``needs_labels``) it is called as ``loss_fn(x, labels)``.
    """
    cfg = inp.train
    generator = seeded(inp.seed)
    augment = Augment(inp.data_config.input_size) if cfg.augment else None
    labeled = isinstance(inp.samples, LabeledImages)
    tensors = (inp.samples.images, inp.samples.labels) if labeled else (inp.samples.images,)
    batches = batch_stream(tensors, cfg.batch_size, generator)

    def step(batch):
        x = prepare(batch[0], inp.data_config, augment)
        return loss_fn(x, batch[1]) if labeled else loss_fn(x)

    return run_loop(params, step, batches, cfg, desc=desc, progress=inp.progress)
