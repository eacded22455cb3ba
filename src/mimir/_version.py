"""The package version, and those of the libraries it runs on (its own module, so that any layer
may read them)."""

from __future__ import annotations

import platform
from importlib import metadata

__version__ = "0.1.0"

#: the distributions whose versions decide what mimir computes (the last two are optional extras)
LIBRARIES = ("torch", "torchvision", "timm", "torch-pruning", "onnx", "onnxruntime", "safetensors", "openvino",
             "submitit")


def library_versions() -> dict[str, str]:
    """mimir's, Python's and each of :data:`LIBRARIES`' installed version ("not installed" for an
    optional one that is missing), read from the installed packages' metadata without importing them."""
    found = {"mimir": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
