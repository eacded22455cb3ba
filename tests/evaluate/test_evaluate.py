import torch
from torch import nn

from mimir.core import DataConfig
from mimir.data import LabeledImages
from mimir.evaluate import accuracy, count_macs_params, latency_ms


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_macs_are_multiply_accumulates():
    macs, params = count_macs_params(_Tiny(), torch.zeros(1, 1, 8, 8))
    assert params == 4 * 9 + 4 * 3
    assert macs == 4 * 9 * 8 * 8 + 4 * 3   # conv: k*k*Cin per output element; linear: in*out


def test_latency_is_measured():
    assert 0 < latency_ms(_Tiny(), torch.zeros(1, 1, 8, 8), seconds=0.05) < 1000


class _Oracle(nn.Module):
    """Predicts the class written in the image's first pixel: accuracy is known exactly."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].round().long(), 4).float()


def test_accuracy_counts_correct_predictions():
    images = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    images[:, 0, 0, 0] = labels.to(torch.uint8)
    labels[:3] = (labels[:3] + 1) % 4                      # three wrong labels
    config = DataConfig(1, 4, (0.0,), (1 / 255,), 4)       # normalisation gives back the raw values
    assert accuracy(_Oracle(), LabeledImages(images, labels), config, batch_size=3) == 70.0
