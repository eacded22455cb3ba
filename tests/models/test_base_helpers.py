"""The shared helpers of models/_base: modes and trainable flags come back exactly, also on an error."""

import pytest
import torch
from torch import nn

from mimir.core import eval_mode, fingerprint, frozen_except


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.Dropout(), nn.Linear(2, 2)))


def test_eval_mode_restores_a_mixed_mode_also_on_error():
    net = _net().train()
    net[1].eval()   # a user's BatchNorm frozen on purpose
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        assert not any(m.training for m in net.modules())
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == before


def test_frozen_except_freezes_the_others_and_gives_their_flags_back():
    net = _net()
    net[0].bias.requires_grad_(False)
    before = [p.requires_grad for p in net.parameters()]
    with pytest.raises(RuntimeError, match="boom"), frozen_except(net, [net[0].weight]):
        assert [p.requires_grad for p in net.parameters()] == [p is net[0].weight for p in net.parameters()]
        raise RuntimeError("boom")
    assert [p.requires_grad for p in net.parameters()] == before


def test_fingerprint_follows_the_weights_and_buffers():
    torch.manual_seed(0)
    net = _net()
    same = _net()
    same.load_state_dict(net.state_dict())
    assert fingerprint(net) == fingerprint(same)
    with torch.no_grad():
        same[1].running_mean[0] += 1e-6
    assert fingerprint(net) != fingerprint(same)
