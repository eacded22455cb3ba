"""MACs are counted by operator: a Conv2d subclass with its own forward, F.conv2d, F.linear,
torch.matmul and attention all count, each with its exact number of multiply-accumulates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mimir.evaluate import count_macs_params


class SamePadConv(nn.Conv2d):
    """A third-party "static same padding" convolution: a subclass of nn.Conv2d whose forward pads
    and calls F.conv2d itself (as EfficientNet-Lite ports do)."""

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = SamePadConv(3, 8, 3)                  # 8x8 map out
        self.dw = SamePadConv(8, 8, 3, groups=8)          # depthwise
        self.proj = nn.Parameter(torch.randn(8, 4))       # used through torch.matmul
        self.fc = nn.Parameter(torch.randn(10, 4))        # used through F.linear

    def forward(self, x):
        x = self.dw(self.stem(x))                          # (1, 8, 8, 8)
        tokens = x.flatten(2).transpose(1, 2)              # (1, 64, 8)
        q = tokens.unsqueeze(1)                            # (1, 1, 64, 8): one head
        tokens = F.scaled_dot_product_attention(q, q, q).squeeze(1)
        tokens = torch.matmul(tokens, self.proj)           # (1, 64, 4)
        return F.linear(tokens.mean(1), self.fc)           # (1, 10)


def test_every_operator_counts_with_its_exact_macs():
    macs, params = count_macs_params(Mixed(), torch.randn(2, 3, 8, 8))
    expected = (64 * 8 * 3 * 9          # stem: each output element of 8 channels reads 3 x 3 x 3
                + 64 * 8 * 1 * 9        # depthwise: one input channel per output channel
                + 64 * 64 * 8 * 2       # attention: Q K^T and the weighted sum of V
                + 64 * 8 * 4            # matmul
                + 4 * 10)               # linear
    assert macs == expected
    assert params == sum(p.numel() for p in Mixed().parameters())


def test_a_conv2d_subclass_counts_as_the_convolution_it_computes():
    plain = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    custom = nn.Sequential(SamePadConv(3, 16, 3), nn.ReLU(), SamePadConv(16, 16, 3))
    x = torch.randn(1, 3, 32, 32)
    assert count_macs_params(custom, x)[0] == count_macs_params(plain, x)[0] == 32 * 32 * 16 * (3 + 16) * 9
