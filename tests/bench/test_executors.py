"""Grids through submitit: the same cells as the process pool, crashes reported and rerun, the
sbatch parameters shown without Slurm, one line where Slurm is missing."""

import json
import os
import shutil

import pytest

from mimir.cli import main
from tests.helpers import GOOD

pytest.importorskip("submitit")

CRASHER = '''
import os, sys
from pathlib import Path

def build():
    flag = Path(os.environ["MIMIR_TEST_CRASH_FLAG"])
    in_a_job = os.getpid() != int(os.environ["MIMIR_TEST_PARENT"])   # the bench builds it too, to key its cells
    if flag.exists() and in_a_job:   # the first job dies as a killed job does: no record, a line in its log
        flag.unlink()
        print("simulated node failure", file=sys.stderr, flush=True)
        os._exit(3)
    from mimir.models import create_model
    return create_model("resnet20", in_chans=1)
'''


def _grid(tmp_path, teacher="resnet20", methods=("none", "mir")):
    import yaml

    raw = {**GOOD, "name": "g", "iterations": 2, "batch_size": 8, "seeds": [1, 2], "eval_data": None,
           "grid": [{"teacher": teacher, "prune": ["channels:0.5"], "methods": list(methods), "samples": [8]}]}
    if ":" in teacher:   # a user's own module: its input settings are given
        raw.update(input_size=28, mean=[0.5], std=[0.25])
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _records(path):
    return {r["key"]: r for r in map(json.loads, open(path).read().splitlines())}


@pytest.mark.slow
def test_submitit_local_runs_the_same_cells_as_the_process_pool(tmp_path):
    grid = _grid(tmp_path)
    pool, jobs = tmp_path / "pool.jsonl", tmp_path / "jobs.jsonl"
    assert main(["bench", grid, "--results", str(pool), "--workers", "2"]) == 0
    assert main(["bench", grid, "--results", str(jobs), "--executor", "submitit-local",
                 "--array-parallelism", "2"]) == 0
    a, b = _records(pool), _records(jobs)
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:   # the same training: the same student, to the last digit, on the same machine
        assert b[key]["status"] == "ok"
        assert b[key]["summary"]["compressed"]["feature_mse"] == a[key]["summary"]["compressed"]["feature_mse"]
    assert main(["bench", grid, "--results", str(jobs), "--executor", "submitit-local"]) == 0   # nothing to do
    assert len(_records(jobs)) == 4


@pytest.mark.slow
def test_a_crashed_cell_is_listed_with_its_log_and_rerun_by_the_next_call(tmp_path, monkeypatch, capsys):
    (tmp_path / "crasher.py").write_text(CRASHER)
    flag = tmp_path / "crash-once"
    flag.touch()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MIMIR_TEST_CRASH_FLAG", str(flag))
    monkeypatch.setenv("MIMIR_TEST_PARENT", str(os.getpid()))
    monkeypatch.syspath_prepend(str(tmp_path))
    grid = _grid(tmp_path, teacher="crasher:build", methods=("none",))
    results = str(tmp_path / "r.jsonl")
    args = ["bench", grid, "--results", results, "--executor", "submitit-local", "--array-parallelism", "1"]
    assert main(args) == 1   # the first cell's job died
    capsys.readouterr()
    assert main(["bench", grid, "--results", results, "--status"]) == 0
    status = capsys.readouterr().out
    failed = [line for line in status.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "simulated node failure" in failed[0] and "_log.err" in failed[0]
    assert "1 done, 1 failed" in status
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "failed before, submitted again" in out and "simulated node failure" in out
    assert sorted(r["status"] for r in _records(results).values()) == ["ok", "ok"]


def test_list_with_slurm_shows_the_sbatch_parameters_without_slurm(tmp_path, capsys):
    grid = _grid(tmp_path)
    assert main(["bench", grid, "--results", str(tmp_path / "r.jsonl"), "--list", "--executor", "slurm",
                 "--partition", "gpu", "--gpus-per-cell", "1", "--time", "90", "--sbatch", "qos=high"]) == 0
    out = capsys.readouterr().out
    assert "would submit 4 cells" in out and "4 not submitted" in out
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=90", "#SBATCH --qos=high"):
        assert line in out
    assert not (tmp_path / "r.jsonl.jobs.json").exists()   # nothing submitted


def test_slurm_missing_is_one_line_and_nothing_is_submitted(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["bench", _grid(tmp_path), "--results", str(tmp_path / "r.jsonl"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Slurm is not installed here" in err[0] and "submitit-local" in err[0]
    assert not (tmp_path / "r.jsonl.jobs.json").exists()


def test_bad_resources_in_the_grid_file_are_named(tmp_path, capsys):
    import yaml

    path = tmp_path / "g.yaml"
    raw = yaml.safe_load(open(_grid(tmp_path)).read())
    path.write_text(yaml.safe_dump({**raw, "slurm": {"gpu": 1}}))
    assert main(["bench", str(path), "--results", str(tmp_path / "r.jsonl"), "--list", "--executor", "slurm"]) == 2
    assert "unknown resource 'gpu'" in capsys.readouterr().err
