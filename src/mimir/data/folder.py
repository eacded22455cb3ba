"""A user's folder of images: recursive, png / jpg / webp / bmp, any mode, any size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from tqdm.auto import tqdm

from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.transforms import stored_size
from mimir.errors import MimirError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted, after checking the folder exists."""
    root = Path(folder)
    if not root.exists():
        raise MimirError(f"data folder '{root}' does not exist", "check the path given to --data")
    if not root.is_dir():
        raise MimirError(f"'{root}' is not a folder", "pass a folder of images to --data")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MimirError(
            f"data folder '{root}' contains no images",
            f"add {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files (subfolders are searched too)",
        )
    return files


def read_image(path: Path, in_chans: int, input_size: int) -> torch.Tensor:
    """One image as a ``C x S x S`` uint8 tensor, S = ``stored_size(input_size)``.

    Converted to grayscale or RGB to match ``in_chans``; resized so the shorter side is S,
    then centre-cropped to a square.
    """
    with Image.open(path) as img:
        img = img.convert("L" if in_chans == 1 else "RGB")
        arr = np.asarray(img, dtype=np.uint8).copy()
    tensor = torch.from_numpy(arr)
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    if in_chans not in (1, 3):
        tensor = tensor[:1].expand(in_chans, -1, -1).clone()
    size = stored_size(input_size)
    tensor = v2.functional.resize(tensor, size, antialias=True)
    return v2.functional.center_crop(tensor, [size, size])


def _read_all(files: list[Path], in_chans: int, input_size: int, root: Path) -> tuple[torch.Tensor, list[int]]:
    images, kept = [], []
    for i, path in enumerate(tqdm(files, desc=f"read {root.name or root}", leave=False,
                                  disable=len(files) < 200)):
        try:
            images.append(read_image(path, in_chans, input_size))
            kept.append(i)
        except (OSError, ValueError, SyntaxError):
            continue
    skipped = len(files) - len(kept)
    if not images:
        raise MimirError(f"none of the {len(files)} image files in '{root}' could be read",
                         "check that they are valid png/jpg/webp/bmp images")
    if skipped:
        warnings.warn(f"skipped {skipped} unreadable image file(s) in '{root}'", stacklevel=3)
    return torch.stack(images), kept


def load_image_folder(folder: str | Path, in_chans: int, input_size: int,
                      files: list[Path] | None = None) -> UnlabeledImages:
    """All readable images under ``folder``, unlabeled. Unreadable files are skipped with a count."""
    files = list_images(folder) if files is None else files
    images, _ = _read_all(files, in_chans, input_size, Path(folder))
    return UnlabeledImages(images, source=f"folder:{folder}")


def load_labeled_folder(folder: str | Path, in_chans: int, input_size: int,
                        files: list[Path] | None = None) -> LabeledImages:
    """An ImageNet-style folder (one subfolder per class, sorted names = class indices)."""
    root = Path(folder)
    files = list_images(root) if files is None else files
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    if not classes:
        raise MimirError(f"'{root}' has no class subfolders", "put each class's images in its own subfolder")
    index = {c: i for i, c in enumerate(classes)}
    files = [p for p in files if len(p.relative_to(root).parts) > 1]
    images, kept = _read_all(files, in_chans, input_size, root)
    labels = torch.tensor([index[files[i].relative_to(root).parts[0]] for i in kept], dtype=torch.long)
    return LabeledImages(images, labels, tuple(classes), source=f"folder:{folder}")


def is_class_folder(folder: str | Path, files: list[Path] | None = None) -> bool:
    """True when every image sits in a first-level subfolder and there are at least two of them
    (an ImageNet-style folder: subfolder name = class)."""
    root = Path(folder)
    files = list_images(root) if files is None else files
    parts = [p.relative_to(root).parts for p in files]
    return all(len(x) > 1 for x in parts) and len({x[0] for x in parts}) >= 2


def load_folder(folder: str | Path, in_chans: int, input_size: int) -> LabeledImages | UnlabeledImages:
    """An ImageNet-style folder with its class labels, any other folder unlabeled."""
    files = list_images(folder)
    if is_class_folder(folder, files):
        return load_labeled_folder(folder, in_chans, input_size, files)
    return load_image_folder(folder, in_chans, input_size, files)
