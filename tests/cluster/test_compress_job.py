"""One compress run as a job: its command line, resuming only when requeued, the one-line errors,
and a preempted torchrun run that is requeued and ends with the weights of an uninterrupted one."""

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from mimir.cli import main
from mimir.cluster import CompressJob, Resources, submit_compress
from mimir.recipe import Recipe

submitit = pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--no-latency", "--samples", "16", "--batch-size", "16", "--eval-data", "none", "--device", "cpu",
         "--seed", "1", "--iterations", "120"]


def test_one_process_runs_mimir_itself_and_several_run_torchrun(tmp_path):
    one = CompressJob(["--out", "x.pt"], tmp_path / "x.pt.ckpt").command()
    assert one[1:] == ["-m", "mimir", "compress", "--out", "x.pt"]
    four = CompressJob(["--out", "x.pt"], tmp_path / "x.pt.ckpt", processes=4).command()
    assert four[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node=4", "--standalone"]
    assert four[-5:] == ["-m", "mimir", "compress", "--out", "x.pt"]


def test_several_nodes_meet_on_the_first(tmp_path, monkeypatch):
    class Env:
        hostnames, job_id = ["node7", "node8"], "4242"

    monkeypatch.setattr(submitit, "JobEnvironment", Env)
    cmd = CompressJob([], tmp_path / "c", processes=8, nodes=2).command()
    assert {"--nproc_per_node=8", "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=node7:29500",
            "--rdzv_id=4242"} <= set(cmd)
    assert "--standalone" not in cmd


def test_resumes_only_when_requeued_and_a_checkpoint_is_there(tmp_path, monkeypatch):
    ckpt = tmp_path / "x.pt.ckpt"
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    first, requeued = CompressJob([], ckpt), CompressJob([], ckpt, resume=True)
    assert "--resume" not in first.command() and "--resume" not in requeued.command()   # nothing to resume yet
    ckpt.write_bytes(b"x")
    assert "--resume" not in first.command() and requeued.command()[-1] == "--resume"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")   # Slurm requeued it by itself (preempted by SIGTERM)
    assert first.command()[-1] == "--resume"


def test_a_signal_after_the_run_finished_does_not_run_it_again(tmp_path):
    import pickle

    job = CompressJob([], tmp_path / "c", resume=False)
    job._proc = type("Done", (), {"poll": lambda self: 0, "returncode": 0})()
    again = pickle.loads(pickle.dumps(job.checkpoint().function))   # what submitit dumps for the requeue
    assert again.finished and again.resume and again._proc is None
    assert again() == "finished"


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)     # a run that does not stop when asked
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(120)
"""


def test_a_run_that_does_not_stop_in_time_is_killed_with_all_its_processes(tmp_path, monkeypatch):
    import threading

    from mimir.cluster import compress_job

    monkeypatch.setattr(compress_job, "GRACE_S", 1)
    monkeypatch.setattr(compress_job, "SHUTDOWN_MARGIN_S", 0)
    pid_file = tmp_path / "child.pid"
    job = CompressJob([], tmp_path / "c")
    monkeypatch.setattr(job, "command", lambda: [sys.executable, "-c", STUBBORN, str(pid_file)])
    errors = []
    runner = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, job)))
    runner.start()
    end = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < end
        time.sleep(0.05)
    again = job.checkpoint().function   # SIGINT ignored: after the grace period, the whole session goes
    runner.join(timeout=60)
    assert errors and again.resume and not again.finished
    child = int(pid_file.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


@pytest.mark.parametrize("args, message", [
    (["--executor", "slurm"], "needs --out"),
    (["--gpus", "2", "--out", "x.pt"], "--gpus is for a job"),
    (["--executor", "submitit-local", "--out", "x.pt", "--resume"], "resumes by itself"),
    (["--executor", "submitit-local", "--out", "x.pt", "--nodes", "2"], "this machine only"),
    (["--executor", "slurm", "--out", "x.pt", "--time", "0"], "time must be a positive"),
    (["--executor", "slurm", "--out", "x.pt", "--processes", "0"], "--processes must be at least 1"),
    (["--executor", "slurm", "--out", "x.pt", "--data", "no/such/folder"], "--data no/such/folder does not exist here"),
])
def test_bad_job_requests_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/sbatch")   # as if on a login node
    assert main(["compress", *SMALL, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.iterdir())   # nothing written, nothing submitted


def test_slurm_missing_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["compress", *SMALL, "--executor", "slurm", "--gpus", "4", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Slurm is not installed here" in err[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.slow   # a job process that imports mimir, through submitit
def test_a_failed_job_says_the_runs_own_error_and_where_its_log_is(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    code = main(["compress", *SMALL, "--teacher", "resnet50", "--executor", "submitit-local",
                 "--out", str(tmp_path / "x.pt")])   # no bundled ResNet-50: the run refuses at its start
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "failed: no trained teacher is bundled for 'resnet50'" in err[0] and "x.pt.logs" in err[0]
    assert not (tmp_path / "x.pt").exists()


def _task_of(job) -> int:
    """The pid of the job's task: the one child of submitit's local controller."""
    controller = int(job.job_id)
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.slow
def test_a_preempted_torchrun_job_is_requeued_and_resumes_exactly(tmp_path, monkeypatch):
    """Two torchrun processes (gloo, CPU). The preempted job gets USR2 as Slurm sends it; it must
    interrupt the run (checkpoint), requeue itself with --resume and end with the weights of the
    same job run without interruption."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "src"))
    recipe = Recipe(samples=16, batch_size=16, eval_data=None, device="cpu", seed=1, iterations=120)
    run = ["--no-latency", "--checkpoint-every", "10"]
    ref = submit_compress(recipe, tmp_path / "ref.pt", "submitit-local", Resources(time=30), 2, run)
    assert ref.result() == "finished", ref.stderr()

    job = submit_compress(recipe, tmp_path / "s.pt", "submitit-local", Resources(time=30), 2, run)
    end = time.time() + 300
    while not (tmp_path / "s.pt.ckpt").exists():   # training has started (10 steps done)
        assert job.state == "RUNNING" and time.time() < end, job.stderr()
        time.sleep(0.05)
    os.kill(_task_of(job), signal.SIGUSR2)
    assert job.result() == "finished", job.stderr()
    log = job.stdout()
    assert "interrupting the run to write its checkpoint" in log
    starts = [line for line in log.splitlines() if line.startswith("mimir job: ") and "compress" in line]
    assert len(starts) == 2 and "--resume" not in starts[0] and starts[1].endswith("--resume"), starts
    assert not (tmp_path / "s.pt.ckpt").exists()   # finished: nothing left to resume
    a = torch.load(tmp_path / "ref.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "s.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
