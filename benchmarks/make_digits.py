"""Write the out-of-domain image folder of benchmarks/beyond-mir.yaml: 300 handwritten digits.

Source: the UCI optical-recognition digits as scikit-learn ships them (``sklearn/datasets/data/
digits.csv.gz``: 1,797 images of 8 x 8 pixels, 17 grey levels, the label in the last column). Each
chosen image is scaled to 0-255, enlarged to 20 x 20 (bilinear) and centred on a black 28 x 28
canvas, as MNIST frames its digits. The labels are not written: a flat folder of PNGs.

    pip install --target /tmp/skl scikit-learn
    python benchmarks/make_digits.py /tmp/skl/sklearn/datasets/data/digits.csv.gz benchmarks/data/digits-300
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="digits.csv.gz from scikit-learn")
    parser.add_argument("out", help="folder to write (created)")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with gzip.open(args.csv, "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    pixels = rows[:, :64].reshape(-1, 1, 8, 8) / 16.0          # the label column is dropped here
    chosen = np.sort(np.random.default_rng(args.seed).choice(len(pixels), args.count, replace=False))
    big = F.interpolate(torch.from_numpy(pixels[chosen]).float(), size=(20, 20), mode="bilinear",
                        align_corners=False).clamp(0, 1)
    canvas = torch.zeros(args.count, 28, 28)
    canvas[:, 4:24, 4:24] = big[:, 0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(canvas.mul(255).round().to(torch.uint8).numpy()):
        Image.fromarray(img, mode="L").save(out / f"digit-{i:03d}.png")
    print(f"wrote {args.count} images to {out}")


if __name__ == "__main__":
    main()
