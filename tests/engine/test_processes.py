"""Whole runs in their own processes: torchrun with 2 processes, SIGKILL and Ctrl-C then --resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RUN = ["compress", "--no-latency", "--samples", "16", "--batch-size", "16", "--eval-data", "none", "--device", "cpu", "--seed", "1",
       "--json"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return env


def _mimir(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "mimir"] + args, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: 120 iterations in one go."""
    d = tmp_path_factory.mktemp("ref")
    code, out, err = _finish(_mimir(RUN + ["--iterations", "120", "--out", "ref.pt"], d))
    assert code == 0, err
    return _weights(d / "ref.pt")


def _wait_for(path, proc, timeout=240):
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "Ctrl-C"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, uninterrupted, how):
    args = RUN + ["--iterations", "120", "--out", "s.pt"]
    if how == "SIGKILL":
        proc = _mimir(args + ["--checkpoint-every", "10"], tmp_path)
        _wait_for(tmp_path / "s.pt.ckpt", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    else:   # no --checkpoint-every: the checkpoint comes from Ctrl-C alone
        log = tmp_path / "stderr.txt"
        with log.open("w") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "mimir"] + [a for a in args if a != "--json"],
                                    cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=stderr, text=True)
            end = time.time() + 240
            while "mir:" not in log.read_text():   # the progress bar: training has started
                assert proc.poll() is None and time.time() < end, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        last = log.read_text().strip().splitlines()[-1].split("\r")[-1]   # after the progress bar
        assert code == 130 and last.startswith("interrupted: checkpoint written to s.pt.ckpt") and "--resume" in last
    assert (tmp_path / "s.pt.ckpt").exists() and not (tmp_path / "s.pt").exists()
    assert not list(tmp_path.glob(".s.pt*"))   # no half-written file
    code, _, err = _finish(_mimir(args + ["--resume"], tmp_path))
    assert code == 0, err
    resumed = _weights(tmp_path / "s.pt")
    for k in uninterrupted:
        assert torch.equal(resumed[k], uninterrupted[k]), k
    assert not (tmp_path / "s.pt.ckpt").exists()   # finished: nothing left to resume


@pytest.mark.slow
@pytest.mark.parametrize("option", [[], ["--method", "mir-plus", "--option", "optimizer=sgd", "--option", "warmup=0"]],
                         ids=["mir", "mir-plus"])
def test_torchrun_two_processes_equal_one(tmp_path, option):
    """3 steps: far enough for a wrong gradient average or unsynchronised BatchNorm to show (they
    move weights by ~1e-3), short enough that float noise (~1e-6 per step, growing) stays below 2e-4.
    mir-plus too (MixUp, RandAugment, stage matching): each image's view is drawn from its place in
    the global batch and the global batch is mixed before it is split, so two shards see the views
    one process sees. It runs with SGD: its views are under test, not its optimiser, and AdamW
    divides each gradient by its own running size, so float noise in a gradient near zero would move
    a weight by up to the learning rate and hide the comparison."""
    args = RUN + ["--iterations", "3"] + option
    code, _, err = _finish(_mimir(args + ["--out", "one.pt"], tmp_path))
    assert code == 0, err
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(29533 + len(option)),
                "-m", "mimir"]
    proc = subprocess.run(torchrun + args + ["--out", "two.pt"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"processes": 2') == 1   # only rank 0 reports
    one, two = _weights(tmp_path / "one.pt"), _weights(tmp_path / "two.pt")
    for k, v in one.items():
        if v.is_floating_point():
            torch.testing.assert_close(two[k], v, rtol=0, atol=2e-4, msg=k)
        else:
            assert torch.equal(two[k], v), k
    assert any(not torch.equal(two[k], v) for k, v in one.items())   # two processes really ran
