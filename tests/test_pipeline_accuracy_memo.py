"""A grid evaluates the same teacher in many cells: its accuracy is computed once per weights."""

import torch

from mimir import pipeline as api
from mimir.core import DataConfig
from mimir.data import LabeledImages
from mimir.engine import Runtime
from mimir.models import create_model


def _accuracy(model, data, config, key):
    return api._accuracy(model, data, config, Runtime(), False, "", key)


def _setup():
    torch.manual_seed(0)
    data = LabeledImages(torch.randint(0, 255, (12, 1, 16, 16), dtype=torch.uint8), torch.randint(0, 10, (12,)))
    return create_model("resnet20", num_classes=10, in_chans=1), data, DataConfig(1, 16, (0.5,), (0.5,), 10)


def test_same_weights_same_named_set_is_evaluated_once(monkeypatch):
    model, data, config = _setup()
    calls = []
    real = api.accuracy
    monkeypatch.setattr(api, "accuracy", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(api, "_ACCURACY_MEMO", {})
    first = _accuracy(model, data, config, "set-a")
    copy = create_model("resnet20", num_classes=10, in_chans=1)
    copy.load_state_dict(model.state_dict())
    assert _accuracy(copy, data, config, "set-a") == first
    assert len(calls) == 1  # identical weights: computed once

    with torch.no_grad():
        copy.fc.bias[0] += 1.0
    _accuracy(copy, data, config, "set-a")  # one changed weight
    _accuracy(model, data, config, "set-b")  # another evaluation set
    _accuracy(model, data, config, None)  # an unnamed (in-memory) set is never memoised
    _accuracy(model, data, config, None)
    assert len(calls) == 5


def test_fingerprint_sees_buffers_and_structure():
    model, _, _ = _setup()
    from mimir.core import fingerprint

    base = fingerprint(model)
    model.bn1.running_mean += 0.1
    assert fingerprint(model) != base
    other = create_model("resnet20", num_classes=10, in_chans=1)
    other.load_state_dict(model.state_dict())
    assert fingerprint(other) == fingerprint(model)
    other.relu = torch.nn.Tanh()  # same weights, another function
    assert fingerprint(other) != fingerprint(model)
