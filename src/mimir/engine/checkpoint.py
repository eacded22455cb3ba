"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trained module's state, the optimiser, the scheduler, the gradient scaler,
the number of finished steps (the batch schedule and the views are functions of the seed and the
step, see :mod:`mimir.engine.views`), the losses so far and every random-number state. It is a
plain dict of tensors and Python values, written atomically (temporary file, then rename) and
loadable with ``torch.load(..., weights_only=True)``; a run killed while writing leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mimir.core import atomic_save
from mimir.errors import MimirError

FORMAT = "mimir-train/1"


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often to checkpoint one training run, and whether to resume from the file.

    ``tag`` identifies the run (the recipe's key and the training stage): a checkpoint written by
    another run is refused instead of being silently continued."""

    path: Path
    every: int = 0          # steps between checkpoints; 0: only when interrupted
    resume: bool = False
    tag: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.every < 0:
            raise MimirError(f"--checkpoint-every must be >= 0 (got {self.every})", "pass a number of iterations")


def rng_state() -> dict:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [keys.astype(np.int64).tolist(), int(pos), int(has_gauss),
                                                       float(gauss)], "python": repr(random.getstate())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(ckpt: Checkpointing, step: int, module: torch.nn.Module, optimizer, scheduler, scaler,
                        losses: torch.Tensor, ema: torch.nn.Module | None = None) -> None:
    atomic_save({
        "format": FORMAT, "tag": ckpt.tag, "step": step,
        "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
        "losses": losses[:step].detach().float().cpu(), "rng": rng_state(),
        **({"ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()}} if ema is not None else {}),
    }, ckpt.path)


def load_training_state(ckpt: Checkpointing) -> dict:
    """The saved state, after checking that it is a training checkpoint of this very run."""
    if not ckpt.path.is_file():
        raise MimirError(f"--resume: no checkpoint at '{ckpt.path}'",
                         "run without --resume to start, or pass the --checkpoint file that was written")
    try:
        state = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file means the same to the user
        raise MimirError(f"checkpoint '{ckpt.path}' is unreadable ({type(err).__name__})",
                         "delete it and start again without --resume") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MimirError(f"'{ckpt.path}' is not a mimir training checkpoint", "pass the file --checkpoint wrote")
    if state.get("tag") != ckpt.tag:
        raise MimirError(f"checkpoint '{ckpt.path}' belongs to another run (its recipe or stage differs)",
                         "resume with the command that wrote it, or delete the file to start afresh")
    return state
