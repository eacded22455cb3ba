"""Every registered model: head(body(x)) == model(x), and a spatial pre-pool map."""

import pytest
import torch
import torchvision

from mimir.errors import MimirError
from mimir.models import SplitModel, create_model, list_models, wrap_model
from tests.helpers import SMALL, UsersNet, small_model


@pytest.mark.parametrize("name", list_models())
def test_head_of_body_is_the_model(name):
    torch.manual_seed(0)
    model = small_model(name).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-5)
    assert features.dim() == 4 or (features.dim() == 3 and name.startswith("vit"))   # a map, or ViT tokens
    width = features.shape[1] if features.dim() == 4 else features.shape[-1]
    assert model.forward_head(features, pre_logits=True).shape == (3, width)


@pytest.mark.parametrize("name", sorted(SMALL | {"resnet20", "resnet56"}))
def test_small_input_keeps_a_4x4_map(name):
    with torch.no_grad():
        assert small_model(name).eval().forward_features(torch.zeros(1, 1, 28, 28)).shape[-1] >= 4


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_imagenet_shape_gives_7x7(name):
    with torch.no_grad():
        f = create_model(name).eval().forward_features(torch.zeros(1, 3, 224, 224))
    assert f.shape[-2:] == (7, 7)


def test_torchvision_weights_load_unchanged():
    tv = torchvision.models.resnet18(num_classes=10)
    ours = create_model("resnet18", num_classes=10)
    ours.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), tv.eval()(x), atol=1e-5)


def test_unknown_model():
    with pytest.raises(MimirError, match="unknown model 'resnet21'"):
        create_model("resnet21")


def test_users_model_split_is_detected():
    net = UsersNet().eval()
    wrapped = wrap_model(net, 3, 32)
    assert isinstance(wrapped, SplitModel)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert wrapped.forward_features(x).shape == (2, 16, 16, 16)
        assert torch.allclose(wrapped.eval()(x), net(x), atol=1e-6)


def test_users_model_split_at_named_layer():
    net = torchvision.models.resnet18(num_classes=7).eval()
    wrapped = wrap_model(net, 3, 64, feature_layer="layer4")
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert torch.allclose(wrapped.forward_head(wrapped.forward_features(x)), net(x), atol=1e-5)


def test_feature_layer_that_does_not_exist():
    with pytest.raises(MimirError, match="no layer named 'layer9'"):
        wrap_model(torchvision.models.resnet18(), 3, 64, feature_layer="layer9")


def test_feature_layer_that_is_not_the_pre_pool_map():
    with pytest.raises(MimirError, match="is not global average pooling"):
        wrap_model(torchvision.models.resnet18(), 3, 64, feature_layer="layer3")
