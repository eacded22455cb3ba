"""What every compression method is given and must return, and the registry that names them.

A method receives the teacher, the pruned student and the few samples, and says *what* it
optimises; how the steps run (device, precision, data parallelism, checkpoints) is the engine's
business (:mod:`mimir.engine`). The sample type is the guarantee that label-free methods never see
labels: a method whose ``needs_labels`` is False is handed :class:`~mimir.data.UnlabeledImages`,
which has no labels attribute at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar

import torch
from torch import nn

from mimir.core import DataConfig
from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.engine import Checkpointing, Runtime, Task, TrainConfig, TrainLog, train
from mimir.errors import MimirError
from mimir.models.anatomy import model_family


@dataclass
class MethodInput:
    """Everything a method works from; ``samples`` carries labels only for ``needs_labels`` methods."""

    teacher: nn.Module
    student: nn.Module | None   # None when a method chooses the blocks to drop (before pruning)
    samples: UnlabeledImages | LabeledImages
    data_config: DataConfig
    train: TrainConfig
    seed: int = 0
    options: dict = field(default_factory=dict)   # the method's own settings (--option KEY=VALUE), checked
    progress: bool = True
    arch: dict = field(default_factory=dict)  # prune()'s description, with "kept_channels"
    runtime: Runtime = field(default_factory=Runtime)
    checkpoint: Checkpointing | None = None   # for the method's main training run
    logs: list[TrainLog] = field(default_factory=list)  # filled by fit(): what each training run did


class Method:
    """Base class: subclasses set ``name`` and implement :meth:`run` (returning the student).

    ``options`` declares every setting the method reads from ``MethodInput.options`` (``--option
    KEY=VALUE``) with its default; anything else is refused by :func:`check_options`. A setting
    whose default is text takes one of the words ``choices`` lists for it, a number the interval
    ``ranges`` gives for it, if any (``"(0, 1]"``, ``"[0, inf)"``)."""

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False
    iterative: ClassVar[bool] = True
    selects_blocks: ClassVar[bool] = False  # chooses the blocks to drop itself (--prune blocks:auto:K)
    options: ClassVar[dict[str, float | int | str]] = {}
    #: defaults that differ by model family, over ``options``: ``{"transformer": {...}}`` applies to
    #: a teacher with multi-head attention (see :func:`~mimir.models.anatomy.model_family`)
    family_options: ClassVar[dict[str, dict[str, float | int | str]]] = {}
    #: the defaults of runs made before each run recorded the options in effect (``method_options``
    #: in its summary), where they differ from ``options``: reports read older records with them
    unrecorded_options: ClassVar[dict[str, float | int | str] | None] = None
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    ranges: ClassVar[dict[str, str]] = {}
    #: options that make a run as short as it can be, for tests and dry-run grids (a layer-wise
    #: method's own step counts, which ``--iterations`` does not bound)
    quick_options: ClassVar[dict[str, float | int | str]] = {}
    #: the method whose plain run (no options) a run of this one is measured against in a report's
    #: ablation table, when this method is a variant of it (``mir-plus`` of ``mir``); None: not one
    ablation_base: ClassVar[str | None] = None

    def run(self, inp: MethodInput) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def choose_blocks(self, inp: MethodInput, k: int) -> tuple[list[str], list[dict]]:
        """Hook for methods that pick the ``k`` blocks to drop (``selects_blocks``), from the teacher
        and the unlabeled samples of ``inp`` (no student yet): the names and a ranking."""
        raise NotImplementedError(f"method '{self.name}' does not choose blocks")

    def summary_lines(self, summary: dict) -> list[str]:
        """Lines the method adds to the text summary of a run, before the table (e.g. a ranking)."""
        return []

    def family_defaults(self, family: str | None) -> dict[str, float | int | str]:
        """Every option's default for a teacher of ``family`` (see :func:`~mimir.models.anatomy.model_family`)."""
        return {**self.options, **self.family_options.get(family, {})}

    def in_effect(self, options: dict, family: str | None) -> dict[str, float | int | str]:
        """Every option's value in a run given ``options`` on a teacher of ``family``."""
        return {key: type(default)(options.get(key, default)) for key, default in self.family_defaults(family).items()}

    def settings(self, inp: MethodInput) -> dict[str, float | int | str]:
        """Every option's value in the run ``inp``: the given ones over the teacher's defaults."""
        return self.in_effect(inp.options, model_family(inp.teacher))

    def option(self, inp: MethodInput, key: str) -> float | int | str:
        return self.settings(inp)[key]

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


def check_options(method: str, options: dict) -> dict:
    """``options`` with each value converted to the type of the method's default; an unknown key
    is an error naming the known ones (a typo must not be silently ignored)."""
    spec = get_method(method)
    known = spec.options
    checked = {}
    for key, value in options.items():
        if key not in known:
            listing = f"known: {', '.join(sorted(known))}" if known else f"'{method}' takes no options"
            raise MimirError(f"unknown option '{key}' for method '{method}' ({listing})",
                             "fix the --option name, or see 'mimir methods'")
        if isinstance(known[key], str):
            if value not in spec.choices[key]:
                raise MimirError(f"option {key}={value!r} for method '{method}' is not one of "
                                 f"{', '.join(spec.choices[key])}", f"pass e.g. --option {key}={spec.choices[key][-1]}")
            checked[key] = value
            continue
        try:   # numbers arrive as text from --option and as numbers from YAML or Python
            checked[key] = type(known[key])(float(value))
        except (TypeError, ValueError):
            raise MimirError(f"option {key}={value!r} for method '{method}' is not a number",
                             f"pass e.g. --option {key}={known[key]}") from None
        if key in spec.ranges and not _within(checked[key], spec.ranges[key]):
            raise MimirError(f"option {key}={value} for method '{method}' is outside {spec.ranges[key]}",
                             f"pass a value in {spec.ranges[key]}, e.g. --option {key}={known[key]}")
    return checked


def _within(value: float, interval: str) -> bool:
    """Whether ``value`` lies in ``interval``, written ``[a, b]``, ``(a, b]``, ``[a, inf)``, ..."""
    low, high = (float(end) for end in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def copy_head(student: nn.Module, teacher: nn.Module) -> None:
    """The *replace* step: give the student an exact copy of the teacher's head weights."""
    for name in teacher.head_module_names():
        student.get_submodule(name).load_state_dict(teacher.get_submodule(name).state_dict())


def seeded(seed: int) -> torch.Generator:
    """A generator for a method's own draws (torch's global generator is never reseeded)."""
    return torch.Generator().manual_seed(seed)


def fit(inp: MethodInput, task: Task, desc: str, main: bool = True, cfg: TrainConfig | None = None) -> TrainLog:
    """Run ``task`` with the shared loop on the few samples and ``inp``'s settings (``cfg``: other
    settings, for a method whose options change them). ``main``: this is the method's main
    training run, the one that is checkpointed and resumed."""
    labels = inp.samples.labels if isinstance(inp.samples, LabeledImages) else None
    ckpt = replace(inp.checkpoint, tag=f"{inp.checkpoint.tag}:{desc}") if main and inp.checkpoint else None
    log = train(task, inp.samples.images, labels, inp.data_config, cfg or inp.train, inp.seed, inp.runtime,
                inp.progress, desc, ckpt)
    inp.logs.append(log)
    return log
