"""VGG-16 with BatchNorm for small inputs (the CIFAR variant used by FSKD and Cross Distillation).

Four 2x2 max-pools (ceil mode) instead of five, so a 28 or 32 px image keeps a 2x2 pre-pool map;
the head is global average pooling + one linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

from mimir.models._base import SplitModel
from mimir.models._registry import register_model

_CFG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class VGG(SplitModel):
    classifier_name = "classifier"

    def __init__(self, cfg=_CFG16, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)



@register_model
def vgg16_bn(num_classes: int = 10, in_chans: int = 3) -> VGG:
    return VGG(_CFG16, num_classes, in_chans)
