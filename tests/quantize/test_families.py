"""Every model family mimir compresses quantizes to int8: registry models and the tested timm families."""

from __future__ import annotations

import pytest
import torch

from mimir.core import FASHION_MNIST, DataConfig
from mimir.data import UnlabeledImages
from mimir.models import create_model, list_models
from mimir.models.timm_models import TEST_SIZES, TESTED_FAMILIES
from mimir.quantize import quantize_model
from tests.helpers import small_model, tiered


def _images(channels: int, size: int, n: int = 8) -> UnlabeledImages:
    return UnlabeledImages(torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                                         generator=torch.Generator().manual_seed(0)))


#: the fast tier quantizes a CNN and a ViT; every other registry model and timm family (the mobile
#: networks' depthwise convolutions and squeeze-excitation among them) runs in the full suite
FAST = {"resnet20", "vit_p7"}


def _assert_quantized(q, compute: str) -> None:
    assert q.info["int8"].get(compute, 0) >= 1, q.info     # its convolutions / matrix products run in int8
    assert q.size < 0.5 * q.fp32_size


@pytest.mark.parametrize("name", tiered(list_models(), FAST))
def test_registry_models_quantize(name):
    torch.manual_seed(0)
    model = small_model(name).eval()
    q = quantize_model(model, FASHION_MNIST, _images(1, 28))
    _assert_quantized(q, "MatMul" if name.startswith("vit") else "Conv")
    if name.startswith("vit"):   # attention's Softmax and the LayerNorms stay in fp32, and say so
        assert q.info["fp32"]["Softmax"] >= 1 and q.info["fp32"]["LayerNormalization"] >= 1


@pytest.mark.parametrize("name", tiered(sorted(TESTED_FAMILIES.values()), FAST))
def test_timm_families_quantize(name):
    torch.manual_seed(0)
    model = create_model(f"timm:{name}", num_classes=10, **TEST_SIZES.get(name, {})).eval()
    size = model.default_data_config().input_size if name in TEST_SIZES else 64
    config = DataConfig(in_chans=3, input_size=size, num_classes=10)
    q = quantize_model(model, config, _images(3, size))
    _assert_quantized(q, "MatMul" if "vit" in name or "deit" in name else "Conv")
