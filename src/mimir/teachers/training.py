"""Training a teacher on Fashion-MNIST with labels (how the bundled teachers were made)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from mimir.core import FASHION_MNIST, seeded_global_rng
from mimir.data import load_fashion_mnist
from mimir.engine import Runtime, TrainConfig, train
from mimir.evaluate import accuracy
from mimir.export.checkpoint import save_model
from mimir.methods.bp import supervised
from mimir.models import accepts, create_model


def fashion_mnist_model(name: str) -> nn.Module:
    """Registry model ``name`` shaped for Fashion-MNIST (1 channel, 10 classes, small-input stem)."""
    kwargs = {"num_classes": 10, "in_chans": 1}
    if accepts(name, "small_input"):
        kwargs["small_input"] = True
    return create_model(name, **kwargs)


def train_teacher(name: str, epochs: int = 10, batch_size: int = 128, lr: float = 0.1,
                  weight_decay: float = 5e-4, seed: int = 0, out: str | Path | None = None,
                  progress: bool = True, runtime: Runtime = Runtime(), optimizer: str = "sgd",
                  warmup: float = 0.0) -> tuple[nn.Module, dict]:
    """Supervised training on all 60,000 Fashion-MNIST training images (SGD + Nesterov or AdamW,
    cosine after an optional linear warm-up),
    with the shared loop (pad-and-crop + flip, channels-last, on ``runtime``'s device).

    Returns the model and ``{"test_accuracy", "epochs", ...}``; writes a mimir file to ``out``.
    """
    with seeded_global_rng(seed):   # the initial weights, drawn from torch's generator, without touching it outside
        model = fashion_mnist_model(name).train()
    train_set, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    cfg = TrainConfig(iterations=epochs * steps_per_epoch, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, schedule="cosine", nesterov=True, optimizer=optimizer,
                      warmup=warmup)
    start = time.perf_counter()
    train(supervised(model), train_set.images, train_set.labels, FASHION_MNIST, cfg, seed, runtime, progress,
          desc=f"train {name}")
    info = {
        "test_accuracy": accuracy(model, test, FASHION_MNIST, runtime=runtime),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
        "optimizer": optimizer, "warmup": warmup,
        "train_seconds": round(time.perf_counter() - start, 1), "torch": str(torch.__version__),
        "command": f"mimir train-teacher {name} --epochs {epochs} --batch-size {batch_size} --lr {lr} "
                   f"--weight-decay {weight_decay} --seed {seed}"
                   + (f" --optimizer {optimizer} --warmup {warmup}" if optimizer != "sgd" or warmup else "")
                   + (f" --out {out}" if out else ""),
    }
    model.cpu().to(memory_format=torch.contiguous_format)
    if out is not None:
        save_model(out, model, FASHION_MNIST, info=info)
    return model.eval(), info
