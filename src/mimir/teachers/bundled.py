"""The trained teachers bundled with mimir: files beside this module named
``<model>_fashion_mnist.pt`` (mimir files, see :mod:`mimir.export.checkpoint`); each records the
``mimir train-teacher`` command that made it (:mod:`mimir.teachers.training`)."""

from __future__ import annotations

from pathlib import Path

BUNDLE_DIR = Path(__file__).parent


def bundled_teacher_path(name: str) -> Path | None:
    """Path of the trained Fashion-MNIST teacher shipped for registry model ``name``, if any."""
    path = BUNDLE_DIR / f"{name}_fashion_mnist.pt"
    return path if path.is_file() else None


def bundled_teachers() -> list[str]:
    return sorted(p.name.removesuffix("_fashion_mnist.pt") for p in BUNDLE_DIR.glob("*_fashion_mnist.pt"))
