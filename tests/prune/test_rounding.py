"""The default rounding follows the CPU the model is prepared for, and a run records what it used."""

import pytest
import torch
from torch import nn

from mimir import api
from mimir.prune import auto_round_to, prune, resolve_round_to
from mimir.prune.rounding import rounded
from mimir.recipe import load_recipe
from tests.helpers import small_model

X = torch.zeros(1, 1, 28, 28)
AVX512, AVX2 = "avx2,fma,avx512f,avx512bw", "avx2,fma"


def _widths(model):
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("flags,block", [(AVX512, 16), (AVX2, 8), ("sse4_2", 4)])
def test_the_default_is_the_cpus_channel_block(monkeypatch, flags, block):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", flags)
    assert auto_round_to() == resolve_round_to(None) == block
    assert resolve_round_to(8) == 8 and resolve_round_to(1) == 1   # a given K wins


@pytest.mark.parametrize("keep,channels,k,expected", [
    (67, 96, 16, 64), (22, 32, 16, 16), (11, 16, 16, 8), (5, 16, 16, 8), (44, 64, 16, 48),   # below K: multiples of 8
    (67, 96, 8, 64), (11, 16, 8, 8), (3, 16, 8, 8), (3, 4, 8, 3), (4, 8, 16, 4),              # never undoes the cut
    (3, 16, 4, 4), (67, 96, 1, 67), (67, 96, None, 67)])                                     # 1 / None: no rounding
def test_rounding_rule(keep, channels, k, expected):
    assert rounded(keep, channels, k) == expected


@pytest.mark.parametrize("flags", [AVX512, AVX2])
def test_resnet20_channels_half_is_unchanged_by_the_default(monkeypatch, flags):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", flags)
    teacher = small_model("resnet20").eval()
    plain, _ = prune(teacher, "channels:0.5", X)
    auto, _ = prune(teacher, "channels:0.5", X, round_to=resolve_round_to(None))
    assert _widths(auto) == _widths(plain)
    assert sorted(set(_widths(plain).values())) == [8, 16, 32, 64]


def test_a_mobile_networks_odd_widths_become_multiples_of_the_block(monkeypatch):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX512)
    teacher = small_model("mobilenet_v2").eval()
    full = _widths(teacher)
    plain = _widths(prune(teacher, "channels:0.3", X)[0])
    auto = _widths(prune(teacher, "channels:0.3", X, round_to=resolve_round_to(None))[0])
    assert any(w % 8 for w in plain.values())     # unrounded: 22, 11, 67, ... channels
    for name, w in auto.items():
        assert w == full[name] or (w % 16 == 0 if w >= 16 else w == 8), (name, w)
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX2)
    assert all(w % 8 == 0 or w == full[n]
               for n, w in _widths(prune(teacher, "channels:0.3", X, round_to=resolve_round_to(None))[0]).items())


def _compress(**kw):
    return api.compress("resnet20", prune="channels:0.3", method="none", samples=8, eval_data=None, device="cpu",
                        progress=False, **kw)


def test_the_run_records_the_k_it_resolved_and_the_recipe_remakes_it_on_another_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX512)
    made = _compress(out=tmp_path / "m.pt")
    assert made.summary["recipe"]["round_to"] == 16 and made.recipe.round_to is None   # the cell's key is unchanged
    assert load_recipe(tmp_path / "m.pt").round_to == 16
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX2)
    again = api.compress(recipe=tmp_path / "m.pt", progress=False)
    assert _widths(again.model) == _widths(made.model)
    here = _compress()                          # the default on an AVX2 CPU: multiples of 8
    assert here.summary["recipe"]["round_to"] == 8 and _widths(here.model) != _widths(made.model)
    assert made.model.layer2[0].conv1.out_channels == 16 and here.model.layer2[0].conv1.out_channels == 24


def test_a_given_round_to_wins_over_the_cpu_and_1_turns_rounding_off(monkeypatch):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX512)
    given = _compress(round_to=8)
    off = _compress(round_to=1)
    teacher = small_model("resnet20").eval()
    assert given.summary["recipe"]["round_to"] == 8 and off.summary["recipe"]["round_to"] == 1
    assert _widths(given.model) == _widths(prune(teacher, "channels:0.3", X, round_to=8)[0])
    assert _widths(off.model) == _widths(prune(teacher, "channels:0.3", X)[0])   # 22 of 32: not rounded


def test_block_dropping_records_no_rounding(monkeypatch):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX512)
    result = api.compress("resnet20", prune="blocks:layer1.1", method="none", samples=8, eval_data=None, device="cpu",
                          progress=False)
    assert result.summary["recipe"]["round_to"] is None   # a saved recipe with blocks:... must load again
