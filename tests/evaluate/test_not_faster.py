"""A compressed student that is not faster than its teacher is said so in one line, with the fix."""

import warnings

import pytest

from mimir import api, pipeline
from mimir.cli import main
from mimir.evaluate import warn_if_not_faster

AVX512, AVX2 = "avx2,fma,avx512f", "avx2,fma"


def _summary(ratio, prune="channels:0.3", round_to=1):
    return {"latency": {"runtime": "onnxruntime", "batch": 1, "threads": 1, "teacher_ms": 9.5,
                        "student_ms": 9.5 * ratio, "latency_ratio": ratio},
            "teacher": {"macs": 400}, "compressed": {"macs": 270}, "recipe": {"prune": prune, "round_to": round_to}}


@pytest.mark.parametrize("flags,block", [(AVX512, 16), (AVX2, 8)])
def test_a_slower_student_unrounded_is_told_to_round_to_the_cpus_block(monkeypatch, flags, block):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", flags)
    with pytest.warns(UserWarning) as seen:
        message = warn_if_not_faster(_summary(1.49))
    assert [str(w.message) for w in seen] == [message]
    assert "not faster than its teacher: 1.49x" in message and "0.68 of its MACs" in message
    assert f"pass --round-to {block} " in message and "\n" not in message


def test_a_slower_student_already_rounded_is_told_to_prune_whole_layers(monkeypatch):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX512)
    with pytest.warns(UserWarning, match="channels-all:R"):
        assert "--round-to" not in warn_if_not_faster(_summary(1.02, round_to=16))
    with pytest.warns(UserWarning, match="blocks:NAME"):
        warn_if_not_faster(_summary(1.0, prune="blocks:layer1.1", round_to=None))


@pytest.mark.parametrize("summary", [_summary(0.7), _summary(0.99), {"latency": None}, {}])
def test_a_faster_student_or_no_measurement_says_nothing(summary):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_not_faster(summary) is None


def _latency(ratio):
    return lambda model, teacher, config: {"runtime": "onnxruntime", "batch": 1, "threads": 1, "teacher_ms": 1.0,
                                           "student_ms": ratio, "latency_ratio": ratio}


def test_compress_warns_when_the_measured_student_is_slower(monkeypatch):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX512)
    monkeypatch.setattr(pipeline, "measure_latency", _latency(1.3))
    with pytest.warns(UserWarning, match="not faster than its teacher: 1.30x"):
        api.compress("resnet20", prune="channels:0.3", round_to=1, method="none", samples=8, eval_data=None,
                     device="cpu", progress=False, latency=True)
    monkeypatch.setattr(pipeline, "measure_latency", _latency(0.6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        api.compress("resnet20", prune="channels:0.3", method="none", samples=8, eval_data=None, device="cpu",
                     progress=False, latency=True)


def test_the_cli_prints_it_as_one_warning_line(monkeypatch, capsys):
    monkeypatch.setenv("MIMIR_CPU_FLAGS", AVX2)
    monkeypatch.setattr(pipeline, "measure_latency", _latency(1.1))
    assert main(["compress", "--prune", "channels:0.3", "--round-to", "1", "--method", "none", "--samples", "8",
                 "--eval-data", "none", "--device", "cpu", "--json"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "not faster" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "pass --round-to 8 " in lines[0]
