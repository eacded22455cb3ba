"""CIFAR-style ResNets (He et al. 2016, section 4.2): ResNet-20 and ResNet-56.

Three stages of 16 / 32 / 64 channels on a full-resolution 3x3 stem; the stage-changing blocks
use a 1x1 conv + BN shortcut ("option B") so that the network is a plain traceable graph for
Torch-Pruning (the parameter-free zero-padding shortcut is not).
"""

from __future__ import annotations

import torch
from torch import nn

from mimir.models._base import SplitModel
from mimir.models._registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(SplitModel):
    classifier_name = "fc"

    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("CIFAR ResNet depth must be 6n + 2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        widths, inplanes = (16, 32, 64), 16
        for stage, planes in enumerate(widths, start=1):
            blocks = []
            for i in range(n):
                stride = 2 if (stage > 1 and i == 0) else 1
                blocks.append(BasicBlock(inplanes, planes, stride))
                inplanes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))




@register_model
def resnet20(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    return CifarResNet(20, num_classes, in_chans)


@register_model
def resnet56(num_classes: int = 10, in_chans: int = 3) -> CifarResNet:
    return CifarResNet(56, num_classes, in_chans)
