"""A grid evaluates the same teacher in many cells: its accuracy is computed once per weights."""

import torch

from mimir.core import DataConfig, Memo
from mimir.data import LabeledImages
from mimir.engine import Runtime
from mimir.evaluate import measure
from mimir.models import create_model


def _accuracy(model, data, config, key):
    return measure._accuracy(model, data, config, Runtime(), False, "", key)


def _setup():
    torch.manual_seed(0)
    data = LabeledImages(torch.randint(0, 255, (12, 1, 16, 16), dtype=torch.uint8), torch.randint(0, 10, (12,)))
    return create_model("resnet20", num_classes=10, in_chans=1), data, DataConfig(1, 16, (0.5,), (0.5,), 10)


def test_same_weights_same_named_set_is_evaluated_once(monkeypatch):
    model, data, config = _setup()
    calls = []
    real = measure.accuracy
    monkeypatch.setattr(measure, "accuracy", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(measure, "ACCURACY_MEMO", Memo(64))
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


def test_the_memo_is_bounded_and_forgets_the_least_recently_used():
    memo = Memo(2)
    calls = []
    for key in ("a", "b", "a", "c", "b"):
        memo.get(key, lambda k=key: calls.append(k) or k.upper())
    # "a" was used again before "c" came, so "b" went first and had to be computed again
    assert calls == ["a", "b", "c", "b"] and len(memo) == 2 and "a" not in memo
    assert measure.ACCURACY_MEMO.size >= 1
