"""Resuming: finished cells are skipped, broken or failed ones run again; and the ImageNet dry run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from mimir.bench import (
    dry_run_config,
    load_config,
    parse_config,
    read_results,
    run_bench,
    runner,
)
from mimir.errors import MimirError
from tests.helpers import GOOD, ROOT


def _fake_run_cell(calls):
    def fake(cell, bench="", random_weights=False):
        calls.append(cell.key)
        summary = {"compressed": {"accuracy": 50.0 + cell.seed}, "recipe": cell.run.to_dict()}   # as run
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


def test_a_failing_cell_is_recorded_not_fatal(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runner.api, "compress", fail)
    raw = {**GOOD, "grid": [{**GOOD["grid"][0], "samples": [5]}], "seeds": [1]}
    records = run_bench(parse_config(raw), tmp_path / "r.jsonl", progress=False, log=lambda *a: None)
    assert len(records) == 2 and all(r["status"] == "error" for r in records)
    assert records[0]["error"] == "RuntimeError: out of memory"


@pytest.mark.parametrize("row, message", [
    ({"teacher": "vgg16_bn"}, "grid[0].teacher: no trained teacher is bundled for 'vgg16_bn'"),
    ({"teacher": {"name": "resnet50", "weights": "missing.pt"}}, "grid[0].teacher.weights: file 'missing.pt'"),
    ({"data": "no/such/folder"}, "grid[0].data: folder 'no/such/folder' does not exist"),
    ({"eval_data": "no/such/folder"}, "grid[0].eval_data: folder 'no/such/folder' does not exist (eval_data: none means"),
])
def test_a_cell_that_cannot_start_stops_the_grid_before_any_cell_runs(tmp_path, monkeypatch, row, message):
    calls: list[str] = []
    monkeypatch.setattr(runner, "run_cell", _fake_run_cell(calls))
    raw = {**GOOD, "grid": [{**GOOD["grid"][0], "samples": [5], **row}], "seeds": [1]}
    with pytest.raises(MimirError) as err:
        run_bench(parse_config(raw), tmp_path / "r.jsonl", progress=False, log=lambda *a: None)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert calls == [] and not (tmp_path / "r.jsonl").exists()


def test_eval_data_none_in_a_grid_means_no_evaluation():
    raw = {**GOOD, "eval_data": "none"}
    assert {c.eval_data for c in parse_config(raw).cells} == {None}


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


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux: /proc/PID/task/TID/children)."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += sorted(children - found)
            found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree in /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_the_bench_and_all_its_workers_and_leaves_nothing_half_written(tmp_path, signum):
    """SIGTERM to the bench (a scheduler, kill), or SIGINT to its process group (Ctrl-C), while two
    workers run cells: every worker stops, no record is written, no temporary file is left."""
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "iterations": 100000, "seeds": [1, 2], "eval_data": None, "grid": [
        {"teacher": "resnet20", "prune": "channels:0.5", "methods": ["mir"], "samples": [8]}]}))
    results = tmp_path / "r.jsonl"
    bench = subprocess.Popen([sys.executable, "-m", "mimir", "bench", str(grid), "--results", str(results),
                              "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)   # its own process group, as a shell gives a command
    try:
        workers: set[int] = set()
        end = time.time() + 120
        while len(workers) < 2:   # the two spawned workers (beside multiprocessing's resource tracker)
            assert time.time() < end and bench.poll() is None, bench.communicate()
            time.sleep(0.2)
            workers = {p for p in _descendants(bench.pid)
                       if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")}
        time.sleep(1.5)   # into their cells
        everyone = _descendants(bench.pid)
        if signum == signal.SIGINT:
            os.killpg(bench.pid, signum)
        else:
            os.kill(bench.pid, signum)
        _, err = bench.communicate(timeout=90)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 128 + signum, err[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in err
    end = time.time() + 30
    while any(_alive(p) for p in everyone) and time.time() < end:
        time.sleep(0.2)
    assert not [p for p in everyone if _alive(p)]   # no worker outlived the run
    time.sleep(1)
    assert not results.exists() or results.read_text() == ""
    assert not list(results.parent.glob("r.jsonl.cells/*")) and not list(results.parent.glob("r.jsonl.cells/.*"))
