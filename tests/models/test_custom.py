"""A user's own nn.Module: the pre-pool map found however the pooling is written, and the user's
model left exactly as it was."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mimir.errors import MimirError
from mimir.models import wrap_model
from mimir.prune import prune


class _Net(nn.Module):
    """Conv net whose global pooling is written as a function, in one of several spellings."""

    def __init__(self, spelling: str):
        super().__init__()
        self.spelling = spelling
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(self.stem(x))))
        if self.spelling == "mean":
            x = x.mean((2, 3))
        elif self.spelling == "adaptive":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        elif self.spelling == "avg_pool":
            x = torch.flatten(F.avg_pool2d(x, x.shape[-1]), 1)
        return self.fc(F.dropout(x, 0.1, self.training))


class _Tokens(nn.Module):
    """A tiny token model pooled by ``x.mean(1)``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, 4)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = tokens + self.mlp(tokens)
        return self.head(tokens.mean(1))


class _Untraceable(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) and a pooling *module*."""

    def __init__(self, pool: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1) if pool else None
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 1e9:      # data-dependent: fx raises
            x = x * 2
        x = self.pool(x) if self.pool is not None else x.mean((2, 3), keepdim=True)
        return self.fc(torch.flatten(x, 1))


X = torch.randn(3, 3, 32, 32)


@pytest.mark.parametrize("spelling", ["mean", "adaptive", "avg_pool"])
def test_functional_pooling_is_found(spelling):
    net = _Net(spelling).eval()
    wrapped = wrap_model(net, 3, 32)
    with torch.no_grad():
        features = wrapped.forward_features(X)
        assert features.shape == (3, 16, 16, 16)
        reference = F.relu(net.bn(net.conv(net.stem(X))))
        assert torch.allclose(features, reference, atol=1e-6)
        assert torch.allclose(wrapped(X), net(X), atol=1e-6)
    assert wrapped.classifier_name == "model.fc"


def test_token_mean_is_found_and_pruning_keeps_the_width_the_head_needs():
    wrapped = wrap_model(_Tokens().eval(), 3, 32)
    with torch.no_grad():
        assert wrapped.forward_features(X).shape == (3, 64, 16)
    student, _ = prune(wrapped, "channels:0.5", torch.zeros(1, 3, 32, 32))
    assert student.model.get_submodule("mlp.0").out_features == 16      # the MLP hidden width: inner
    assert student.model.get_submodule("embed").out_channels == 16      # tied to the head by the addition
    with torch.no_grad():
        assert student(X).shape == (3, 5)


def test_untraceable_model_falls_back_to_its_pooling_module():
    net = _Untraceable().eval()
    wrapped = wrap_model(net, 3, 32)
    with torch.no_grad():
        assert wrapped.forward_features(X).shape == (3, 8, 32, 32)
        assert torch.allclose(wrapped(X), net(X), atol=1e-6)


def test_untraceable_model_without_pooling_module_asks_for_the_layer():
    with pytest.raises(MimirError, match="--feature-layer"):
        wrap_model(_Untraceable(pool=False), 3, 32)
    wrapped = wrap_model(_Untraceable(pool=False), 3, 32, feature_layer="conv")
    assert wrapped.forward_features(X).shape == (3, 8, 32, 32)


def _state(net):
    return ({n: m.training for n, m in net.named_modules()}, sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                                                                 for m in net.modules()))


@pytest.mark.parametrize("make,layer", [(lambda: _Net("mean"), None), (_Untraceable, None),
                                        (lambda: _Net("mean"), "conv"), (lambda: _Untraceable(False), None),
                                        (lambda: _Net("mean"), "stem.0")])
def test_the_users_model_keeps_its_mode_and_gets_no_hooks(make, layer):
    net = make().train()
    net.stem[1].eval() if hasattr(net, "stem") else None     # a mixed mode must survive too
    before = _state(net)
    params = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        wrapped = wrap_model(net, 3, 32, feature_layer=layer)
        prune(wrapped, "channels:0.5", torch.zeros(1, 3, 32, 32))
    except MimirError:
        pass   # ('stem.0' is not the pre-pool map; an untraceable model without pooling needs a layer)
    assert _state(net) == before
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in params.items())   # BN statistics too
