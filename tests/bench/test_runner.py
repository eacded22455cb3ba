"""Resuming: finished cells are skipped, broken or failed ones run again; and the ImageNet dry run."""

import json

import numpy as np
import pytest
from PIL import Image

from mimir.bench import (
    dry_run_config,
    load_config,
    parse_config,
    read_results,
    run_bench,
    runner,
)
from tests.helpers import GOOD, ROOT


def _fake_run_cell(calls):
    def fake(cell, bench="", random_weights=False):
        calls.append(cell.key)
        summary = {"compressed": {"accuracy": 50.0 + cell.seed}}
        return {"key": cell.key, "bench": bench, "recipe": cell.to_dict(), "status": "ok", "summary": summary,
                "wall_seconds": 0.0, "finished_at": "2026-11-21T00:00:00+00:00", "versions": {}}
    return fake


def test_resume_skips_finished_and_reruns_broken(tmp_path, monkeypatch):
    config = parse_config(GOOD)
    cells = config.cells
    results = tmp_path / "r.jsonl"
    finished = _fake_run_cell([])(cells[0])
    failed = {**finished, "key": cells[1].key, "recipe": cells[1].to_dict(), "status": "error", "error": "boom"}
    truncated = json.dumps({**finished, "key": cells[2].key})[:40]       # a line cut short by a kill
    results.write_text(json.dumps(finished) + "\n" + json.dumps(failed) + "\n" + truncated + "\n")
    calls: list[str] = []
    monkeypatch.setattr(runner, "run_cell", _fake_run_cell(calls))
    run_bench(config, results, progress=False, log=lambda *a: None)
    assert cells[0].key not in calls
    assert set(calls) == {c.key for c in cells[1:]}                      # the failed and the broken ran again
    calls.clear()
    run_bench(config, results, progress=False, log=lambda *a: None)
    assert calls == []                                                   # everything finished now
    ok = [r for r in read_results(results) if r["status"] == "ok"]
    assert {r["key"] for r in ok} == {c.key for c in cells}


def test_a_failing_cell_is_recorded_not_fatal(tmp_path):
    raw = {**GOOD, "grid": [{**GOOD["grid"][0], "teacher": "vgg16_bn", "samples": [5]}], "seeds": [1]}
    records = run_bench(parse_config(raw), tmp_path / "r.jsonl", progress=False, log=lambda *a: None)
    assert len(records) == 2 and all(r["status"] == "error" for r in records)
    assert "no trained teacher is bundled for 'vgg16_bn'" in records[0]["error"]


def test_parallel_workers_write_every_cell_once(tmp_path):
    raw = {**GOOD, "iterations": 2, "seeds": [1], "eval_data": None,
           "grid": [{"teacher": "resnet20", "prune": ["channels:0.5"], "methods": ["none", "mir"], "samples": [8]}]}
    results = tmp_path / "r.jsonl"
    run_bench(parse_config(raw), results, workers=2, progress=False, log=lambda *a: None)
    rows = read_results(results)
    assert sorted(r["recipe"]["method"] for r in rows) == ["mir", "none"]
    assert all(r["status"] == "ok" and r["versions"]["torch"] for r in rows)
    assert all(r["commit"] and r["device"].startswith("cpu") for r in rows)   # what ran, and where


@pytest.fixture()
def tiny_imagenet(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("n01", "n02"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.jpg")
    return tmp_path / "imgs"


@pytest.mark.slow
def test_imagenet_config_dry_run(tmp_path, tiny_imagenet):
    config = dry_run_config(load_config(ROOT / "benchmarks" / "imagenet.yaml"), str(tiny_imagenet), str(tiny_imagenet))
    combos = {(c.teacher, c.prune, c.method) for c in config.cells}
    assert len(config.cells) == len(combos) and {"resnet34", "resnet50", "mobilenet_v2"} == {c[0] for c in combos}
    records = run_bench(config, tmp_path / "dry.jsonl", progress=False, random_weights=True, log=lambda *a: None)
    errors = [(r["recipe"]["teacher"], r["recipe"]["method"], r.get("error")) for r in records if r["status"] != "ok"]
    assert not errors
    assert all(r["summary"]["compressed"]["macs"] < r["summary"]["teacher"]["macs"]
               for r in records if r["recipe"]["method"] != "none")


def test_dry_run_gives_each_method_its_quick_options():
    from mimir.methods import get_method

    row = {"teacher": "resnet20", "samples": [5], "options": {"cd_steps": 50}}
    raw = {**GOOD, "grid": [{**row, "prune": ["channels:0.5"], "methods": ["cd", "cd-ft", "kd"]},
                            {**row, "prune": ["blocks:auto:2"], "methods": ["practise"], "options": {}}]}
    cells = dry_run_config(parse_config(raw), "fashion-mnist", None).cells
    assert {c.method: dict(c.options) for c in cells} == {
        m: dict(get_method(m).quick_options) for m in ("cd", "cd-ft", "kd", "practise")}
    assert all(c.iterations == 1 and c.samples == 4 for c in cells)
