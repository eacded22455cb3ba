"""What a model expects as input, the one spec every layer passes along."""

from __future__ import annotations

from dataclasses import dataclass

from mimir.errors import MimirError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class DataConfig:
    """What a model expects as input: channels, square size, normalisation, number of classes,
    and how a large image is brought to that size (resize interpolation, centre-crop fraction)."""

    in_chans: int = 3
    input_size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    num_classes: int = 1000
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise MimirError(f"interpolation '{self.interpolation}' is not one of {', '.join(INTERPOLATIONS)}",
                             "pass --interpolation bilinear, bicubic or nearest")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise MimirError(f"mean / std have {len(self.mean)} / {len(self.std)} values for a "
                             f"{self.in_chans}-channel input", "give one value per input channel")
        if not 0.0 < self.crop_pct <= 1.0:
            raise MimirError(f"crop_pct {self.crop_pct} is outside (0, 1]", "use e.g. 0.875")

    def to_dict(self) -> dict:
        return {"in_chans": self.in_chans, "input_size": self.input_size, "mean": list(self.mean),
                "std": list(self.std), "num_classes": self.num_classes, "interpolation": self.interpolation,
                "crop_pct": self.crop_pct}

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        """Also reads files written before ``interpolation`` / ``crop_pct`` existed (their defaults)."""
        return cls(int(d["in_chans"]), int(d["input_size"]), tuple(d["mean"]), tuple(d["std"]),
                   int(d["num_classes"]), str(d.get("interpolation", "bilinear")), float(d.get("crop_pct", 0.875)))


#: the input of a model nothing describes and that takes RGB images: ImageNet's settings
IMAGENET = DataConfig()
FASHION_MNIST = DataConfig(in_chans=1, input_size=28, mean=(0.2860,), std=(0.3530,), num_classes=10)
