"""Helpers the tests share (imported from here, never from another test file)."""

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

import mimir.engine.loop as loop
from mimir.models import create_model

#: registry models that take a small-input stem for 28 px images
SMALL = {"resnet18", "resnet34", "resnet50", "mobilenet_v2"}


def tiered(names, fast) -> list:
    """``names`` as pytest parameters: those in ``fast`` in the fast tier, the others marked slow
    (the full suite runs them all)."""
    def param(n):
        return pytest.param(*(n if isinstance(n, tuple) else (n,)), marks=pytest.mark.slow)

    return [n if n in fast else param(n) for n in names]


def small_model(name):
    """Registry model ``name`` shaped for 1-channel 28 px images (random weights)."""
    kwargs = {"num_classes": 10, "in_chans": 1}
    return create_model(name, **kwargs, **({"small_input": True} if name in SMALL else {}))


class UsersNet(nn.Module):
    """A user's own CNN, written as users write them (no mimir base class)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.trunk = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        return self.out(self.drop(torch.flatten(self.pool(self.trunk(self.stem(x))), 1)))


class Crash(Exception):
    pass


@contextmanager
def crash_after_first_checkpoint():
    """Inside: the loop writes its checkpoint, then raises; the block must end in that crash."""
    saved = loop.save_training_state

    def save_then_die(*args, **kwargs):
        saved(*args, **kwargs)
        raise Crash

    loop.save_training_state = save_then_die
    try:
        with pytest.raises(Crash):
            yield
    finally:
        loop.save_training_state = saved


# ----------------------------------------------------------------------------- benchmarks
ROOT = Path(__file__).resolve().parents[1]
#: a valid grid: one row, two methods, two sample sizes, two seeds
GOOD = {"name": "t", "iterations": 10, "seeds": [1, 2],
        "grid": [{"teacher": "resnet20", "prune": ["channels:0.5"], "methods": ["mir", "kd"], "samples": [5, 10]}]}


def result_line(method, seed, acc, samples=50, labels=False):
    """One finished cell's line of a results file, as `mimir bench` writes it (fixed numbers)."""
    return {"key": f"{method}-{samples}-{seed}", "status": "ok", "wall_seconds": 10.0,
            "finished_at": f"2026-11-21T10:0{seed}:00+00:00", "versions": {"torch": "2.x"},
            "config": {"teacher": "resnet20", "prune": "channels:0.5", "method": method, "samples": samples,
                       "seed": seed, "iterations": 400},
            "summary": {"teacher": {"accuracy": 92.0, "macs": 30e6, "params": 0.27e6},
                        "pruned": {"accuracy": 25.0, "macs": 15e6, "params": 0.14e6},
                        "compressed": {"accuracy": acc, "macs": 15e6, "params": 0.14e6},
                        "train_seconds": 8.0, "used_labels": labels}}


#: a small fixed results file: three seeds of mir, two of bp (with labels), one of none, one error
LINES = [result_line("mir", 1, 91.0), result_line("mir", 2, 91.5), result_line("mir", 3, 92.0),
         result_line("bp", 1, 80.0, labels=True), result_line("bp", 2, 84.0, labels=True),
         result_line("none", 1, 25.0), {"key": "broken", "status": "error", "error": "x"}]
