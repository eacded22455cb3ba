"""A user's folder of images: recursive, png / jpg / webp / bmp, any mode, any size.

Folders can be large (an ImageNet training folder holds 1.28M files), so nothing is read until it
is needed: :func:`index_folder` lists file names (and class subfolders), :func:`sample_folder`
draws the few samples over that list and decodes only the chosen files, and
:class:`LabeledImageFiles` reads an evaluation folder batch by batch.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.few_sample import sample_indices
from mimir.data.transforms import stored_size
from mimir.errors import MimirError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_READ_ERRORS = (OSError, ValueError, SyntaxError)


def list_images(folder: str | Path, flag: str = "--data") -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted, after checking the folder exists.
    ``flag`` is the option that named the folder, for the error messages."""
    root = Path(folder)
    if not root.exists():
        raise MimirError(f"data folder '{root}' does not exist", f"check the path given to {flag}")
    if not root.is_dir():
        raise MimirError(f"'{root}' is not a folder", f"pass a folder of images to {flag}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise MimirError(
            f"data folder '{root}' contains no images",
            f"add {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files (subfolders are searched too)",
        )
    return files


def read_image(path: Path, in_chans: int, input_size: int, interpolation: str = "bilinear",
               crop_pct: float = 0.875) -> torch.Tensor:
    """One image as a ``C x S x S`` uint8 tensor, S = ``stored_size(input_size, crop_pct)``.

    Converted to grayscale or RGB to match ``in_chans``; resized (with ``interpolation``) so the
    shorter side is S, then centre-cropped to a square.
    """
    with Image.open(path) as img:
        img = img.convert("L" if in_chans == 1 else "RGB")
        arr = np.asarray(img, dtype=np.uint8).copy()
    tensor = torch.from_numpy(arr)
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    if in_chans not in (1, 3):
        tensor = tensor[:1].expand(in_chans, -1, -1).clone()
    size = stored_size(input_size, crop_pct)
    mode = v2.InterpolationMode(interpolation)
    tensor = v2.functional.resize(tensor, size, interpolation=mode, antialias=mode != v2.InterpolationMode.NEAREST)
    return v2.functional.center_crop(tensor, [size, size])


@dataclass(frozen=True)
class FolderIndex:
    """The image files under ``root`` and, for an ImageNet-style folder, their labels; nothing decoded."""

    root: Path
    files: tuple[Path, ...]
    labels: torch.Tensor | None = None
    classes: tuple[str, ...] = ()


def _class_of(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def _is_class_folder(root: Path, files: list[Path]) -> bool:
    """True when every image sits in a first-level subfolder and there are at least two of them
    (an ImageNet-style folder: subfolder name = class)."""
    names = [_class_of(p, root) for p in files]
    return None not in names and len(set(names)) >= 2


def index_folder(folder: str | Path, labeled: bool | None = None, flag: str = "--data") -> FolderIndex:
    """List ``folder``'s images. ``labeled=None`` takes labels when it is an ImageNet-style folder;
    ``True`` requires class subfolders (images outside them are left out); ``False`` never labels."""
    root = Path(folder)
    files = list_images(root, flag)
    if labeled is None:
        labeled = _is_class_folder(root, files)
    if not labeled:
        return FolderIndex(root, tuple(files))
    files = [p for p in files if _class_of(p, root) is not None]
    classes = sorted({_class_of(p, root) for p in files})
    if not classes:
        raise MimirError(f"'{root}' has no class subfolders", "put each class's images in its own subfolder")
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[_class_of(p, root)] for p in files], dtype=torch.long)
    return FolderIndex(root, tuple(files), labels, tuple(classes))


def _none_readable(count: int, root: Path) -> MimirError:
    return MimirError(f"none of the {count} image files in '{root}' could be read",
                      "check that they are valid png/jpg/webp/bmp images")


def _warn_skipped(skipped: int, root: Path) -> None:
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable image file(s) in '{root}'", stacklevel=3)


def _subset(index: FolderIndex, images: list[torch.Tensor], chosen: list[int]) -> LabeledImages | UnlabeledImages:
    stacked = torch.stack(images)
    source = f"folder:{index.root}"
    if index.labels is None:
        return UnlabeledImages(stacked, source=source)
    return LabeledImages(stacked, index.labels[chosen], index.classes, source=source)


def sample_folder(index: FolderIndex, n: int, seed: int, in_chans: int, input_size: int,
                  balanced: bool = False, interpolation: str = "bilinear",
                  crop_pct: float = 0.875) -> LabeledImages | UnlabeledImages:
    """``n`` readable images of ``index`` drawn with ``seed`` (see :func:`sample_indices`), reading
    only the chosen files (see :func:`read_image`). A chosen file that cannot be decoded is left out of the pool and the
    draw is repeated over the rest, so the result is still determined by the seed and the folder."""
    bad: set[int] = set()
    decoded: dict[int, torch.Tensor] = {}

    def read(i: int) -> bool:
        if i not in decoded and i not in bad:
            try:
                decoded[i] = read_image(index.files[i], in_chans, input_size, interpolation, crop_pct)
            except _READ_ERRORS:
                bad.add(i)
        return i in decoded

    def readable_so_far() -> np.ndarray:
        return np.delete(np.arange(len(index.files)), sorted(bad))

    while True:
        alive = readable_so_far()
        if len(alive) < n:
            if not decoded and not any(read(int(i)) for i in alive):
                raise _none_readable(len(index.files), index.root)
            alive = readable_so_far()  # the probe may have found more unreadable files
            unreadable = f", {len(bad)} more could not be read" if bad else ""
            raise MimirError(f"--samples {n} is more than the {len(alive)} images in '{index.root}'{unreadable}",
                             f"pass --samples {len(alive)} or fewer, or add images")
        labels = None if index.labels is None else index.labels[torch.from_numpy(alive)]
        chosen = alive[sample_indices(len(alive), n, seed, labels=labels, balanced=balanced).numpy()].tolist()
        if all([read(i) for i in chosen]):  # a list: read every chosen file, not just up to the first bad one
            _warn_skipped(len(bad), index.root)
            return _subset(index, [decoded[i] for i in chosen], chosen)


def read_folder(index: FolderIndex, in_chans: int, input_size: int, interpolation: str = "bilinear",
                crop_pct: float = 0.875) -> LabeledImages | UnlabeledImages:
    """Every readable image of ``index`` in memory (for small folders). Unreadable files are skipped with a count."""
    images, kept = [], []
    for i, path in enumerate(tqdm(index.files, desc=f"read {index.root.name or index.root}", leave=False,
                                  disable=len(index.files) < 200)):
        try:
            images.append(read_image(path, in_chans, input_size, interpolation, crop_pct))
            kept.append(i)
        except _READ_ERRORS:
            continue
    if not images:
        raise _none_readable(len(index.files), index.root)
    _warn_skipped(len(index.files) - len(kept), index.root)
    return _subset(index, images, kept)


def load_image_folder(folder: str | Path, in_chans: int, input_size: int, interpolation: str = "bilinear",
                      crop_pct: float = 0.875, flag: str = "--data") -> UnlabeledImages:
    """All readable images under ``folder``, unlabeled (class subfolders, if any, are not read as labels)."""
    index = index_folder(folder, labeled=False, flag=flag)
    return read_folder(index, in_chans, input_size, interpolation, crop_pct)  # type: ignore[return-value]


def load_labeled_folder(folder: str | Path, in_chans: int, input_size: int) -> LabeledImages:
    """All readable images of an ImageNet-style folder (one subfolder per class, sorted names = class indices)."""
    return read_folder(index_folder(folder, labeled=True), in_chans, input_size)  # type: ignore[return-value]


def load_folder(folder: str | Path, in_chans: int, input_size: int) -> LabeledImages | UnlabeledImages:
    """All readable images of a folder: with class labels when it is ImageNet-style, unlabeled otherwise."""
    return read_folder(index_folder(folder), in_chans, input_size)


class LabeledImageFiles(Dataset):
    """An ImageNet-style folder read lazily: ``dataset[i]`` decodes one file into ``(image, label)``,
    or ``None`` when it cannot be read (evaluation skips such files and says how many)."""

    def __init__(self, folder: str | Path, in_chans: int, input_size: int, flag: str = "--eval-data",
                 interpolation: str = "bilinear", crop_pct: float = 0.875) -> None:
        self.index = index_folder(folder, labeled=True, flag=flag)
        self.in_chans, self.input_size = in_chans, input_size
        self.resize = (interpolation, crop_pct)
        self.labels = self.index.labels
        self.classes = self.index.classes
        self.source = f"folder:{self.index.root}"
        # fail now, not after training, when no file decodes (normally this reads one file)
        if not any(self[i] is not None for i in range(len(self))):
            raise _none_readable(len(self), self.index.root)

    def __len__(self) -> int:
        return len(self.index.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        try:
            return read_image(self.index.files[i], self.in_chans, self.input_size, *self.resize), int(self.labels[i])
        except _READ_ERRORS:
            return None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor, int]:
    ok = [item for item in items if item is not None]
    if not ok:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), len(items)
    return torch.stack([x for x, _ in ok]), torch.tensor([y for _, y in ok]), len(items) - len(ok)


def _loader_workers() -> int:
    # daemonic processes (e.g. multiprocessing.Pool workers) may not start children
    if multiprocessing.current_process().daemon:
        return 0
    return min(8, os.cpu_count() or 1)


def iter_labeled_files(data: LabeledImageFiles, batch_size: int):
    """``(images, labels)`` batches of a lazily read folder, decoded by DataLoader workers; warns
    once at the end with the number of unreadable files, and raises if none could be read."""
    skipped = total = 0
    workers = _loader_workers() if len(data) >= 4 * batch_size else 0
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=_collate_readable)
    for images, labels, bad in loader:
        skipped += bad
        total += len(labels)
        if len(labels):
            yield images, labels
    if total == 0:
        raise _none_readable(len(data), data.index.root)
    _warn_skipped(skipped, data.index.root)
