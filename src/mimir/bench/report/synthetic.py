"""Grids of the images ``--data synthetic:N`` made from a teacher alone, one per teacher and set."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from PIL import Image

import mimir.data.synthetic as synthesis
from mimir.bench.report.aggregate import recipe_of
from mimir.recipe import Recipe
from mimir.resolve import load_teacher


def synthetic_sets(records: list[dict]) -> dict[str, dict]:
    """PNG name -> the result line it shows, one per teacher and ``synthetic:N`` (the first seed)."""
    sets: dict[str, dict] = {}
    seen = set()
    for r in sorted((r for r in records if r.get("status") == "ok"), key=lambda r: recipe_of(r)["seed"]):
        c = recipe_of(r)
        n = synthesis.parse_synthetic(c["data"])
        if n is not None and (c["teacher"], c["weights"], c["data"]) not in seen:
            seen.add((c["teacher"], c["weights"], c["data"]))
            sets[f"synthetic_{c['teacher']}_{n}_seed{c['seed']}.png"] = r
    return sets


def _synthesise_again(name: str, record: dict) -> torch.Tensor:
    """The images the cell of ``record`` trained on (uint8, N x C x H x W): from mimir's synthesis
    cache when the grid ran on this machine, otherwise synthesised again with the cell's teacher,
    input settings, seed and kind of device (on the CPU, with a warning, where that was a GPU
    and there is none here)."""
    r = Recipe.from_dict(recipe_of(record))
    model, config = load_teacher(r.teacher, r.weights, r.feature_layer, r.data_config, r.input_settings())
    ran_on = str((record.get("summary") or {}).get("device", "cpu")).split()[0].partition(":")[0]
    here = "cuda" if ran_on == "cuda" and torch.cuda.is_available() else "cpu"
    if here != ran_on:
        warnings.warn(f"{name}: the cells synthesised their images on {ran_on}; drawn from a new synthesis on "
                      f"the CPU, which may differ slightly")
    return synthesis.synthetic_images(model.to(here), config, synthesis.parse_synthetic(r.data), r.seed,
                                      progress=False).images


def image_grid(images: torch.Tensor, scale: int = 3) -> Image.Image:
    """``images`` (uint8, N x C x H x W) side by side in a square grid, 1 black pixel around each,
    enlarged ``scale`` times without smoothing."""
    side = int(len(images) ** 0.5 + 0.999)
    n, c, h, w = images.shape
    canvas = torch.zeros(c, side * (h + 2), side * (w + 2), dtype=torch.uint8)
    for i, img in enumerate(images):
        y, x = divmod(i, side)
        canvas[:, y * (h + 2) + 1:y * (h + 2) + 1 + h, x * (w + 2) + 1:x * (w + 2) + 1 + w] = img
    array = canvas.permute(1, 2, 0).squeeze(-1).numpy()
    return Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)


def plot_synthetic(records: list[dict], out_dir: Path, count: int = 64) -> list[Path]:
    """A grid of the first ``count`` synthesised images of each set of :func:`synthetic_sets` (the
    set the cells trained on); returns the PNG paths."""
    paths = []
    for name, record in synthetic_sets(records).items():
        picture = image_grid(_synthesise_again(name, record)[:count].cpu())
        out_dir.mkdir(parents=True, exist_ok=True)
        picture.save(out_dir / name)
        paths.append(out_dir / name)
    return paths
