"""torchvision's ResNet-18/34/50 and MobileNetV2 with the mimir body / head split.

Parameter names are torchvision's own, so a user's torchvision weight file loads unchanged.
``small_input=True`` adapts them to 28-32 px images (3x3 stride-1 stem, no max-pool for ResNets;
stride-1 stem and first stride-2 stage for MobileNetV2), keeping a pre-pool map of at least 4x4.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenetv2, resnet

from mimir.models._base import SplitModel
from mimir.models._registry import register_model


class TVResNet(resnet.ResNet, SplitModel):
    classifier_name = "fc"

    def __init__(self, block, layers, num_classes: int = 1000, in_chans: int = 3,
                 small_input: bool = False) -> None:
        resnet.ResNet.__init__(self, block, layers, num_classes=num_classes)
        if small_input:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        elif in_chans != 3:
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))




class TVMobileNetV2(mobilenetv2.MobileNetV2, SplitModel):
    classifier_name = "classifier.1"

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False) -> None:
        mobilenetv2.MobileNetV2.__init__(self, num_classes=num_classes)
        stem = self.features[0][0]
        if in_chans != 3 or small_input:
            self.features[0][0] = nn.Conv2d(in_chans, stem.out_channels, 3, 1 if small_input else 2, 1,
                                            bias=False)
        if small_input:  # the first stride-2 inverted residual (24 channels) keeps the resolution
            self.features[2].conv[1][0].stride = (1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1)
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def head_module_names(self) -> list[str]:
        return ["classifier"]


@register_model
def resnet18(num_classes: int = 1000, in_chans: int = 3, small_input: bool = False) -> TVResNet:
    return TVResNet(resnet.BasicBlock, [2, 2, 2, 2], num_classes, in_chans, small_input)


@register_model
def resnet34(num_classes: int = 1000, in_chans: int = 3, small_input: bool = False) -> TVResNet:
    return TVResNet(resnet.BasicBlock, [3, 4, 6, 3], num_classes, in_chans, small_input)


@register_model
def resnet50(num_classes: int = 1000, in_chans: int = 3, small_input: bool = False) -> TVResNet:
    return TVResNet(resnet.Bottleneck, [3, 4, 6, 3], num_classes, in_chans, small_input)


@register_model
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3, small_input: bool = False) -> TVMobileNetV2:
    return TVMobileNetV2(num_classes, in_chans, small_input)
