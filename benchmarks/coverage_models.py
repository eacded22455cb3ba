"""Third-party networks for the coverage sweep (benchmarks/coverage.py), as a user gives their own
model: a MODULE:CALLABLE that returns the nn.Module. Their code is the packages' own
(pip install efficientnet-pytorch efficientnet-lite-pytorch); random weights."""


def efficientnet_pytorch_b0():
    """lukemelas' EfficientNet-B0 (efficientnet-pytorch): "static same padding" Conv2d subclasses
    calling F.conv2d, swish, drop connect in its blocks."""
    from efficientnet_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-b0")


def efficientnet_lite0():
    """EfficientNet-Lite0 (efficientnet-lite-pytorch): the mobile variant without squeeze-excitation."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")
