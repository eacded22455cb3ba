"""Interleaved latency: the timing helper and `mimir latency --json`'s documented fields."""

from __future__ import annotations

import json

import pytest
import torch

from mimir.cli import main
from mimir.evaluate.latency import Timing, time_interleaved, torch_threads


def test_every_call_is_timed_in_turns_with_its_own_repeat_count():
    counts = {"a": 0, "b": 0}

    def call(name):
        def run():
            counts[name] += 1
        return run

    timing = time_interleaved({"a": call("a"), "b": call("b")}, rounds=5, seconds=0.0)
    assert set(timing) == {"a", "b"} and all(t.median_ms > 0 for t in timing.values())
    assert counts["a"] >= 2 + 5 and counts["b"] >= 2 + 5   # two warm-up calls each, then >= 1 per round


def test_quartiles():
    t = Timing.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert t.median_ms == 3.0 and t.q1_ms <= 2.0 and t.q3_ms >= 4.0 and t.iqr_ms > 0


def test_threads_are_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_latency_json_fields(capsys):
    assert main(["latency", "resnet20", "--against", "resnet20", "--batch", "1,3", "--seconds", "0.1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["macs_ratio"] == 1.0 and result["threads"] == 1
    assert set(result["runtimes"]) == {"torch", "onnxruntime"}
    for per_batch in result["runtimes"].values():
        assert set(per_batch) == {"1", "3"}
        for r in per_batch.values():
            assert {"teacher_ms", "student_ms", "latency_ratio"} <= set(r)
            assert 0 < r["latency_ratio"] < 2 and r["teacher_ms"] > 0


def test_a_file_without_a_teacher_needs_against(tmp_path, capsys, teacher20):
    from mimir.export import save_model

    model, config = teacher20
    save_model(tmp_path / "m.pt", model, config)
    assert main(["latency", str(tmp_path / "m.pt")]) == 2
    assert "--against" in capsys.readouterr().err
