"""Files: atomic writes (a file is complete or absent), a lock between processes, and mimir's one
cache folder."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from mimir.errors import MimirError


def cache_root() -> Path:
    """Where mimir keeps what it downloads or computes once (Fashion-MNIST, synthesised images):
    ``$MIMIR_CACHE``, default ``~/.cache/mimir``."""
    return Path(os.environ.get("MIMIR_CACHE") or Path.home() / ".cache" / "mimir")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise MimirError(f"output folder '{path.parent}' does not exist", "create it or choose another --out")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: object, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) between processes, also on other machines
    where the file system supports ``flock`` (local disks, NFS v4, Lustre mounted with ``flock``);
    none where ``fcntl`` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:   # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
